/**
 * A failure the CLI reports itself, printed as `error: <message> (<code>)`.
 * `exitCode` is 1 for failures and 2 for usage errors.
 */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly code: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}

/** A usage error (bad flag combination or value): exit code 2. */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, 'usage', 2);
  }
}
