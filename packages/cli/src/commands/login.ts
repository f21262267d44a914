import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { checkContextName, readCaFile, removeContext, saveContext, writeConfig } from '../config.js';
import { CliError, UsageError } from '../errors.js';
import { checkName } from '../parse.js';
import { renderTable } from '../output.js';
import { runtimeOf } from '../runtime.js';
import { loginWithOidc } from './login-oidc.js';
import { examples } from './shared.js';

/** A default context name from the server URL: its host name. */
function contextNameFromUrl(url: string): string {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '').replace(/[^A-Za-z0-9._-]/g, '-');
  return /^[A-Za-z0-9]/.test(host) ? host.slice(0, 63) : 'default';
}

interface LoginOptions {
  token?: string;
  ca?: string;
  oidc?: string;
  timeout: string;
  pollMs: string;
}

/** `floe login`: checks the server and the token (or logs in through an OpenID provider), then saves a context. */
export function registerLogin(program: Command): void {
  const login = program
    .command('login')
    .description('check a floe server and token, and save them as a context')
    .argument('<url>', 'API URL, e.g. https://floe.example:8443')
    .option('--token <token>', 'API token (default: $FLOE_TOKEN)')
    .option('--ca <file>', "PEM file with floe's CA certificate (for https with floe's own CA)")
    .option('--oidc <name>', 'log in through the OpenID provider the server calls <name>, in a browser')
    .option('--timeout <seconds>', 'with --oidc: how long to wait for the browser login', '600')
    .addOption(new Option('--poll-ms <ms>').default('2000').hideHelp())
    .action(async (url: string, opts: LoginOptions, cmd: Command) => {
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
        if (opts.token !== undefined) throw new UsageError('--token and --oidc exclude each other');
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
      const token = opts.token ?? rt.env.FLOE_TOKEN;
      if (token === undefined || token === '')
        throw new UsageError('a token is needed: --token <token> (or $FLOE_TOKEN)');
      const name = checkContextName(g.context ?? contextNameFromUrl(url));
      if (g.project !== undefined) checkName(g.project, 'project');
      const caFile = opts.ca === undefined ? undefined : resolve(opts.ca);
      const ca = caFile === undefined ? undefined : readCaFile(caFile);

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
        { context: name, url, version: health.version, project: g.project ?? null, config: path },
        () => `logged in to ${url} (floe ${health.version}); context "${name}" saved in ${path} and made current\n`,
      );
    });
  examples(login, [
    'floe login https://floe.example:8443 --token floe_xxx --ca ./ca.pem',
    'floe login https://floe.example:8443 --oidc corp-sso',
    'floe login http://127.0.0.1:8080 --token floe_xxx --context lab --project web',
  ]);

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
