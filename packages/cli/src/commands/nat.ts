import type { Command } from 'commander';
import type { FloatingIp, FloatingIpChanged, FloatingIpCreate, PortForward, PortForwardCreate } from '@floe/api';
import { UsageError } from '../errors.js';
import { age, renderDetails, renderTable } from '../output.js';
import { checkName, collect, intArg, parseLabels } from '../parse.js';
import { followOperation } from '../progress.js';
import { runtimeOf, type CliRuntime } from '../runtime.js';
import { confirmDeletion, examples, fetchPage, listOptions, type ListFlags } from './shared.js';

function fipTable(items: FloatingIp[], now: number): string {
  return renderTable(
    ['NAME', 'ADDRESS', 'INSTANCE', 'NIC', 'AGE'],
    items.map((f) => [f.name, f.address, f.instance ?? '-', f.nic ?? '-', age(f.created_at, now)]),
  );
}

function forwardTable(items: PortForward[], now: number): string {
  return renderTable(
    ['NAME', 'LISTEN', 'PROTO', 'TARGET', 'INSTANCE', 'AGE'],
    items.map((f) => [
      f.name,
      `${f.address ?? 'host'}:${f.port}`,
      f.protocol,
      `${f.target_address}:${f.target_port}`,
      f.instance,
      age(f.created_at, now),
    ]),
  );
}

/**
 * Follows the operation of an attach or detach until the host has the change, then says what was
 * done (with `-o json` the operation as it ended); with --no-wait prints the answer at once.
 */
async function settle(rt: CliRuntime, cmd: Command, r: FloatingIpChanged, wait: boolean, what: string): Promise<void> {
  const op = r.operation;
  if (!wait) {
    rt.print(
      cmd,
      r,
      () => `${what}: operation ${op.id} ${op.status} (follow it with "floe operation wait ${op.id}")\n`,
    );
    return;
  }
  await followOperation(rt, cmd, op);
  if (rt.globals(cmd).output !== 'json') rt.out.write(`${what}\n`);
}

/** `floe fip` (alias `floating-ip`): public addresses NATed one to one to instances. */
export function registerFloatingIp(program: Command): void {
  const fip = program
    .command('fip')
    .alias('floating-ip')
    .description("public IPv4 addresses from a public network's pool, attached one to one to instances");
  examples(fip, [
    'floe fip create web --attach web-1',
    'floe fip attach web web-2        # moved in one step; waits until the host has it',
    'floe fip detach web --no-wait',
  ]);

  listOptions(fip.command('ls').description('list floating IPs')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).floatingIps, { project: rt.project(cmd) }, opts);
    rt.print(cmd, page, () => fipTable(page.items, rt.now()));
  });

  fip
    .command('show')
    .description('show one floating IP')
    .argument('<fip>', 'floating IP id, name or address')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const f = await rt.client(cmd).floatingIps.get(ref, { project: rt.project(cmd) });
      rt.print(cmd, f, () => renderDetails(f));
    });

  const create = fip
    .command('create')
    .description("take an address of a public network's pool for the project")
    .argument('<name>', 'floating IP name (a DNS label)')
    .option('--network <net>', 'the public network (default: the only one)')
    .option('--address <ipv4>', 'the address to take (default: the next free one of the pool)')
    .option('--attach <instance>', 'attach it to this instance at once')
    .option('--nic <id>', "with --attach: the NIC (default: the instance's first with IPv4)")
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(
      async (
        name: string,
        opts: { network?: string; address?: string; attach?: string; nic?: string; label?: string[] },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        checkName(name, 'floating IP name');
        if (opts.nic !== undefined && opts.attach === undefined) throw new UsageError('--nic goes with --attach');
        const body: FloatingIpCreate = { name };
        const project = rt.project(cmd);
        if (project !== undefined) body.project = project;
        if (opts.network !== undefined) body.network = opts.network;
        if (opts.address !== undefined) body.address = opts.address;
        if (opts.attach !== undefined) body.instance = opts.attach;
        if (opts.nic !== undefined) body.nic = opts.nic;
        if (opts.label !== undefined) body.labels = parseLabels(opts.label);
        const f = await rt.client(cmd).floatingIps.create(body);
        rt.print(
          cmd,
          f,
          () => `floating IP ${f.name} ${f.address}${f.instance === null ? '' : ` attached to ${opts.attach}`}\n`,
        );
      },
    );
  examples(create, ['floe fip create web', 'floe fip create web --network internet --attach web-1']);

  fip
    .command('attach')
    .description("attach to an instance's NIC; moves it from where it was in one step")
    .argument('<fip>', 'floating IP id, name or address')
    .argument('<instance>', 'instance id or name')
    .option('--nic <id>', "the NIC (default: the instance's first with IPv4)")
    .option('--no-wait', 'answer with the operation at once instead of waiting until the host has the change')
    .action(async (ref: string, instance: string, opts: { nic?: string; wait: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const body = opts.nic === undefined ? { instance } : { instance, nic: opts.nic };
      const r = await rt.client(cmd).floatingIps.attach(ref, body, { project: rt.project(cmd) });
      const f = r.floating_ip;
      await settle(rt, cmd, r, opts.wait, `floating IP ${f.name} ${f.address} attached to ${instance}`);
    });

  fip
    .command('detach')
    .description('detach from its instance; the project keeps the address')
    .argument('<fip>', 'floating IP id, name or address')
    .option('--no-wait', 'answer with the operation at once instead of waiting until the host has the change')
    .action(async (ref: string, opts: { wait: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const r = await rt.client(cmd).floatingIps.detach(ref, { project: rt.project(cmd) });
      const f = r.floating_ip;
      await settle(rt, cmd, r, opts.wait, `floating IP ${f.name} ${f.address} detached`);
    });

  fip
    .command('rm')
    .description('give the address back to the pool')
    .argument('<fip>', 'floating IP id, name or address')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (ref: string, opts: { yes?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `floating IP ${ref}`, `give floating IP ${ref} back?`);
      await rt.client(cmd).floatingIps.delete(ref, { project: rt.project(cmd) });
      rt.print(cmd, { deleted: ref }, () => `floating IP ${ref} deleted\n`);
    });
}

/** `floe forward` (alias `pf`): ports of a floating IP or of the host forwarded to instances. */
export function registerForward(program: Command): void {
  const fwd = program
    .command('forward')
    .alias('pf')
    .description("forward TCP/UDP ports of a floating IP, or of the instance's host, to an instance");
  examples(fwd, [
    'floe forward create ssh web-1 --port 2222 --to 22',
    'floe forward create dns ns-1 --fip web --udp --port 53',
  ]);

  listOptions(fwd.command('ls').description('list port forwards')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).portForwards, { project: rt.project(cmd) }, opts);
    rt.print(cmd, page, () => forwardTable(page.items, rt.now()));
  });

  fwd
    .command('show')
    .description('show one port forward')
    .argument('<forward>', 'port forward id or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const f = await rt.client(cmd).portForwards.get(ref, { project: rt.project(cmd) });
      rt.print(cmd, f, () => renderDetails(f));
    });

  const create = fwd
    .command('create')
    .description('forward a port to an instance')
    .argument('<name>', 'port forward name (a DNS label)')
    .argument('<instance>', 'instance id or name')
    .requiredOption('--port <n>', 'the port to listen on', intArg(1, 65535))
    .option('--to <n>', "the instance's port (default: the same)", intArg(1, 65535))
    .option('--fip <fip>', "listen on this floating IP (not attached one to one) instead of the host's addresses")
    .option('--udp', 'UDP instead of TCP')
    .option('--nic <id>', "the instance's NIC (default: its first with IPv4)")
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(
      async (
        name: string,
        instance: string,
        opts: { port: number; to?: number; fip?: string; udp?: boolean; nic?: string; label?: string[] },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        checkName(name, 'port forward name');
        const body: PortForwardCreate = {
          name,
          instance,
          port: opts.port,
          protocol: opts.udp === true ? 'udp' : 'tcp',
        };
        const project = rt.project(cmd);
        if (project !== undefined) body.project = project;
        if (opts.to !== undefined) body.target_port = opts.to;
        if (opts.fip !== undefined) body.floating_ip = opts.fip;
        if (opts.nic !== undefined) body.nic = opts.nic;
        if (opts.label !== undefined) body.labels = parseLabels(opts.label);
        const f = await rt.client(cmd).portForwards.create(body);
        rt.print(
          cmd,
          f,
          () =>
            `${f.protocol} ${f.address ?? 'host'}:${f.port} forwarded to ${instance} ${f.target_address}:${f.target_port}\n`,
        );
      },
    );
  examples(create, [
    'floe forward create ssh web-1 --port 2222 --to 22',
    'floe forward create www web-1 --fip shop --port 80',
  ]);

  fwd
    .command('rm')
    .description('stop forwarding the port')
    .argument('<forward>', 'port forward id or name')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (ref: string, opts: { yes?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `port forward ${ref}`, `delete port forward ${ref}?`);
      await rt.client(cmd).portForwards.delete(ref, { project: rt.project(cmd) });
      rt.print(cmd, { deleted: ref }, () => `port forward ${ref} deleted\n`);
    });
}
