import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { FloeApiError, type FloeClient } from '@floe/client';
import { checkContextName, loadConfig, readCaFile, removeContext, saveContext, writeConfig } from '../config.js';
import { CliError, UsageError } from '../errors.js';
import { checkName } from '../parse.js';
import { renderTable } from '../output.js';
import { runtimeOf, type CliRuntime } from '../runtime.js';
import { loginWithOidc } from './login-oidc.js';
import { examples } from './shared.js';

/** A default context name from the server URL: its host name. */
function contextNameFromUrl(url: string): string {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '').replace(/[^A-Za-z0-9._-]/g, '-');
  return /^[A-Za-z0-9]/.test(host) ? host.slice(0, 63) : 'default';
}

interface LoginFlags {
  token?: string;
  ca?: string;
  username?: string;
  passwordStdin?: boolean;
  totp?: string;
  oidc?: string;
  timeout: string;
  pollMs: string;
}

/**
 * Log in with a username and password (asked for, or from $FLOE_PASSWORD / stdin) and, when the
 * server answers `totp_required`, a TOTP code; returns the session token and who it belongs to.
 */
async function passwordLogin(
  rt: CliRuntime,
  client: FloeClient,
  opts: LoginFlags,
): Promise<{ token: string; user: string; expires_at: string }> {
  const username = opts.username ?? (await rt.ask('Username', { secret: false, fallback: 'give it with --username' }));
  let password: string;
  if (opts.passwordStdin === true) password = (await rt.readStdin()).replace(/\r?\n$/, '');
  else if (rt.env.FLOE_PASSWORD !== undefined && rt.env.FLOE_PASSWORD !== '') password = rt.env.FLOE_PASSWORD;
  else password = await rt.ask('Password', { secret: true, fallback: 'set $FLOE_PASSWORD or use --password-stdin' });
  if (username === '' || password === '') throw new UsageError('a username and a password are needed');
  const attempt = (totp_code?: string) =>
    client.auth.login({ username, password, ...(totp_code !== undefined ? { totp_code } : {}), session_name: 'cli' });
  try {
    const done = await attempt(opts.totp);
    return { token: done.token, user: done.user.name, expires_at: done.expires_at };
  } catch (err) {
    if (!(err instanceof FloeApiError) || err.code !== 'totp_required' || opts.totp !== undefined) throw err;
    const code = await rt.ask('TOTP code (or a recovery code)', {
      secret: false,
      fallback: 'give it with --totp CODE',
    });
    const done = await attempt(code);
    return { token: done.token, user: done.user.name, expires_at: done.expires_at };
  }
}

/** `floe login`: checks the server and the token (or logs in with a password), then saves a context. */
export function registerLogin(program: Command): void {
  const login = program
    .command('login')
    .description(
      'log in to a floe server (with a token, a username and password, or an OpenID provider) and save it as a context',
    )
    .argument('<url>', 'API URL, e.g. https://floe.example:8443')
    .option('--token <token>', 'API token (default: $FLOE_TOKEN); without one, floe asks for a username and password')
    .option('--username <name>', 'log in as this user (the password comes from $FLOE_PASSWORD, stdin or a prompt)')
    .option('--password-stdin', 'read the password from standard input (for scripts)')
    .option('--totp <code>', 'TOTP code (or recovery code), when the user has TOTP')
    .option('--ca <file>', "PEM file with floe's CA certificate (for https with floe's own CA)")
    .option('--oidc <name>', 'log in through the OpenID provider the server calls <name>, in a browser')
    .option('--timeout <seconds>', 'with --oidc: how long to wait for the browser login', '600')
    .addOption(new Option('--poll-ms <ms>').default('2000').hideHelp())
    .action(async (url: string, opts: LoginFlags, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const g = rt.globals(cmd);
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        throw new UsageError(`invalid URL ${JSON.stringify(url)}`);
      }
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
        throw new UsageError('the URL must start with http:// or https://');
      if (opts.oidc !== undefined) {
        if (opts.token !== undefined || opts.username !== undefined)
          throw new UsageError('--oidc excludes --token and --username');
        const timeoutSeconds = Number(opts.timeout);
        const pollMs = Number(opts.pollMs);
        if (!Number.isInteger(timeoutSeconds) || timeoutSeconds < 1 || timeoutSeconds > 3600)
          throw new UsageError('--timeout must be a whole number of seconds from 1 to 3600');
        if (!Number.isInteger(pollMs) || pollMs < 10) throw new UsageError('--poll-ms must be at least 10');
        const caFile = opts.ca === undefined ? undefined : resolve(opts.ca);
        return loginWithOidc(rt, cmd, {
          url,
          authenticator: opts.oidc,
          context: checkContextName(g.context ?? contextNameFromUrl(url)),
          project: g.project === undefined ? undefined : checkName(g.project, 'project'),
          ca: caFile === undefined ? undefined : readCaFile(caFile),
          caFile,
          timeoutSeconds,
          pollMs,
        });
      }
      const given = opts.token ?? (opts.username === undefined ? rt.env.FLOE_TOKEN : undefined);
      const name = checkContextName(g.context ?? contextNameFromUrl(url));
      if (g.project !== undefined) checkName(g.project, 'project');
      const caFile = opts.ca === undefined ? undefined : resolve(opts.ca);
      const ca = caFile === undefined ? undefined : readCaFile(caFile);

      let token = given;
      let session: { user: string; expires_at: string } | undefined;
      if (token === undefined || token === '') {
        const anonymous = rt.connect({ url, ca });
        await anonymous.health();
        const done = await passwordLogin(rt, anonymous, opts);
        token = done.token;
        session = done;
      }
      const client = rt.connect({ url, token, ca });
      const health = await client.health();
      await client.projects.list({ limit: 1 }); // proves the token works
      if (g.project !== undefined) await client.projects.get(g.project);

      const path = saveContext(
        name,
        { url, token, ca_file: caFile, project: g.project },
        { makeCurrent: true, path: rt.configPath },
      );
      rt.print(
        cmd,
        {
          context: name,
          url,
          version: health.version,
          project: g.project ?? null,
          config: path,
          ...(session !== undefined ? { user: session.user, session_expires_at: session.expires_at } : {}),
        },
        () =>
          `logged in to ${url} (floe ${health.version})${session !== undefined ? ` as ${session.user}, session until ${session.expires_at}` : ''}; context "${name}" saved in ${path} and made current\n`,
      );
    });
  examples(login, [
    'floe login https://floe.example:8443 --ca ./ca.pem          # asks for username, password (and TOTP code)',
    'FLOE_PASSWORD=... floe login https://floe.example:8443 --username ada --totp 123456',
    'floe login https://floe.example:8443 --token floe_xxx --ca ./ca.pem',
    'floe login https://floe.example:8443 --oidc keycloak     # prints the URL to open and a code to type there',
    'floe login http://127.0.0.1:8080 --token floe_xxx --context lab --project web',
  ]);

  program
    .command('logout')
    .description("revoke the current context's session token and remove it from the context")
    .action(async (_opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const ctx = rt.context(cmd);
      await rt.client(cmd).auth.logout();
      if (ctx.name !== undefined) {
        const config = loadConfig(rt.configPath);
        const saved = config.contexts[ctx.name];
        if (saved !== undefined && saved.token === ctx.token) {
          delete saved.token;
          writeConfig(rt.configPath, config);
        }
      }
      rt.say(
        cmd,
        `logged out${ctx.name !== undefined ? `; context "${ctx.name}" keeps its URL, without a token` : ''}`,
      );
    });

  const ctx = program.command('context').description('list, switch and remove saved contexts (servers and tokens)');
  ctx
    .command('ls')
    .description('list saved contexts; * marks the current one')
    .action((_opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const config = rt.loadConfig();
      // Tokens never appear in the listing.
      const rows = Object.entries(config.contexts).map(([name, c]) => ({
        name,
        current: name === config.current,
        url: c.url,
        project: c.project ?? null,
        ca_file: c.ca_file ?? null,
      }));
      rt.print(cmd, rows, () =>
        renderTable(
          ['CURRENT', 'NAME', 'URL', 'PROJECT'],
          rows.map((r) => [r.current ? '*' : '', r.name, r.url, r.project]),
        ),
      );
    });
  ctx
    .command('use')
    .description('make a saved context the current one')
    .argument('<name>', 'context name')
    .action((name: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      const config = rt.loadConfig();
      if (!Object.prototype.hasOwnProperty.call(config.contexts, name))
        throw new CliError(`no context named ${JSON.stringify(name)}`, 'context_not_found');
      config.current = name;
      writeConfig(rt.configPath, config);
      rt.say(cmd, `switched to context "${name}"`);
    });
  ctx
    .command('rm')
    .description('forget a saved context')
    .argument('<name>', 'context name')
    .action((name: string, _opts: unknown, cmd: Command) => {
      const rt = runtimeOf(cmd);
      if (!removeContext(rt.configPath, name))
        throw new CliError(`no context named ${JSON.stringify(name)}`, 'context_not_found');
      rt.say(cmd, `context "${name}" removed`);
    });
}
