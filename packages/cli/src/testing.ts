import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { User } from '@floe/api';
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

/** A user as the API answers it, for fake clients: `ada`, a local user without TOTP, changed by `overrides`. */
export function sampleUser(overrides: Partial<User> = {}): User {
  return {
    id: 'usr_01JB8X0Q3E6M2T9K4V7W5YB1C3',
    name: 'ada',
    display_name: 'Ada L.',
    email: 'ada@example.org',
    disabled: false,
    operator: false,
    has_password: true,
    source: null,
    totp: false,
    created_at: '2025-01-01T00:00:00.000Z',
    updated_at: '2025-01-01T00:00:00.000Z',
    ...overrides,
  };
}
