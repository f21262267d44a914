import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { FloeClient, type FloeClientOptions } from '@floe/client';
import { configPath, loadConfig, resolveContext, type Env, type FloeConfig, type ResolvedContext } from './config.js';
import { colorsFor, renderJson, type Colors, type OutputFormat } from './output.js';
import { UsageError } from './errors.js';

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** A question on the terminal; a secret answer is read with echo off (raw mode), so it never shows. */
async function terminalPrompt(question: string, secret: boolean, err: Writer): Promise<string> {
  if (!secret) {
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return (await rl.question(`${question}: `)).trim();
    } finally {
      rl.close();
    }
  }
  err.write(`${question}: `);
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    let answer = '';
    const done = (fn: () => void) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      err.write('\n');
      fn();
    };
    const onData = (data: Buffer) => {
      for (const ch of data.toString('utf8')) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return done(() => resolve(answer));
        if (ch === '\u0003') return done(() => reject(new UsageError('cancelled')));
        if (ch === '\u007f' || ch === '\b') answer = answer.slice(0, -1);
        else answer += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** Where the CLI writes: process.stdout/stderr, or a buffer in tests. */
export interface Writer {
  write(chunk: string): unknown;
  isTTY?: boolean;
}

/** Everything the CLI takes from its surroundings; tests replace any of it. */
export interface CliDeps {
  /** Builds the API client (tests inject a recording fake). */
  createClient?: (options: FloeClientOptions) => FloeClient;
  stdout?: Writer;
  stderr?: Writer;
  env?: Env;
  /** Whether stdin is a terminal, so questions can be asked. */
  stdinIsTTY?: boolean;
  /** Asks a yes/no question (default: a readline prompt on stdin). */
  confirm?: (question: string) => Promise<boolean>;
  /** Asks for a line of text; `secret` answers are not echoed (default: a prompt on the terminal). */
  prompt?: (question: string, opts: { secret: boolean }) => Promise<string>;
  /** Reads all of standard input (`--password-stdin`). */
  readStdin?: () => Promise<string>;
  /** Clock for ages in tables. */
  now?: () => number;
  /** Stops `floe events` (default: Ctrl-C). */
  signal?: AbortSignal;
}

/** The global options every command sees. */
export interface GlobalOptions {
  output: OutputFormat;
  /** The last `--project` given. */
  project: string | undefined;
  /** Every `--project` given (token create uses them all). */
  projects: string[];
  context: string | undefined;
}

const runtimes = new WeakMap<Command, CliRuntime>();

/** Links a runtime to the root command, so every action can find it. */
export function attachRuntime(program: Command, runtime: CliRuntime): void {
  runtimes.set(program, runtime);
}

/** The runtime of the program a command belongs to. */
export function runtimeOf(cmd: Command): CliRuntime {
  let root = cmd;
  while (root.parent !== null) root = root.parent;
  const rt = runtimes.get(root);
  if (rt === undefined) throw new Error('command is not part of a floe program');
  return rt;
}

/** State and I/O of one CLI run: output streams, config, the API client. */
export class CliRuntime {
  readonly out: Writer;
  readonly err: Writer;
  readonly env: Env;
  readonly now: () => number;
  readonly colors: Colors;
  readonly stdinIsTTY: boolean;
  readonly signal: AbortSignal | undefined;
  readonly #createClient: (options: FloeClientOptions) => FloeClient;
  readonly #confirm: ((q: string) => Promise<boolean>) | undefined;
  readonly #prompt: CliDeps['prompt'];
  readonly #readStdin: () => Promise<string>;
  readonly #clients: FloeClient[] = [];
  #client: FloeClient | undefined;
  /** The server the current context points at when it holds no token (after `floe logout`), for the error hint. */
  loggedOutOf: string | undefined;

  constructor(deps: CliDeps = {}) {
    this.out = deps.stdout ?? process.stdout;
    this.err = deps.stderr ?? process.stderr;
    this.env = deps.env ?? process.env;
    this.now = deps.now ?? Date.now;
    this.colors = colorsFor(this.out.isTTY === true, this.env);
    this.stdinIsTTY = deps.stdinIsTTY ?? process.stdin.isTTY === true;
    this.signal = deps.signal;
    this.#createClient = deps.createClient ?? ((o) => new FloeClient(o));
    this.#confirm = deps.confirm;
    this.#prompt = deps.prompt;
    this.#readStdin = deps.readStdin ?? readAllStdin;
  }

  /** The global options as seen from `cmd`. */
  globals(cmd: Command): GlobalOptions {
    const o = cmd.optsWithGlobals<{ output?: OutputFormat; project?: string[]; context?: string }>();
    const projects = o.project ?? [];
    return { output: o.output ?? 'table', project: projects.at(-1), projects, context: o.context };
  }

  /** The config file path. */
  get configPath(): string {
    return configPath(this.env);
  }

  /** Reads the config file. */
  loadConfig(): FloeConfig {
    return loadConfig(this.configPath);
  }

  /** The context `cmd` runs against. */
  context(cmd: Command): ResolvedContext {
    const g = this.globals(cmd);
    return resolveContext(this.loadConfig(), { context: g.context, project: g.project }, this.env);
  }

  /** The project names resolve in: `--project`, `FLOE_PROJECT`, or the context's. */
  project(cmd: Command): string | undefined {
    return this.context(cmd).project;
  }

  /** The API client for the current context (created once per run). */
  client(cmd: Command): FloeClient {
    if (this.#client === undefined) {
      const ctx = this.context(cmd);
      this.#client = this.connect({ url: ctx.url, token: ctx.token, ca: ctx.ca });
      if (ctx.token === undefined) this.loggedOutOf = ctx.url;
    }
    return this.#client;
  }

  /** A client for explicit options (login); closed at the end of the run. */
  connect(options: FloeClientOptions): FloeClient {
    const clean = Object.fromEntries(
      Object.entries(options).filter(([, v]) => v !== undefined),
    ) as unknown as FloeClientOptions;
    const c = this.#createClient({ userAgent: 'floe-cli', ...clean });
    this.#clients.push(c);
    return c;
  }

  /** Prints `value` as JSON with `-o json`, else the table text. */
  print(cmd: Command, value: unknown, table: () => string): void {
    this.out.write(this.globals(cmd).output === 'json' ? renderJson(value) : table());
  }

  /** Prints a human message on stdout, only in table mode. */
  say(cmd: Command, line: string): void {
    if (this.globals(cmd).output !== 'json') this.out.write(`${line}\n`);
  }

  /** Prints a warning or hint on stderr. */
  warn(line: string): void {
    this.err.write(`${line}\n`);
  }

  /** True when a yes/no question can be answered (a terminal, or an injected prompt). */
  get canAsk(): boolean {
    return this.#confirm !== undefined || this.stdinIsTTY;
  }

  /** Asks a yes/no question; false when nobody can answer. */
  async confirm(question: string): Promise<boolean> {
    if (this.#confirm !== undefined) return this.#confirm(question);
    if (!this.stdinIsTTY) return false;
    const rl = createInterface({ input: process.stdin, output: process.stderr });
    try {
      return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
    } finally {
      rl.close();
    }
  }

  /**
   * Asks for a line (a username, a password, a code); secret answers are not echoed. Throws a usage
   * error naming `fallback` when nobody can answer (no terminal).
   */
  async ask(question: string, opts: { secret: boolean; fallback: string }): Promise<string> {
    if (this.#prompt !== undefined) return this.#prompt(question, { secret: opts.secret });
    if (!this.stdinIsTTY) throw new UsageError(`cannot ask "${question}" without a terminal: ${opts.fallback}`);
    return terminalPrompt(question, opts.secret, this.err);
  }

  /** All of standard input, for secrets piped in. */
  readStdin(): Promise<string> {
    return this.#readStdin();
  }

  /** Closes every client this run opened. */
  async close(): Promise<void> {
    await Promise.allSettled(this.#clients.splice(0).map((c) => c.close()));
    this.#client = undefined;
  }
}
