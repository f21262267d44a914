import type { Command } from 'commander';
import type { Nic, SecurityGroup, SecurityGroupCreate, SgRuleCreate } from '@floe/api';
import { UsageError } from '../errors.js';
import { age, renderDetails, renderTable, type Colors } from '../output.js';
import { checkName, collect, parseLabels } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { confirmDeletion, examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of security groups. */
function groupTable(items: SecurityGroup[], now: number, _c: Colors): string {
  return renderTable(
    ['NAME', 'INGRESS', 'EGRESS', 'RULES', 'NICS', 'DESCRIPTION', 'AGE'],
    items.map((g) => [
      g.name,
      g.spec.ingress_default,
      g.spec.egress_default,
      String(g.spec.rules.length),
      String(g.status.nics),
      g.description === '' ? '-' : g.description,
      age(g.created_at, now),
    ]),
  );
}

/** One group with its rules, remote groups by name. */
function groupDetails(g: SecurityGroup, names: ReadonlyMap<string, string>): string {
  const { spec, ...rest } = g;
  const rules = renderTable(
    ['ID', 'DIRECTION', 'PROTOCOL', 'PORTS', 'REMOTE', 'DESCRIPTION'],
    spec.rules.map((r) => [
      r.id,
      r.direction,
      r.protocol,
      r.port_min === null ? 'all' : r.port_min === r.port_max ? String(r.port_min) : `${r.port_min}-${r.port_max}`,
      r.remote_cidr ?? (r.remote_group !== null ? `group ${names.get(r.remote_group) ?? r.remote_group}` : 'anywhere'),
      r.description === '' ? '-' : r.description,
    ]),
  );
  return `${renderDetails({ ...rest, ingress_default: spec.ingress_default, egress_default: spec.egress_default })}\nrules:\n${rules}`;
}

interface RuleFlags {
  egress?: boolean;
  protocol?: string;
  port?: string;
  from?: string;
  to?: string;
  group?: string;
  description?: string;
}

const PROTOCOLS = ['tcp', 'udp', 'icmp', 'icmpv6', 'any'] as const;

/**
 * The body of `floe sg rule add` (pure, for tests): `--protocol tcp --port 22 --from 10.0.0.0/8`,
 * or `--group admins` for another group's members; ingress unless `--egress`.
 */
export function ruleBody(flags: RuleFlags): SgRuleCreate {
  const protocol = (flags.protocol ?? 'tcp') as SgRuleCreate['protocol'];
  if (!PROTOCOLS.includes(protocol))
    throw new UsageError(`--protocol ${flags.protocol}: one of ${PROTOCOLS.join(', ')}`);
  const direction = flags.egress === true ? 'egress' : 'ingress';
  const cidr = direction === 'ingress' ? flags.from : flags.to;
  const wrong = direction === 'ingress' ? flags.to : flags.from;
  if (wrong !== undefined)
    throw new UsageError(
      direction === 'ingress' ? '--to is for egress rules (add --egress)' : '--from is for ingress rules',
    );
  if (cidr !== undefined && flags.group !== undefined)
    throw new UsageError('a rule has a remote CIDR or a remote --group, not both');
  if (flags.port !== undefined && protocol !== 'tcp' && protocol !== 'udp')
    throw new UsageError('--port goes with --protocol tcp or udp');
  const body: SgRuleCreate = { direction, protocol };
  if (flags.port !== undefined) body.port = flags.port;
  if (cidr !== undefined) body.remote_cidr = cidr;
  if (flags.group !== undefined) body.remote_group = flags.group;
  if (flags.description !== undefined) body.description = flags.description;
  return body;
}

/** `floe security-group` (alias `sg`): groups of allow rules applied to NICs. */
export function registerSecurityGroup(program: Command): void {
  const sg = program
    .command('security-group')
    .alias('sg')
    .description('manage security groups: stateful allow rules applied to NICs on every host');
  examples(sg, [
    'floe sg create web --description "web servers"',
    'floe sg rule add web --protocol tcp --port 443',
    'floe sg rule add web --protocol tcp --port 22 --group admins',
    'floe vm update web-1 --security-group web --security-group default',
  ]);

  listOptions(sg.command('ls').description('list security groups')).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const page = await fetchPage(rt, rt.client(cmd).securityGroups, { project: rt.project(cmd) }, opts);
    rt.print(cmd, page, () => groupTable(page.items, rt.now(), rt.colors));
  });

  sg.command('show')
    .description('show one security group and its rules')
    .argument('<id>', 'group id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const client = rt.client(cmd);
      const g = await client.securityGroups.get(id, { project: rt.project(cmd) });
      const remotes = g.spec.rules.map((r) => r.remote_group).filter((r): r is string => r !== null && r !== g.id);
      const names = new Map<string, string>([[g.id, g.name]]);
      for (const r of new Set(remotes))
        names.set(r, (await client.securityGroups.get(r, { project: rt.project(cmd) }).catch(() => null))?.name ?? r);
      rt.print(cmd, g, () => groupDetails(g, names));
    });

  sg.command('create')
    .description('create a security group (ingress denied and egress allowed unless said otherwise)')
    .argument('<name>', 'group name (a DNS label)')
    .option('--description <text>', 'what the group is for')
    .option('--ingress-allow', 'let in what no rule allows (default: deny)')
    .option('--egress-deny', 'keep out what no rule allows (default: allow)')
    .option('--label <key=value>', 'label (repeatable)', collect)
    .action(
      async (
        name: string,
        flags: { description?: string; ingressAllow?: boolean; egressDeny?: boolean; label?: string[] },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        checkName(name, 'security group name');
        const body: SecurityGroupCreate = { name };
        const project = rt.project(cmd);
        if (project !== undefined) body.project = project;
        if (flags.description !== undefined) body.description = flags.description;
        if (flags.ingressAllow === true) body.ingress_default = 'allow';
        if (flags.egressDeny === true) body.egress_default = 'deny';
        if (flags.label !== undefined) body.labels = parseLabels(flags.label);
        const g = await rt.client(cmd).securityGroups.create(body);
        rt.print(
          cmd,
          g,
          () => `security group ${g.name} created (${g.id}); add rules with "floe sg rule add ${g.name}"\n`,
        );
      },
    );

  sg.command('rm')
    .description('delete a security group (refused while NICs use it or rules name it)')
    .argument('<id>', 'group id or name')
    .option('-y, --yes', 'do not ask for confirmation')
    .action(async (id: string, opts: { yes?: boolean }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await confirmDeletion(rt, opts.yes, `security group ${id}`, `delete security group ${id}?`);
      await rt.client(cmd).securityGroups.delete(id, { project: rt.project(cmd) });
      rt.print(cmd, { deleted: id }, () => `security group ${id} deleted\n`);
    });

  const rule = sg.command('rule').description('add and remove the allow rules of a group');
  rule
    .command('add')
    .description('allow traffic: ingress from a CIDR, a group or anywhere; --egress for outgoing')
    .argument('<group>', 'group id or name')
    .option('--egress', 'a rule for traffic the NICs send (default: traffic they receive)')
    .option('--protocol <p>', 'tcp, udp, icmp, icmpv6 or any', 'tcp')
    .option('--port <n|a-b>', 'destination port or range (tcp and udp; default all)')
    .option('--from <cidr>', 'ingress: the peers, e.g. 203.0.113.0/24 (default anywhere)')
    .option('--to <cidr>', 'egress: the peers')
    .option('--group <group>', 'the peers are this group\'s members (name or id; "self" for the group itself)')
    .option('--description <text>', 'why the rule is there')
    .action(async (group: string, flags: RuleFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const g = await rt.client(cmd).securityGroups.addRule(group, ruleBody(flags), { project: rt.project(cmd) });
      const added = g.spec.rules[g.spec.rules.length - 1]!;
      rt.print(cmd, g, () => `rule ${added.id} added to ${g.name}\n`);
    });
  rule
    .command('rm')
    .description('remove a rule (see its id with "floe sg show")')
    .argument('<group>', 'group id or name')
    .argument('<rule>', 'rule id')
    .action(async (group: string, ruleId: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const g = await rt.client(cmd).securityGroups.removeRule(group, ruleId, { project: rt.project(cmd) });
      rt.print(cmd, g, () => `rule ${ruleId} removed from ${g.name}\n`);
    });
}

/** `floe vm update`: a running instance's security groups and filtering, on every NIC or one. */
export function registerInstanceUpdate(instance: Command): void {
  instance
    .command('update')
    .description("change the security groups or filtering of an instance's NICs (running VMs too)")
    .argument('<id>', 'instance id or name')
    .option('--security-group <group>', "security group (repeatable; replaces the NIC's groups)", collect)
    .option('--default-group', "back to the project's default group only")
    .option('--no-filtering', 'no security-group filtering (anti-spoofing stays), e.g. for a firewall VM')
    .option('--filtering', 'filtering on again')
    .option('--nic <id>', 'only this NIC (default: all)')
    .action(
      async (
        id: string,
        flags: { securityGroup?: string[]; defaultGroup?: boolean; filtering?: boolean; nic?: string },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        const project = rt.project(cmd);
        const groups = flags.defaultGroup === true ? [] : flags.securityGroup;
        const filteringSet = cmd.getOptionValueSource('filtering') === 'cli';
        if (groups === undefined && !filteringSet)
          throw new UsageError('say what to change: --security-group, --default-group or --[no-]filtering');
        const client = rt.client(cmd);
        const nics = await client.instances.nics(id, { project });
        const chosen = flags.nic === undefined ? nics : nics.filter((n) => n.id === flags.nic);
        if (chosen.length === 0)
          throw new UsageError(flags.nic === undefined ? `instance ${id} has no NICs` : `no NIC ${flags.nic} on ${id}`);
        const out: Nic[] = [];
        for (const n of chosen) {
          const { nic } = await client.instances.updateNic(
            id,
            n.id,
            {
              ...(groups !== undefined ? { security_groups: groups } : {}),
              ...(filteringSet ? { filtering: flags.filtering !== false } : {}),
            },
            { project },
          );
          out.push(nic);
        }
        rt.print(cmd, { items: out }, () =>
          out
            .map((n) => `NIC ${n.id}: ${n.security_groups.join(', ')}${n.filtering ? '' : ' (filtering off)'}\n`)
            .join(''),
        );
      },
    );
}
