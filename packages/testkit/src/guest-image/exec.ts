import { ExecError, run, type RunResult } from '@floe/process';

/**
 * The one place the guest image builder starts processes, through floe's
 * process runner: an argument array, never a shell.
 */

/** A host tool that could not start (`missing` when not installed), timed out, or exited non-zero. */
export { ExecError as ToolError };

/** What a finished tool printed. */
export type ToolResult = RunResult;

/** Run a host tool to completion (apt and dpkg without questions); throws ToolError unless it exits 0. */
export function runTool(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<ToolResult> {
  return run(cmd, args, {
    timeoutMs: opts.timeoutMs ?? 120_000,
    env: { DEBIAN_FRONTEND: 'noninteractive' },
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
  });
}
