import { createRequire } from 'node:module';
import { Command, CommanderError, Option } from 'commander';
import { FloeApiError } from '@floe/client';
import { registerCommands } from './commands/index.js';
import { CliError } from './errors.js';
import { OUTPUT_FORMATS } from './output.js';
import { collect } from './parse.js';
import { CliRuntime, attachRuntime, type CliDeps } from './runtime.js';

/** The CLI's version (from its package.json). */
export const CLI_VERSION: string = (createRequire(import.meta.url)('../package.json') as { version: string }).version;

/** Exit codes: 0 ok, 1 failure, 2 usage error. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/**
 * Builds the `floe` program with its global options and every command.
 * Commander's own exits are turned into exceptions so `run` picks the code.
 */
export function buildProgram(deps: CliDeps = {}): { program: Command; runtime: CliRuntime } {
  const runtime = new CliRuntime(deps);
  const program = new Command('floe');
  program
    .description('floe: a small self-hosted cloud. Manage instances, images, hosts and more.')
    .version(CLI_VERSION, '-V, --version', 'print the floe CLI version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void runtime.out.write(s),
      writeErr: (s) => void runtime.err.write(s),
      outputError: (s, write) => write(s),
    })
    .showSuggestionAfterError()
    .addOption(new Option('-o, --output <format>', 'output format').choices(OUTPUT_FORMATS).default('table'))
    .option('-p, --project <name>', 'project names resolve in (default: the context\'s, or "default")', collect)
    .option('--context <name>', 'saved context to use (default: the current one, or $FLOE_CONTEXT)')
    .addHelpText(
      'after',
      `
Configuration: $FLOE_CONFIG or ~/.config/floe/config.json; FLOE_URL, FLOE_TOKEN,
FLOE_CA (CA file), FLOE_CONTEXT and FLOE_PROJECT override it.

Examples:
  $ floe login https://floe.example:8443 --token floe_xxx --ca ca.pem
  $ floe instance create web --image debian-12 --type small --wait
  $ floe vm ls -o json
  $ floe events --kind instance
`,
    );
  attachRuntime(program, runtime);
  registerCommands(program);
  return { program, runtime };
}

/** Prints an error as `error: <message> (<code>)` and returns the exit code. */
export function reportError(runtime: CliRuntime, err: unknown): number {
  if (err instanceof CommanderError) {
    // Commander already printed its message (or the help / version text).
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof CliError) {
    runtime.err.write(`error: ${err.message}${err.code === 'usage' ? '' : ` (${err.code})`}\n`);
    return err.exitCode;
  }
  if (err instanceof FloeApiError) {
    const hint =
      err.code === 'unauthenticated' && runtime.loggedOutOf !== undefined
        ? `you are not logged in: floe login ${runtime.loggedOutOf}`
        : tlsHint(err);
    runtime.err.write(`error: ${err.message} (${err.code})\n${hint === '' ? '' : `hint: ${hint}\n`}`);
    return EXIT.failure;
  }
  runtime.err.write(`error: ${err instanceof Error ? err.message : String(err)} (internal_error)\n`);
  if (runtime.env.FLOE_DEBUG !== undefined && err instanceof Error && err.stack !== undefined)
    runtime.err.write(`${err.stack}\n`);
  return EXIT.failure;
}

/** A hint for the usual TLS trouble with floe's own CA. */
function tlsHint(err: FloeApiError): string {
  const cause = typeof err.details.cause === 'string' ? err.details.cause : '';
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(cause))
    return "the server's certificate is not trusted: pass floe's CA with --ca <file> (login) or FLOE_CA";
  return '';
}

/**
 * Runs the CLI with `argv` (without node and script) and resolves with the
 * exit code; never calls process.exit itself.
 */
export async function run(argv: readonly string[], deps: CliDeps = {}): Promise<number> {
  const { program, runtime } = buildProgram(deps);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    return reportError(runtime, err);
  } finally {
    await runtime.close();
  }
}
