/* eslint-disable @typescript-eslint/require-await -- async like the real driver: a refusal is a rejected promise, never a throw */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FloeError, type DesiredInstance, type VmStats } from '@floe/api';
import { FakeRfbServer } from './fake-rfb.js';
import type { ConsoleStream, SetNicsResult, VmCreateContext, VmDriver, VmDriverEvent, VmInfo, VmNic } from './types.js';

/** Driver operations a test can make fail. */
export type FakeDriverOp = 'create' | 'start' | 'stop' | 'destroy' | 'setNics';

/** Options of the fake driver; every field is optional. */
export interface FakeVmDriverOptions {
  /** Keep the VMs in `<stateDir>/fake-vms.json`, so a new driver (a restarted agent) finds them again. */
  stateDir?: string;
  /** How long `start` takes. */
  startDelayMs?: number;
  /** How long a graceful `stop` takes (a forced one is immediate). */
  stopDelayMs?: number;
  /** Simulate a guest that reads its seed and finishes first boot at its first start (a `first-boot` event). */
  simulateFirstBoot?: boolean;
  /** Make an operation throw for the ids the predicate accepts. */
  failOn?: Partial<Record<FakeDriverOp, (id: string) => boolean>>;
}

interface FakeVm {
  id: string;
  name: string;
  project: string;
  state: VmInfo['state'];
  reason: string | null;
  started_at: string | null;
  pid: number | null;
  /** The VM's NICs with their slots; absent in files written before NICs. */
  nics?: Array<VmNic & { index: number }>;
  /** The VM has a seed disk its simulated guest reads on first boot (absent: yes). */
  seed?: boolean;
  /** The simulated guest has been through its first boot. */
  booted?: boolean;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function slotted(nics: readonly VmNic[]): Array<VmNic & { index: number }> {
  return nics
    .map((n, i) => ({ id: n.id, tap: n.tap, mac: n.mac, index: n.index ?? i }))
    .sort((a, b) => a.index - b.index);
}

/**
 * An in-memory VmDriver for tests and for running floe without a hypervisor.
 * With a `stateDir`, VMs outlive the driver like real detached QEMU processes:
 * a new instance over the same directory sees them still running.
 */
export class FakeVmDriver implements VmDriver {
  readonly name = 'fake';
  /** How often each method was called (counted before any injected failure). */
  readonly calls: Record<string, number> = {};
  /** Injected failures; tests may change this at any time. */
  failOn: FakeVmDriverOptions['failOn'];
  private readonly vms = new Map<string, FakeVm>();
  private readonly listeners = new Set<(event: VmDriverEvent) => void>();
  /** Simulated serial output per VM (in memory, bounded) and who follows it. */
  private readonly logs = new Map<string, Buffer>();
  private readonly followers = new Map<string, Set<(data: Buffer) => void>>();
  private readonly file: string | null;
  private nextPid = 40_000 + Math.floor(Math.random() * 10_000);
  private closed = false;

  constructor(private readonly opts: FakeVmDriverOptions = {}) {
    this.failOn = opts.failOn;
    this.file = opts.stateDir === undefined ? null : join(opts.stateDir, 'fake-vms.json');
    if (this.file !== null) this.load(this.file);
  }

  async list(): Promise<VmInfo[]> {
    this.enter('list');
    return [...this.vms.values()].map((vm) => this.info(vm));
  }

  async create(vm: DesiredInstance, ctx?: VmCreateContext): Promise<void> {
    this.enter('create', vm.id);
    if (this.vms.has(vm.id)) return;
    this.vms.set(vm.id, {
      id: vm.id,
      name: vm.name,
      project: vm.project,
      state: 'stopped',
      reason: null,
      started_at: null,
      pid: null,
      nics: slotted(ctx?.nics ?? []),
      seed: vm.spec.config_drive !== false,
    });
    this.save();
  }

  /**
   * Record the NICs; on a running VM, NICs that come and go are announced on
   * the console as a guest would see them (`fake VM <name>: NIC <id> added`).
   */
  async setNics(id: string, nics: VmNic[]): Promise<SetNicsResult> {
    this.enter('setNics', id);
    const vm = this.get(id);
    const wanted = slotted(nics);
    const slots = new Set(wanted.map((n) => n.index));
    const ids = new Set(wanted.map((n) => n.id));
    if (
      slots.size !== wanted.length ||
      ids.size !== wanted.length ||
      wanted.some((n) => !Number.isInteger(n.index) || n.index < 0 || n.index > 7)
    ) {
      throw new FloeError('validation_failed', 'NICs need unique ids and unique slots from 0 to 7', { field: 'nics' });
    }
    const before = vm.nics ?? [];
    const same = (a: VmNic & { index: number }, b: VmNic & { index: number }) =>
      a.id === b.id && a.tap === b.tap && a.mac === b.mac && a.index === b.index;
    const going = before.filter((n) => !wanted.some((w) => same(w, n)));
    const coming = wanted.filter((w) => !before.some((n) => same(w, n)));
    vm.nics = wanted;
    this.save();
    const running = vm.state === 'running';
    if (running) {
      for (const n of going) this.console(id, `fake VM ${vm.name}: NIC ${n.id} removed\r\n`);
      for (const n of coming) this.console(id, `fake VM ${vm.name}: NIC ${n.id} added on ${n.tap}\r\n`);
    }
    return {
      removed: before.filter((n) => !ids.has(n.id)).map((n) => n.id),
      added: running ? coming.map((n) => n.id) : [],
    };
  }

  /** Test hook: the NICs the VM has (what the next start, or the running VM, plugs in), in slot order. */
  nicsOf(id: string): Array<VmNic & { index: number }> {
    return structuredClone(this.get(id).nics ?? []);
  }

  async start(id: string): Promise<VmInfo> {
    this.enter('start', id);
    const vm = this.get(id);
    if (vm.state === 'running') return this.info(vm);
    if (this.opts.startDelayMs) await sleep(this.opts.startDelayMs);
    // Look again: the VM may have been destroyed or started meanwhile.
    const current = this.get(id);
    if (current.state !== 'running') {
      current.state = 'running';
      current.reason = null;
      current.started_at = new Date().toISOString();
      current.pid = this.nextPid++;
      this.save();
      this.console(id, `fake VM ${current.name} started\r\nFLOE-FAKE READY ${current.name}\r\n`);
      if (this.opts.simulateFirstBoot === true && current.booted !== true && current.seed !== false) {
        // The simulated guest reads its seed and finishes first boot at once, as a guest with cloud-init would report it.
        current.booted = true;
        this.save();
        const at = new Date().toISOString();
        this.emit({
          id,
          type: 'first-boot',
          message: 'the guest read its seed disk and finished first boot',
          first_boot: { source: 'config-drive', fetched_at: at, finished_at: at, result: 'ok' },
        });
      }
    }
    return this.info(current);
  }

  async stop(id: string, opts: { force?: boolean; timeoutMs?: number } = {}): Promise<VmInfo> {
    this.enter('stop', id);
    const vm = this.get(id);
    if (vm.state === 'stopped') return this.info(vm);
    if (!opts.force && this.opts.stopDelayMs) await sleep(Math.min(this.opts.stopDelayMs, opts.timeoutMs ?? Infinity));
    this.markStopped(vm, null);
    return this.info(vm);
  }

  async destroy(id: string): Promise<void> {
    this.enter('destroy', id);
    this.logs.delete(id);
    this.followers.delete(id);
    if (this.vms.delete(id)) this.save();
  }

  async inspect(id: string): Promise<VmInfo | null> {
    this.enter('inspect');
    const vm = this.vms.get(id);
    return vm === undefined ? null : this.info(vm);
  }

  onEvent(listener: (event: VmDriverEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.listeners.clear();
  }

  /** Test hook: the VM dies on its own (stopped, `crashed` event with this exit code). */
  crash(id: string, exitCode: number | null = 1): void {
    const vm = this.get(id);
    this.markStopped(vm, `exited with code ${exitCode ?? 'unknown'}`);
    this.emit({
      id,
      type: 'crashed',
      message: `VM process exited with code ${exitCode ?? 'unknown'}`,
      exit_code: exitCode,
    });
  }

  /** Test hook: the guest powers itself off cleanly (stopped, `stopped` event with exit code 0). */
  guestShutdown(id: string): void {
    const vm = this.get(id);
    this.markStopped(vm, null);
    this.emit({ id, type: 'stopped', message: 'guest powered off', exit_code: 0 });
  }

  private enter(op: string, id?: string): void {
    if (this.closed) throw new Error('fake driver is closed');
    this.calls[op] = (this.calls[op] ?? 0) + 1;
    const fail = id === undefined ? undefined : this.failOn?.[op as FakeDriverOp];
    if (fail !== undefined && id !== undefined && fail(id)) throw new Error(`fake driver: ${op} failed for ${id}`);
  }

  private get(id: string): FakeVm {
    const vm = this.vms.get(id);
    if (vm === undefined) throw new FloeError('instance_not_found', `fake driver: no VM ${id}`);
    return vm;
  }

  async readLog(id: string, opts: { tailBytes?: number } = {}): Promise<Buffer> {
    this.enter('readLog');
    this.get(id);
    const log = this.logs.get(id) ?? Buffer.alloc(0);
    return opts.tailBytes !== undefined && log.length > opts.tailBytes
      ? log.subarray(log.length - opts.tailBytes)
      : log;
  }

  async followLog(id: string, listener: (data: Buffer) => void): Promise<() => void> {
    this.enter('followLog');
    this.get(id);
    const set = this.followers.get(id) ?? new Set();
    this.followers.set(id, set);
    set.add(listener);
    return () => set.delete(listener);
  }

  /** A console that echoes what is typed, as a line-mode shell would. */
  async openConsole(id: string): Promise<ConsoleStream> {
    this.enter('openConsole');
    const vm = this.get(id);
    if (vm.state !== 'running') throw new FloeError('invalid_state', `VM ${vm.name} is not running`);
    const data = new Set<(d: Buffer) => void>();
    const closers = new Set<(reason: string) => void>();
    const unfollow = await this.followLog(id, (d) => {
      for (const l of data) l(d);
    });
    let open = true;
    return {
      write: (d) => {
        if (open) this.console(id, d.toString('utf8'));
      },
      onData: (l) => {
        data.add(l);
        return () => data.delete(l);
      },
      onClose: (l) => {
        closers.add(l);
        return () => closers.delete(l);
      },
      close: () => {
        if (!open) return;
        open = false;
        unfollow();
        for (const l of closers) l('closed');
      },
    };
  }

  /** A graphical console: a tiny RFB server showing a fixed picture drawn from the VM's name (see fake-rfb.ts). */
  async openVnc(id: string): Promise<ConsoleStream> {
    this.enter('openVnc');
    const vm = this.get(id);
    if (vm.state !== 'running') throw new FloeError('invalid_state', `VM ${vm.name} is not running`);
    const data = new Set<(d: Buffer) => void>();
    const closers = new Set<(reason: string) => void>();
    // What the server says before anyone listens (its version) waits for the first listener.
    let early: Buffer[] | null = [];
    let open = true;
    const finish = (reason: string) => {
      if (!open) return;
      open = false;
      for (const l of [...closers]) l(reason);
    };
    const server = new FakeRfbServer(
      vm.name,
      (d) => {
        if (early !== null) early.push(d);
        else for (const l of [...data]) l(d);
      },
      finish,
    );
    return {
      write: (d) => {
        if (open) server.input(d);
      },
      onData: (l) => {
        data.add(l);
        const waiting = early ?? [];
        early = null;
        for (const d of waiting) l(d);
        return () => data.delete(l);
      },
      onClose: (l) => {
        closers.add(l);
        return () => closers.delete(l);
      },
      close: () => finish('closed'),
    };
  }

  /** Counters that grow with the time the VM has run. */
  async stats(id: string): Promise<VmStats> {
    this.enter('stats');
    const vm = this.get(id);
    if (vm.state !== 'running' || vm.started_at === null)
      throw new FloeError('invalid_state', `VM ${vm.name} is not running`);
    const ms = Date.now() - Date.parse(vm.started_at);
    return {
      at: new Date().toISOString(),
      cpu_time_ns: ms * 10_000,
      memory_bytes: 64 * 1024 * 1024,
      memory_assigned_bytes: 256 * 1024 * 1024,
      disk_read_bytes: ms * 100,
      disk_write_bytes: ms * 10,
      net_rx_bytes: ms * 3,
      net_tx_bytes: ms * 2,
    };
  }

  /** Append simulated console output and hand it to followers. */
  private console(id: string, text: string): void {
    const chunk = Buffer.from(text, 'utf8');
    const log = Buffer.concat([this.logs.get(id) ?? Buffer.alloc(0), chunk]);
    this.logs.set(id, log.length > 64 * 1024 ? log.subarray(log.length - 64 * 1024) : log);
    for (const l of this.followers.get(id) ?? []) l(chunk);
  }

  private markStopped(vm: FakeVm, reason: string | null): void {
    vm.state = 'stopped';
    vm.reason = reason;
    vm.started_at = null;
    vm.pid = null;
    this.save();
  }

  private info(vm: FakeVm): VmInfo {
    return {
      id: vm.id,
      state: vm.state,
      reason: vm.reason,
      accelerator: 'fake',
      started_at: vm.started_at,
      pid: vm.pid,
    };
  }

  private emit(event: VmDriverEvent): void {
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch {
        // A failing listener must not stop the others from hearing about the VM.
      }
    }
  }

  private load(file: string): void {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const saved = JSON.parse(text) as { vms: FakeVm[] };
    for (const vm of saved.vms) this.vms.set(vm.id, vm);
  }

  private save(): void {
    if (this.file === null) return;
    mkdirSync(join(this.file, '..'), { recursive: true });
    const tmp = `${this.file}.tmp-${process.pid}`;
    writeFileSync(tmp, JSON.stringify({ vms: [...this.vms.values()] }, null, 2));
    renameSync(tmp, this.file);
  }
}
