import { Option, type Command } from 'commander';
import type { Token, TokenScope, Verb } from '@floe/api';
import { age, ago, renderTable } from '../output.js';
import { checkName, collect, intArg } from '../parse.js';
import { runtimeOf } from '../runtime.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** A token's scope in one cell: `kinds=instance verbs=power resources=inst_…`, or '-' for none. */
function scopeCell(scope: TokenScope | null): string {
  if (scope === null) return '-';
  const parts = (['kinds', 'verbs', 'resources'] as const).flatMap((k) =>
    scope[k] === undefined ? [] : [`${k}=${scope[k].join(',')}`],
  );
  return parts.length === 0 ? '-' : parts.join(' ');
}

/** Table rows of tokens: STATE says which are expired (or revoked), not only when they expire. */
function tokenTable(items: Token[], now: number): string {
  return renderTable(
    ['ID', 'NAME', 'STATE', 'ADMIN', 'USER', 'PROJECTS', 'SCOPE', 'EXPIRES', 'LAST USED', 'AGE'],
    items.map((t) => [
      t.id,
      t.name,
      t.state,
      t.admin ? 'yes' : 'no',
      t.user ?? '-',
      t.admin ? '*' : t.projects.length === 0 ? '-' : t.projects.join(','),
      scopeCell(t.scope),
      t.expires_at === null ? 'never' : t.expires_at,
      ago(t.last_used_at, now),
      age(t.created_at, now),
    ]),
  );
}

interface CreateFlags {
  admin?: boolean;
  user?: string;
  projectToken?: boolean;
  expiresInDays?: number;
  kind?: string[];
  resource?: string[];
  verb?: string[];
}

/** The body's scope from the flags (the server checks the kinds and verbs), or nothing without scope flags. */
function scopeOf(opts: CreateFlags): { scope?: TokenScope } {
  const scope: TokenScope = {
    ...(opts.kind === undefined ? {} : { kinds: [...new Set(opts.kind)] as NonNullable<TokenScope['kinds']> }),
    ...(opts.resource === undefined ? {} : { resources: [...new Set(opts.resource)] }),
    ...(opts.verb === undefined ? {} : { verbs: [...new Set(opts.verb)] as Verb[] }),
  };
  return Object.keys(scope).length === 0 ? {} : { scope };
}

/** `floe token ls|show|create|rm`. */
export function registerToken(program: Command): void {
  const token = program.command('token').description('manage API tokens');

  listOptions(
    token
      .command('ls')
      .description(
        'list API tokens (admins: every token; users: their own, and the project tokens of projects they own) with their projects and scope; --project keeps the tokens granted that project',
      ),
  ).action(async (opts: ListFlags, cmd: Command) => {
    const rt = runtimeOf(cmd);
    const project = rt.globals(cmd).project;
    if (project !== undefined) checkName(project, 'project');
    const page = await fetchPage(rt, rt.client(cmd).tokens, project === undefined ? {} : { project }, opts);
    rt.print(cmd, page, () => tokenTable(page.items, rt.now()));
  });

  token
    .command('show')
    .description('show an API token: its projects and whether it is active, expired or revoked')
    .argument('<id>', 'token id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const t = await rt.client(cmd).tokens.get(id);
      rt.print(cmd, t, () => tokenTable([t], rt.now()));
    });

  const create = token
    .command('create')
    .description(
      'create an API token and print its secret (shown only once); users create personal tokens for themselves, owners project tokens of their projects',
    )
    .argument('<name>', 'token name')
    .option('--admin', 'the token may do everything, including managing hosts')
    .option(
      '--user <user>',
      "a personal token of this user: never more than the user may do (all of the user's projects unless --project limits it)",
    )
    .option(
      '--project-token',
      'a project token of the --project projects, of nobody: it keeps working when its creator leaves them (admins, and owners of every one of the projects)',
    )
    .option('--kind <kind>', 'scope: only resources of this kind, e.g. instance (repeatable)', collect)
    .option(
      '--resource <name-or-id>',
      "scope: only this resource of the token's one project (repeatable; a name needs exactly one --kind)",
      collect,
    )
    .option(
      '--verb <verb>',
      'scope: only this verb: read, create, update, delete, power, console or manage (repeatable)',
      collect,
    )
    .addOption(new Option('--expires-in-days <n>', 'expire after this many days').argParser(intArg(1, 3650)))
    .addHelpText(
      'after',
      '\nThe projects a non-admin token may use are given with --project (repeatable, or comma-separated).\n' +
        'Admins create project tokens with --project alone; a user creates a personal token of its own, or, as\n' +
        'owner of every project named, a project token with --project-token (members and viewers may not).\n' +
        'A scope only narrows what the token may do: --kind, --resource and --verb each limit it further.\n',
    )
    .action(async (name: string, opts: CreateFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      checkName(name, 'token name');
      const projects = rt.globals(cmd).projects;
      projects.forEach((p) => checkName(p, 'project'));
      const res = await rt.client(cmd).tokens.create({
        name,
        ...(opts.admin === true ? { admin: true } : {}),
        ...(opts.user === undefined ? {} : { user: opts.user }),
        ...(opts.projectToken === true ? { project_token: true } : {}),
        ...(projects.length > 0 ? { projects } : {}),
        ...(opts.expiresInDays === undefined ? {} : { expires_in_days: opts.expiresInDays }),
        ...scopeOf(opts),
      });
      rt.print(cmd, res, () => `token ${res.token.name} created (${res.token.id})\nsecret: ${res.secret}\n`);
      rt.warn('warning: the secret is shown only now; store it safely, it cannot be shown again');
    });
  examples(create, [
    'floe token create ci --project shop --expires-in-days 30',
    'floe token create deploy --project shop --project-token --expires-in-days 90',
    'floe token create ops --admin',
    'floe token create ada-laptop --user ada',
    'floe token create ci-restart --project shop --kind instance --resource web-1 --verb power --expires-in-days 90',
    'floe token create dashboard --project shop --kind instance --verb read',
  ]);

  token
    .command('rm')
    .description('revoke an API token')
    .argument('<id>', 'token id')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).tokens.delete(id);
      rt.print(cmd, { deleted: id }, () => `token ${id} revoked\n`);
    });
}
