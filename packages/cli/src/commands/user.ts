import type { Command } from 'commander';
import type { Member, ProjectRoleName, User } from '@floe/api';
import { UsageError } from '../errors.js';
import { age, renderDetails, renderTable } from '../output.js';
import { checkName } from '../parse.js';
import { runtimeOf, type CliRuntime } from '../runtime.js';
import { examples, fetchPage, listOptions, type ListFlags } from './shared.js';

/** Table rows of users. */
function userTable(items: User[], now: number): string {
  return renderTable(
    ['NAME', 'DISPLAY NAME', 'EMAIL', 'OPERATOR', 'DISABLED', 'TOTP', 'SOURCE', 'AGE'],
    items.map((u) => [
      u.name,
      u.display_name,
      u.email ?? '-',
      u.operator ? 'yes' : 'no',
      u.disabled ? 'yes' : 'no',
      u.totp ? 'on' : 'off',
      u.source ?? 'local',
      age(u.created_at, now),
    ]),
  );
}

/** Table rows of project members. */
function memberTable(items: Member[], now: number): string {
  return renderTable(
    ['USER', 'ROLE', 'AGE'],
    items.map((m) => [m.user, m.role, age(m.created_at, now)]),
  );
}

const ROLES: readonly ProjectRoleName[] = ['owner', 'member', 'viewer'];

function checkRole(role: string): ProjectRoleName {
  if (!(ROLES as readonly string[]).includes(role))
    throw new UsageError(`invalid role ${JSON.stringify(role)}: expected owner, member or viewer`);
  return role as ProjectRoleName;
}

/** A password from the environment variable the user named: never from the command line, where others see it. */
function passwordFrom(rt: CliRuntime, variable: string): string {
  const value = rt.env[variable];
  if (value === undefined || value === '') throw new UsageError(`the environment variable ${variable} is not set`);
  return value;
}

/** `floe user ls|show|create|update|rm|passwd`. */
export function registerUser(program: Command): void {
  const user = program.command('user').description('manage users (operators) and your own password');
  examples(user, [
    'floe user create ada --display-name "Ada L." --email ada@example.org',
    'floe project member add shop ada --role viewer',
  ]);

  listOptions(user.command('ls').description('list users'), { labels: false }).action(
    async (opts: ListFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const page = await fetchPage(rt, rt.client(cmd).users, {}, opts);
      rt.print(cmd, page, () => userTable(page.items, rt.now()));
    },
  );

  user
    .command('show')
    .description('show a user, or yourself with "me"')
    .argument('<id>', 'user id or name, or "me"')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const client = rt.client(cmd);
      const u = id === 'me' ? await client.users.me() : await client.users.get(id);
      rt.print(cmd, u, () => renderDetails(u));
    });

  const create = user
    .command('create')
    .description('create a user')
    .argument('<name>', 'user name (a DNS label)')
    .option('--display-name <text>', 'name shown to people')
    .option('--email <address>', 'email address')
    .option('--operator', 'the user manages hosts, public networks, machine types, projects and users')
    .option('--password-env <variable>', 'set the password from this environment variable')
    .option('--authenticator <name>', 'the user logs in with this authenticator of the chain (e.g. an LDAP directory)')
    .option('--subject <id>', "the user's identifier in that authenticator (default: the name)")
    .action(
      async (
        name: string,
        opts: {
          displayName?: string;
          email?: string;
          operator?: boolean;
          passwordEnv?: string;
          authenticator?: string;
          subject?: string;
        },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        checkName(name, 'user name');
        const u = await rt.client(cmd).users.create({
          name,
          ...(opts.displayName === undefined ? {} : { display_name: opts.displayName }),
          ...(opts.email === undefined ? {} : { email: opts.email }),
          ...(opts.operator === true ? { operator: true } : {}),
          ...(opts.passwordEnv === undefined ? {} : { password: passwordFrom(rt, opts.passwordEnv) }),
          ...(opts.authenticator === undefined ? {} : { authenticator: opts.authenticator }),
          ...(opts.subject === undefined ? {} : { subject: opts.subject }),
        });
        rt.print(cmd, u, () => `user ${u.name} created (${u.id})\n`);
      },
    );
  examples(create, [
    'floe user create ada --email ada@example.org',
    'FLOE_NEW_PASSWORD=... floe user create ops --operator --password-env FLOE_NEW_PASSWORD',
    'floe user create alice --authenticator corp   # logs in over LDAP; add memberships before the first login',
  ]);

  const update = user
    .command('update')
    .description('change a user: display name, email, disabled (stops its tokens at once) or operator')
    .argument('<id>', 'user id or name')
    .option('--display-name <text>', 'name shown to people')
    .option('--email <address>', 'email address ("" removes it)')
    .option('--disable', 'refuse the user and all its tokens')
    .option('--enable', 'accept the user again')
    .option('--operator', 'make the user an operator')
    .option('--no-operator', 'take the operator role away')
    .action(
      async (
        id: string,
        opts: { displayName?: string; email?: string; disable?: boolean; enable?: boolean; operator?: boolean },
        cmd: Command,
      ) => {
        const rt = runtimeOf(cmd);
        if (opts.disable === true && opts.enable === true)
          throw new UsageError('--disable and --enable exclude each other');
        const u = await rt.client(cmd).users.update(id, {
          ...(opts.displayName === undefined ? {} : { display_name: opts.displayName }),
          ...(opts.email === undefined ? {} : { email: opts.email === '' ? null : opts.email }),
          ...(opts.disable === true ? { disabled: true } : opts.enable === true ? { disabled: false } : {}),
          ...(opts.operator === undefined ? {} : { operator: opts.operator }),
        });
        rt.print(cmd, u, () => renderDetails(u));
      },
    );
  examples(update, ['floe user update ada --disable', 'floe user update ada --operator']);

  user
    .command('rm')
    .description('delete a user with its memberships and tokens')
    .argument('<id>', 'user id or name')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).users.delete(id);
      rt.print(cmd, { deleted: id }, () => `user ${id} deleted\n`);
    });

  const passwd = user
    .command('passwd')
    .description("change your own password (the token's user); both passwords come from environment variables")
    .requiredOption('--old-env <variable>', 'environment variable holding the current password')
    .requiredOption('--new-env <variable>', 'environment variable holding the new password (at least 12 characters)')
    .action(async (opts: { oldEnv: string; newEnv: string }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).users.changePassword(passwordFrom(rt, opts.oldEnv), passwordFrom(rt, opts.newEnv));
      rt.print(cmd, { changed: true }, () => 'password changed\n');
    });
  examples(passwd, ['OLD=... NEW=... floe user passwd --old-env OLD --new-env NEW']);

  const totp = user
    .command('totp')
    .description('your TOTP second factor: enrol, confirm, disable (and reset for operators)');
  examples(totp, ['floe user totp enrol', 'floe user totp confirm 123456', 'floe user totp disable 123456']);
  totp
    .command('enrol')
    .description('start TOTP: prints a QR code for your authenticator app, its URI and recovery codes')
    .action(async (_opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const e = await rt.client(cmd).users.totpEnrol();
      rt.print(
        cmd,
        e,
        () =>
          `${e.qr_terminal}\n` +
          `Scan the code with your authenticator app, or enter the secret by hand:\n  ${e.secret}\n  ${e.uri}\n\n` +
          `Recovery codes (each works once; keep them safe, they are not shown again):\n` +
          e.recovery_codes.map((c) => `  ${c}`).join('\n') +
          `\n\nThen confirm with a code from the app: floe user totp confirm <code>\n`,
      );
    });
  totp
    .command('confirm')
    .description('confirm TOTP with a code from the app; from then on logins ask for a code')
    .argument('<code>', 'the 6-digit code the app shows')
    .action(async (code: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).users.totpConfirm(code);
      rt.print(cmd, { totp: true }, () => 'TOTP is on: logins now ask for a code\n');
    });
  totp
    .command('disable')
    .description('turn TOTP off; needs a current code or an unused recovery code')
    .argument('<code>', 'a current code or a recovery code')
    .action(async (code: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).users.totpDisable(code);
      rt.print(cmd, { totp: false }, () => 'TOTP is off\n');
    });
  totp
    .command('reset')
    .description("remove another user's TOTP (operators), when the device and the recovery codes are lost")
    .argument('<user>', 'user id or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).users.totpReset(ref);
      rt.print(cmd, { user: ref, totp: false }, () => `TOTP of ${ref} removed\n`);
    });
}

/** `floe project member ls|add|update|rm`. */
export function registerMember(project: Command): void {
  const member = project.command('member').description("manage a project's members and their roles");

  member
    .command('ls')
    .description('list the members of a project')
    .argument('<project>', 'project id or name')
    .action(async (ref: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const items = await rt.client(cmd).members.list(ref);
      rt.print(cmd, { items }, () => memberTable(items, rt.now()));
    });

  const add = member
    .command('add')
    .description('add a user to a project: owner (also manages members), member (all resources), viewer (reads)')
    .argument('<project>', 'project id or name')
    .argument('<user>', 'user id or name')
    .requiredOption('--role <role>', 'owner, member or viewer')
    .action(async (ref: string, userRef: string, opts: { role: string }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const m = await rt.client(cmd).members.add(ref, { user: userRef, role: checkRole(opts.role) });
      rt.print(cmd, m, () => `${m.user} is ${m.role} of ${ref}\n`);
    });
  examples(add, ['floe project member add shop ada --role viewer']);

  const update = member
    .command('update')
    .description("change a member's role (the last owner stays owner)")
    .argument('<project>', 'project id or name')
    .argument('<user>', 'user id or name')
    .requiredOption('--role <role>', 'owner, member or viewer')
    .action(async (ref: string, userRef: string, opts: { role: string }, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const m = await rt.client(cmd).members.update(ref, userRef, checkRole(opts.role));
      rt.print(cmd, m, () => `${m.user} is ${m.role} of ${ref}\n`);
    });
  examples(update, ['floe project member update shop ada --role member']);

  member
    .command('rm')
    .description('remove a member (its personal tokens lose the project at once)')
    .argument('<project>', 'project id or name')
    .argument('<user>', 'user id or name')
    .action(async (ref: string, userRef: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      await rt.client(cmd).members.remove(ref, userRef);
      rt.print(cmd, { removed: userRef, project: ref }, () => `${userRef} removed from ${ref}\n`);
    });
}
