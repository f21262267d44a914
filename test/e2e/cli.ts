import { run } from '../../packages/cli/src/program.js';
import { OutputBuffer } from '../../packages/cli/src/testing.js';

/** What one run of the CLI did: its exit code, what it printed, and the questions it asked. */
export interface CliRun {
  code: number;
  out: string;
  err: string;
  asked: string[];
}

/**
 * Run the CLI in this process with the real client, as a person with the configuration file
 * `config` would: `env` on top, and `answers` to the questions it asks (a prompt only when given).
 */
export async function runCli(
  config: string,
  argv: string[],
  opts: { env?: Record<string, string>; answers?: Record<string, string> } = {},
): Promise<CliRun> {
  const out = new OutputBuffer();
  const err = new OutputBuffer();
  const asked: string[] = [];
  const { answers } = opts;
  const code = await run(argv, {
    stdout: out,
    stderr: err,
    env: { FLOE_CONFIG: config, ...opts.env },
    stdinIsTTY: false,
    ...(answers === undefined
      ? {}
      : {
          prompt: (q: string) => {
            asked.push(q);
            return Promise.resolve(answers[q] ?? '');
          },
        }),
  });
  return { code, out: out.text, err: err.text, asked };
}
