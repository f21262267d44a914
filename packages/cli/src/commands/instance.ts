import { registerInstanceUpdate } from './security-group.js';
import { Option, type Command } from 'commander';
import type { HistoryEntry, Instance, InstanceCreate, Operation, RateLimit, RestartPolicy } from '@floe/api';
import { UsageError } from '../errors.js';
import { age, mib, oneLine, renderDetails, renderTable, stateColor, type Colors } from '../output.js';
import { checkName, collect, intArg, parseLabels, readSshKeys, readUserData } from '../parse.js';
import { followOperation } from '../progress.js';
import { runtimeOf, type CliRuntime } from '../runtime.js';
import { waitFirstBoot } from './first-boot.js';
import { registerInstanceIo } from './instance-io.js';
import { registerInstanceResize } from './instance-resize.js';
import { parseNetworkArg, RATE_LIMIT_HELP } from './network.js';
import { parseRateLimit } from './rate-limit.js';
import { confirmDeletion, examples, fetchPage, listOptions, nameMap, type ListFlags } from './shared.js';

/** Table rows of instances; host and image ids are shown by name when known. */
function instanceTable(
  items: Instance[],
  now: number,
  c: Colors,
  hosts = new Map<string, string>(),
  images = new Map<string, string>(),
): string {
  return renderTable(
    ['NAME', 'STATE', 'HOST', 'VCPUS', 'MEMORY', 'IMAGE', 'AGE'],
    items.map((i) => [
      i.name,
      i.status.host_unreachable_since === undefined
        ? stateColor(c, i.status.state)
        : `${stateColor(c, i.status.state)} (host unreachable for ${age(i.status.host_unreachable_since, now)})`,
      i.status.host === null ? null : (hosts.get(i.status.host) ?? i.status.host),
      i.spec.vcpus,
      mib(i.spec.memory_mib),
      images.get(i.spec.image) ?? i.spec.image,
      age(i.created_at, now),
    ]),
  );
}

/** The top-level fields that differ between two versions of a resource (`spec.vcpus, labels.env`). */
function changedFields(before: Record<string, unknown> | null, after: Record<string, unknown> | null): string[] {
  const flat = (v: unknown, prefix: string, out: Map<string, string>): Map<string, string> => {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [k, x] of Object.entries(v as Record<string, unknown>))
        flat(x, prefix === '' ? k : `${prefix}.${k}`, out);
    } else out.set(prefix, JSON.stringify(v));
    return out;
  };
  const a = flat(before ?? {}, '', new Map());
  const b = flat(after ?? {}, '', new Map());
  const keys = new Set([...a.keys(), ...b.keys()]);
  const ignored = new Set(['revision', 'updated_at']);
  return [...keys].filter((k) => !ignored.has(k) && a.get(k) !== b.get(k)).sort();
}

/** Table rows of a history page. */
function historyTable(items: HistoryEntry[], now: number): string {
  return renderTable(
    ['REVISION', 'ACTION', 'ACTOR', 'AGE', 'CHANGED'],
    items.map((h) => {
      const changed = h.before === null || h.after === null ? [] : changedFields(h.before, h.after);
      return [h.revision, h.action, h.actor, age(h.time, now), oneLine(changed.join(', '), 80)];
    }),
  );
}

/** Options of `instance create`. */
interface CreateFlags {
  image: string;
  type?: string;
  vcpus?: number;
  memoryMib?: number;
  diskGib?: number;
  userData?: string;
  vendorData?: string;
  configDrive: boolean;
  sshKey?: string[];
  label?: string[];
  start: boolean;
  restartPolicy?: RestartPolicy;
  network?: string[];
  rateLimit?: RateLimit | null;
  wait?: boolean;
  waitBoot?: number | true;
}

/** Builds the create body from flags (reading user-data and key files). */
function instanceCreateBody(name: string, flags: CreateFlags, project: string | undefined): InstanceCreate {
  checkName(name, 'instance name');
  if (flags.type !== undefined && (flags.vcpus !== undefined || flags.memoryMib !== undefined)) {
    throw new UsageError('give either --type or --vcpus with --memory-mib, not both');
  }
  if ((flags.vcpus === undefined) !== (flags.memoryMib === undefined))
    throw new UsageError('--vcpus and --memory-mib go together');
  const body: InstanceCreate = { name, image: flags.image };
  if (project !== undefined) body.project = project;
  if (flags.type !== undefined) body.machine_type = flags.type;
  if (flags.vcpus !== undefined) body.vcpus = flags.vcpus;
  if (flags.memoryMib !== undefined) body.memory_mib = flags.memoryMib;
  if (flags.diskGib !== undefined) body.disk_gib = flags.diskGib;
  if (flags.userData !== undefined) body.user_data = readUserData(flags.userData);
  if (flags.vendorData !== undefined) body.vendor_data = readUserData(flags.vendorData, 'vendor-data');
  if (flags.configDrive === false) body.config_drive = false;
  if (flags.sshKey !== undefined) body.ssh_keys = flags.sshKey.flatMap(readSshKeys);
  if (flags.label !== undefined) body.labels = parseLabels(flags.label);
  if (!flags.start) body.start = false;
  if (flags.restartPolicy !== undefined) body.restart_policy = flags.restartPolicy;
  if (flags.network !== undefined) body.networks = flags.network.map(parseNetworkArg);
  if (flags.rateLimit != null) {
    if (body.networks === undefined) throw new UsageError('--rate-limit applies to the NICs of --network: give one');
    const rate_limit = flags.rateLimit;
    body.networks = body.networks.map((n) =>
      typeof n === 'string' ? { network: n, rate_limit } : { ...n, rate_limit },
    );
  }
  return body;
}

/** Prints an accepted operation, or follows it with `--wait`. */
async function reportOperation(
  rt: CliRuntime,
  cmd: Command,
  op: Operation,
  wait: boolean | undefined,
  what: string,
): Promise<void> {
  if (wait === true) {
    await followOperation(rt, cmd, op);
    return;
  }
  rt.print(cmd, op, () => `${what}: operation ${op.id} ${op.status} (follow it with "floe operation wait ${op.id}")\n`);
}

/** `floe instance` (alias `vm`): create and run virtual machines. */
export function registerInstance(program: Command): void {
  const instance = program.command('instance').alias('vm').description('create, run and remove virtual machines');
  examples(instance, [
    'floe instance create web --image debian-12 --type small --ssh-key ~/.ssh/id_ed25519.pub --wait',
    'floe vm ls --label env=prod',
    'floe vm stop web --force --wait',
  ]);
  registerInstanceUpdate(instance);

  listOptions(instance.command('ls').description('list instances')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const client = rt.client(cmd);
    const project = rt.project(cmd);
    const page = await fetchPage(rt, client.instances, { project }, opts);
    if (rt.globals(cmd).output === 'json') {
      rt.print(cmd, page, () => '');
      return;
    }
    const [hosts, images] = await Promise.all([
      nameMap(() => client.hosts.listAll()),
      nameMap(() => client.images.listAll({ project })),
    ]);
    rt.out.write(instanceTable(page.items, rt.now(), rt.colors, hosts, images));
  });

  instance
    .command('show')
    .description('show one instance: spec and observed status')
    .argument('<id>', 'instance id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const i = await rt.client(cmd).instances.get(id, { project: rt.project(cmd) });
      rt.print(cmd, i, () => renderDetails(i));
    });

  const create = instance
    .command('create')
    .description('create an instance (and start it, unless --no-start)')
    .argument('<name>', 'instance name (a DNS label)')
    .requiredOption('--image <image>', 'image id or name')
    .option('--type <type>', 'machine type id or name')
    .addOption(new Option('--vcpus <n>', 'virtual CPUs (custom size, with --memory-mib)').argParser(intArg(1, 256)))
    .addOption(
      new Option('--memory-mib <n>', 'memory in MiB (custom size, with --vcpus)').argParser(
        intArg(128, 4 * 1024 * 1024),
      ),
    )
    .addOption(
      new Option(
        '--disk-gib <n>',
        "disk size in GiB, at least the image's MIN DISK (else refused: disk_too_small); default: the type's disk, raised to the image's MIN DISK when smaller",
      ).argParser(intArg(1, 65536)),
    )
    .option('--user-data <file>', 'cloud-init user-data file (first-boot script)')
    .option('--vendor-data <file>', "cloud-init vendor-data file, instead of the operator's default")
    .option(
      '--no-config-drive',
      'attach no seed disk: the guest reads its first-boot data from the metadata service (169.254.169.254)',
    )
    .option(
      '--ssh-key <file|key>',
      'SSH public key, or a file of keys (repeatable)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--label <key=value>', 'label (repeatable)', collect)
    .option(
      '--network <net[=addresses]>',
      'a NIC on this network, optionally with its addresses: lan=10.10.0.7,fd00::7 (repeatable, in slot order)',
      (v: string, prev: string[] = []) => [...prev, v],
    )
    .option('--rate-limit <limits>', `for every --network NIC: ${RATE_LIMIT_HELP}`, parseRateLimit)
    .option('--no-start', 'create the instance stopped')
    .addOption(
      new Option('--restart-policy <policy>', 'what to do when the VM stops by itself').choices([
        'never',
        'on-failure',
        'always',
      ]),
    )
    .option('--wait', 'wait until the instance is created (and started)')
    .addOption(
      new Option(
        '--wait-boot [seconds]',
        'also wait until the guest reports the end of first boot (default 600 s); implies --wait',
      ).argParser(intArg(1, 86_400)),
    )
    .action(async (name: string, flags: CreateFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const body = instanceCreateBody(name, flags, rt.project(cmd));
      if (flags.waitBoot !== undefined && body.start === false)
        throw new UsageError('--wait-boot needs the instance started (drop --no-start)');
      const client = rt.client(cmd);
      const res = await client.instances.create(body);
      if (flags.wait === true || flags.waitBoot !== undefined) {
        await followOperation(rt, cmd, res.operation);
        rt.say(cmd, `instance ${res.instance.name} created (${res.instance.id})`);
        if (flags.waitBoot !== undefined) {
          const seconds = flags.waitBoot === true ? 600 : flags.waitBoot;
          const done = await waitFirstBoot(
            () => client.instances.get(res.instance.id),
            seconds * 1000,
            (m) => rt.say(cmd, m),
          );
          rt.say(cmd, `first boot of ${done.name} finished`);
        }
        return;
      }
      rt.print(
        cmd,
        res,
        () =>
          `instance ${res.instance.name} created (${res.instance.id}); operation ${res.operation.id} ${res.operation.status}\n`,
      );
    });
  examples(create, [
    'floe instance create web --image debian-12 --type small --wait',
    'floe instance create web --image debian-12 --type small --user-data cloud-config.yaml --wait-boot',
    'floe instance create db --image debian-12 --vcpus 2 --memory-mib 4096 --disk-gib 40 --label env=prod --restart-policy always',
    'floe instance create job --image debian-12 --type small --user-data ./init.sh --ssh-key ~/.ssh/id_ed25519.pub --no-start',
  ]);

  for (const verb of ['start', 'restart'] as const) {
    instance
      .command(verb)
      .description(`${verb} an instance`)
      .argument('<id>', 'instance id or name')
      .option('--wait', 'wait until it is done')
      .action(async (id: string, opts: { wait?: boolean }, cmd: Command) => {
        const rt = runtimeOf(cmd);
        const op = await rt.client(cmd).instances[verb](id, { project: rt.project(cmd) });
        await reportOperation(rt, cmd, op, opts.wait, `${verb} of ${id} requested`);
      });
  }

  instance
    .command('stop')
    .description('stop an instance (ACPI power-down, or at once with --force)')
    .argument('<id>', 'instance id or name')
    .option('--force', 'kill the VM at once instead of asking it to shut down')
    .option('--wait', 'wait until it is stopped')
    .action(async (id: string, opts: { force?: boolean; wait?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const op = await rt
        .client(cmd)
        .instances.stop(id, { project: rt.project(cmd), ...(opts.force === true ? { force: true } : {}) });
      await reportOperation(rt, cmd, op, opts.wait, `stop of ${id} requested`);
    });

  instance
    .command('rm')
    .description('delete an instance and its disk')
    .argument('<id>', 'instance id or name')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--wait', 'wait until it is gone')
    .action(async (id: string, opts: { yes?: boolean; wait?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `instance ${id}`, `delete instance ${id} and its disk?`);
      const op = await rt.client(cmd).instances.delete(id, { project: rt.project(cmd) });
      await reportOperation(rt, cmd, op, opts.wait, `deletion of ${id} requested`);
    });

  listOptions(
    instance
      .command('history')
      .description('show the change history of an instance')
      .argument('<id>', 'instance id or name'),
    { labels: false },
  ).action(async (id: string, opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const client = rt.client(cmd);
    const history = {
      list: (q: { cursor?: string; limit?: number } = {}) =>
        client.instances.history(id, { ...q, project: rt.project(cmd) }),
      listAll: async (q: { limit?: number } = {}) => {
        const all: HistoryEntry[] = [];
        let cursor: string | undefined;
        do {
          const page = await client.instances.history(id, {
            ...q,
            project: rt.project(cmd),
            ...(cursor === undefined ? {} : { cursor }),
          });
          all.push(...page.items);
          cursor = page.next_cursor ?? undefined;
        } while (cursor !== undefined);
        return all;
      },
    };
    const page = await fetchPage(rt, history, {}, opts);
    rt.print(cmd, page, () => historyTable(page.items, rt.now()));
  });

  registerInstanceResize(instance);
  registerInstanceIo(instance);
}
