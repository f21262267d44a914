import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FloeClient } from '@floe/client';
import { run } from './program.js';

/** An output stream for CLI tests: keeps what the command wrote; `isTTY` as asked. */
export class OutputBuffer {
  text = '';
  constructor(readonly isTTY = false) {}
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString('utf8');
    return true;
  }
}

/** What a CLI run in a test printed and returned. */
export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs `floe argv` against the given client (a fake in unit tests): no configuration file, no colour,
 * no terminal, and the clock at `now` when given.
 */
export async function runWithClient(
  argv: readonly string[],
  client: FloeClient,
  opts: {
    now?: number;
    env?: Record<string, string>;
    /** Answers questions (username, password, TOTP code) as a terminal user would. */
    prompt?: (question: string, o: { secret: boolean }) => Promise<string>;
    /** What standard input holds. */
    stdin?: string;
  } = {},
): Promise<CliRun> {
  const out = new OutputBuffer();
  const err = new OutputBuffer();
  const now = opts.now;
  const code = await run(argv, {
    createClient: () => client,
    stdout: out,
    stderr: err,
    env: {
      FLOE_CONFIG: join(tmpdir(), 'floe-cli-test-no-config.json'),
      FLOE_URL: 'http://127.0.0.1:1',
      FLOE_TOKEN: 'tok',
      NO_COLOR: '1',
      ...opts.env,
    },
    stdinIsTTY: false,
    ...(now === undefined ? {} : { now: () => now }),
    ...(opts.prompt === undefined ? {} : { prompt: opts.prompt }),
    ...(opts.stdin === undefined ? {} : { readStdin: () => Promise.resolve(opts.stdin!) }),
  });
  return { code, out: out.text, err: err.text };
}
