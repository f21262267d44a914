import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { run, type RunResult } from '@floe/process';
import type { ConsoleSession, FloeClient } from '@floe/client';
import { nodeArgs, ROOT } from './helpers.js';

/**
 * Simulated hosts for end-to-end tests: network namespaces this test makes
 * (and removes, with every process left inside them), joined by veth pairs.
 */
export class Namespaces {
  readonly tag = randomBytes(3).toString('hex');
  private readonly made: string[] = [];
  private readonly rootLinks: string[] = [];

  /** A new namespace `fe<tag><suffix>` with loopback up. */
  async add(suffix: string): Promise<string> {
    const ns = `fe${this.tag}${suffix}`;
    await run('ip', ['netns', 'add', ns]);
    this.made.push(ns);
    await this.exec(ns, ['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Run a command inside a namespace. */
  exec(ns: string, argv: string[], options: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<RunResult> {
    return run('ip', ['netns', 'exec', ns, ...argv], options);
  }

  /**
   * A veth pair between two namespaces (null: the root namespace), each end
   * up with its address (`a.b.c.d/len`).
   */
  async link(
    a: { ns: string | null; name: string; addr?: string },
    b: { ns: string | null; name: string; addr?: string },
  ): Promise<void> {
    // Made in the root namespace, then moved: a name only has to be unique there for a moment.
    const tmpA = `fv${this.tag}${randomBytes(2).toString('hex')}`;
    const tmpB = `fv${this.tag}${randomBytes(2).toString('hex')}`;
    await run('ip', ['link', 'add', tmpA, 'type', 'veth', 'peer', 'name', tmpB]);
    for (const [end, tmp] of [
      [a, tmpA],
      [b, tmpB],
    ] as const) {
      if (end.ns === null) {
        await run('ip', ['link', 'set', tmp, 'name', end.name]);
        this.rootLinks.push(end.name);
        if (end.addr) await run('ip', ['addr', 'add', end.addr, 'dev', end.name]);
        await run('ip', ['link', 'set', end.name, 'up']);
      } else {
        await run('ip', ['link', 'set', tmp, 'netns', end.ns]);
        await this.exec(end.ns, ['ip', 'link', 'set', tmp, 'name', end.name]);
        if (end.addr) await this.exec(end.ns, ['ip', 'addr', 'add', end.addr, 'dev', end.name]);
        await this.exec(end.ns, ['ip', 'link', 'set', end.name, 'up']);
      }
    }
  }

  /** Kill every process inside the namespaces (QEMU, dnsmasq, agents), then delete them. */
  async cleanup(): Promise<void> {
    for (const ns of this.made) {
      const pids = await run('ip', ['netns', 'pids', ns], { allowFail: true });
      for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await new Promise((r) => setTimeout(r, 300));
    for (const ns of this.made) await run('ip', ['netns', 'del', ns], { allowFail: true });
    for (const l of this.rootLinks) await run('ip', ['link', 'del', l], { allowFail: true });
  }
}

/** A floe-agent process with the QEMU driver (TCG) inside a namespace. */
export function startAgentIn(
  ns: string,
  server: string,
  dataDir: string,
  underlay: string,
): ChildProcess & { output: () => string } {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      ...nodeArgs('packages/agent/src/main.ts', [
        // A short resync, so drift made by a test is repaired within seconds.
        '--server',
        server,
        '--data',
        dataDir,
        '--driver',
        'qemu',
        '--accel',
        'tcg',
        '--underlay',
        underlay,
        '--resync',
        '2',
        '--log-level',
        'info',
      ]),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  ) as ChildProcess & { output: () => string };
  let out = '';
  child.stdout!.on('data', (d) => {
    out += String(d);
  });
  child.stderr!.on('data', (d) => {
    out += String(d);
  });
  child.output = () => out;
  return child;
}

/**
 * A shell on a test guest's serial console: one console session per VM,
 * commands one at a time, each answered with its output and exit status.
 */
export class GuestShell {
  private session: ConsoleSession | null = null;
  private text = '';
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly client: FloeClient,
    readonly instance: string,
  ) {}

  /** Run `command` in the guest's shell; resolves with what it printed and its exit status. */
  sh(command: string, timeoutMs = 60_000): Promise<{ code: number; out: string }> {
    const next = this.queue.then(() => this.runOne(command, timeoutMs));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runOne(command: string, timeoutMs: number): Promise<{ code: number; out: string }> {
    if (this.session === null) {
      this.session = await this.client.instances.console(this.instance);
      this.session.onData((d) => {
        this.text += d.toString('utf8');
      });
      this.session.onClose(() => {
        this.session = null;
      });
    }
    const nonce = randomBytes(4).toString('hex');
    // The markers are printed by echo; the echoed command line has them followed by a quote, never by a newline.
    const done = new RegExp(`@@S${nonce}\\r?\\n([\\s\\S]*?)@@E${nonce} (\\d+)\\r?\\n`);
    const start = this.text.length;
    this.session.write(`echo "@@S${nonce}"; ${command}; echo "@@E${nonce} $?"\r`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = done.exec(this.text.slice(start));
      if (m) return { out: m[1]!.replace(/\r/g, ''), code: Number(m[2]) };
      if (Date.now() > deadline)
        throw new Error(
          `${this.instance}: no answer to ${JSON.stringify(command)} in ${timeoutMs} ms; console: ${this.text.slice(start).slice(-2000)}`,
        );
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Run until the command exits 0 (a guest taking its addresses), or fail with the last output. */
  async until(command: string, what: string, timeoutMs = 60_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await this.sh(command);
      if (r.code === 0) return r.out;
      last = r.out;
      await new Promise((res) => setTimeout(res, 1000));
    }
    throw new Error(`${this.instance}: timed out waiting for ${what}: ${last}`);
  }

  close(): void {
    this.session?.close();
    this.session = null;
  }
}
