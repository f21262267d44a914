import { createConnection, type Socket } from 'node:net';

/**
 * A client for QEMU's machine protocol (QMP) over a unix socket: one JSON
 * object per line, the greeting, `qmp_capabilities`, commands answered by id,
 * and asynchronous events. QEMU serves one QMP client at a time, so a driver
 * keeps one connection per VM and sends every command over it.
 */

/** What `query-status` answers. */
export interface QmpStatusInfo {
  /** `running`, `paused`, `shutdown`, `internal-error` (KVM failure), `guest-panicked`, `prelaunch`, ... */
  status: string;
  running: boolean;
  singlestep?: boolean;
}

/** I/O counters of one block device (a subset of QEMU's BlockDeviceStats). */
export interface QmpBlockDeviceStats {
  rd_bytes: number;
  wr_bytes: number;
  rd_operations: number;
  wr_operations: number;
  [key: string]: unknown;
}

/** One entry of `query-blockstats`. */
export interface QmpBlockStats {
  device?: string;
  'node-name'?: string;
  qdev?: string;
  stats: QmpBlockDeviceStats;
  [key: string]: unknown;
}

/** One entry of `query-cpus-fast`. */
export interface QmpCpuInfoFast {
  'cpu-index': number;
  'qom-path': string;
  'thread-id': number;
  target: string;
  props?: Record<string, number>;
}

/** One entry of `query-block` (enough to find the drives). */
export interface QmpBlockInfo {
  device: string;
  qdev?: string;
  removable: boolean;
  locked: boolean;
  inserted?: { file: string; ro: boolean; drv: string; [key: string]: unknown };
  [key: string]: unknown;
}

type NoArgs = Record<string, never> | undefined;
type Empty = Record<string, never>;

/** The commands floe sends, with their arguments and replies. Other commands go through the untyped overload of `execute`. */
export interface QmpCommands {
  qmp_capabilities: { args: { enable?: string[] } | undefined; returns: Empty };
  'query-status': { args: NoArgs; returns: QmpStatusInfo };
  'query-name': { args: NoArgs; returns: { name?: string } };
  'query-blockstats': { args: { 'query-nodes'?: boolean } | undefined; returns: QmpBlockStats[] };
  'query-block': { args: NoArgs; returns: QmpBlockInfo[] };
  'query-cpus-fast': { args: NoArgs; returns: QmpCpuInfoFast[] };
  system_powerdown: { args: NoArgs; returns: Empty };
  system_reset: { args: NoArgs; returns: Empty };
  quit: { args: NoArgs; returns: Empty };
  stop: { args: NoArgs; returns: Empty };
  cont: { args: NoArgs; returns: Empty };
  /** The children of a QOM path; `/machine/peripheral` lists the devices that have an id (`type` is `child<driver>`). */
  'qom-list': { args: { path: string }; returns: QmpObjectProperty[] };
  device_add: { args: { driver: string; id: string; bus?: string } & Record<string, unknown>; returns: Empty };
  /** Asks the guest to release the device; DEVICE_DELETED follows once it has. */
  device_del: { args: { id: string }; returns: Empty };
  netdev_add: { args: { type: string; id: string } & Record<string, unknown>; returns: Empty };
  netdev_del: { args: { id: string }; returns: Empty };
}

/** One entry of `qom-list`. */
export interface QmpObjectProperty {
  name: string;
  type: string;
}

/** A QMP command name floe knows the reply type of. */
export type QmpCommandName = keyof QmpCommands;

/** An asynchronous event from QEMU (`SHUTDOWN`, `STOP`, `RESET`, `POWERDOWN`, ...). */
export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's clock when the event happened. */
  timestamp: { seconds: number; microseconds: number } | null;
}

/** QEMU's greeting: its version and capabilities. */
export interface QmpGreeting {
  version: { qemu: { major: number; minor: number; micro: number }; package: string };
  capabilities: string[];
}

/** QEMU refused a command: `class` and `desc` as QMP reported them. */
export class QmpError extends Error {
  override readonly name = 'QmpError';
  /** QMP's error class, e.g. `GenericError`, `CommandNotFound`, `DeviceNotFound`. */
  readonly class: string;
  constructor(
    /** The command that failed. */
    readonly command: string,
    errorClass: string,
    /** QMP's human-readable description. */
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${desc} (${errorClass})`);
    this.class = errorClass;
  }
}

/** No answer within the time allowed (the greeting or a command). */
export class QmpTimeoutError extends Error {
  override readonly name = 'QmpTimeoutError';
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super(`QMP ${command}: no answer within ${timeoutMs} ms`);
  }
}

/** The socket could not be opened, closed while a command waited, or QEMU spoke something other than QMP. */
export class QmpConnectionError extends Error {
  override readonly name = 'QmpConnectionError';
  constructor(
    message: string,
    /** The socket error behind it (`ENOENT`, `ECONNREFUSED`, ...), when there was one. */
    readonly errno?: string,
  ) {
    super(message);
  }
}

/** Options of `QmpClient.connect`. */
export interface QmpConnectOptions {
  /** How long to wait for the socket, the greeting and `qmp_capabilities`; default 5 s. */
  timeoutMs?: number;
  /** Default timeout of `execute`; default 10 s. */
  commandTimeoutMs?: number;
}

/** Options of one `execute`. */
export interface QmpExecuteOptions {
  /** Reject with QmpTimeoutError after this long. */
  timeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

// A line longer than this is not QMP; stop reading rather than buffer forever.
const MAX_LINE_BYTES = 16 * 1024 * 1024;

/**
 * One QMP connection.
 *
 * @example
 * const qmp = await QmpClient.connect('/var/lib/floe/agent/vms/inst_.../qmp.sock');
 * const { status } = await qmp.execute('query-status');
 * qmp.onEvent('SHUTDOWN', (e) => console.log(e.data.reason));
 * qmp.close();
 */
export class QmpClient {
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Map<string, Set<(event: QmpEvent) => void>>();
  private readonly closeListeners = new Set<(err: Error | null) => void>();
  private buffer = '';
  private nextId = 1;
  private closedWith: Error | null | undefined = undefined;
  private readonly commandTimeoutMs: number;

  private constructor(
    private readonly socket: Socket,
    /** QEMU's greeting. */
    readonly greeting: QmpGreeting,
    initialBuffer: string,
    opts: QmpConnectOptions,
  ) {
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 10_000;
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) =>
      this.shutdown(
        new QmpConnectionError(`QMP connection failed: ${err.message}`, (err as NodeJS.ErrnoException).code),
      ),
    );
    socket.on('close', () => this.shutdown(null));
    if (initialBuffer.length > 0) queueMicrotask(() => this.onData(initialBuffer));
  }

  /** Open the socket, read the greeting and leave capabilities negotiation mode. */
  static connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const socket = createConnection(path);
      socket.setEncoding('utf8');
      let buffer = '';
      let step: 'greeting' | 'capabilities' = 'greeting';
      let greeting: QmpGreeting | null = null;
      let done = false;
      const fail = (err: Error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(
        () => fail(new QmpTimeoutError(step === 'greeting' ? 'greeting' : 'qmp_capabilities', timeoutMs)),
        timeoutMs,
      );
      const onError = (err: NodeJS.ErrnoException) =>
        fail(new QmpConnectionError(`cannot connect to QMP at ${path}: ${err.message}`, err.code));
      const onClose = () => fail(new QmpConnectionError(`QMP at ${path} closed the connection during the handshake`));
      const onData = (chunk: string) => {
        buffer += chunk;
        let newline: number;
        while (!done && (newline = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, newline).trim();
          buffer = buffer.slice(newline + 1);
          if (line.length === 0) continue;
          let msg: Record<string, unknown>;
          try {
            msg = JSON.parse(line) as Record<string, unknown>;
          } catch {
            fail(new QmpConnectionError(`QMP at ${path} sent something that is not JSON`));
            return;
          }
          if (step === 'greeting') {
            if (typeof msg.QMP !== 'object' || msg.QMP === null) {
              fail(new QmpConnectionError(`QMP at ${path} did not greet with a QMP banner`));
              return;
            }
            greeting = msg.QMP as QmpGreeting;
            step = 'capabilities';
            socket.write('{"execute":"qmp_capabilities","id":"floe-capabilities"}\n');
          } else if ('event' in msg) {
            continue;
          } else if ('error' in msg) {
            const e = msg.error as { class?: string; desc?: string };
            fail(new QmpError('qmp_capabilities', e.class ?? 'GenericError', e.desc ?? 'unknown error'));
            return;
          } else if ('return' in msg) {
            done = true;
            clearTimeout(timer);
            socket.off('data', onData);
            socket.off('error', onError);
            socket.off('close', onClose);
            resolve(new QmpClient(socket, greeting!, buffer, opts));
            return;
          }
        }
        if (buffer.length > MAX_LINE_BYTES) fail(new QmpConnectionError(`QMP at ${path} sent an overlong line`));
      };
      socket.on('data', onData);
      socket.on('error', onError);
      socket.on('close', onClose);
    });
  }

  /** True until the connection closed. */
  get connected(): boolean {
    return this.closedWith === undefined;
  }

  /** Send a command and wait for its reply (matched by id). Rejects with QmpError, QmpTimeoutError or QmpConnectionError. */
  execute<K extends QmpCommandName>(
    command: K,
    args?: QmpCommands[K]['args'],
    opts?: QmpExecuteOptions,
  ): Promise<QmpCommands[K]['returns']>;
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts?: QmpExecuteOptions): Promise<T>;
  execute(command: string, args?: Record<string, unknown>, opts: QmpExecuteOptions = {}): Promise<unknown> {
    if (this.closedWith !== undefined) {
      return Promise.reject(new QmpConnectionError(`QMP ${command}: the connection is closed`));
    }
    const id = `floe-${this.nextId++}`;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      const msg = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(msg)}\n`);
    });
  }

  /** Listen to one event by name, or to every event with `*`; returns an unsubscribe function. */
  onEvent(name: string, listener: (event: QmpEvent) => void): () => void {
    const set = this.listeners.get(name) ?? new Set();
    this.listeners.set(name, set);
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Called once when the connection ends: null when the peer closed it (or `close()`), else the error. */
  onClose(listener: (err: Error | null) => void): () => void {
    if (this.closedWith !== undefined) {
      const err = this.closedWith;
      queueMicrotask(() => listener(err));
      return () => {};
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Close the connection; waiting commands reject with QmpConnectionError. QEMU keeps running. */
  close(): void {
    this.socket.destroy();
    this.shutdown(null);
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line.length > 0) this.onLine(line);
    }
    if (this.buffer.length > MAX_LINE_BYTES) {
      this.socket.destroy();
      this.shutdown(new QmpConnectionError('QMP sent an overlong line'));
    }
  }

  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.socket.destroy();
      this.shutdown(new QmpConnectionError('QMP sent something that is not JSON'));
      return;
    }
    if (typeof msg.event === 'string') {
      const ts = msg.timestamp as { seconds?: unknown; microseconds?: unknown } | undefined;
      const event: QmpEvent = {
        event: msg.event,
        data: (typeof msg.data === 'object' && msg.data !== null ? msg.data : {}) as Record<string, unknown>,
        timestamp:
          typeof ts?.seconds === 'number' && typeof ts.microseconds === 'number'
            ? { seconds: ts.seconds, microseconds: ts.microseconds }
            : null,
      };
      for (const name of [msg.event, '*']) {
        for (const listener of [...(this.listeners.get(name) ?? [])]) {
          try {
            listener(event);
          } catch {
            // One failing listener must not keep the others from the event.
          }
        }
      }
      return;
    }
    // Replies without our id (there should be none) are dropped.
    const id = typeof msg.id === 'string' ? msg.id : null;
    const pending = id === null ? undefined : this.pending.get(id);
    if (pending === undefined || id === null) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ('error' in msg) {
      const e = (msg.error ?? {}) as { class?: string; desc?: string };
      pending.reject(new QmpError(pending.command, e.class ?? 'GenericError', e.desc ?? 'unknown error'));
    } else {
      pending.resolve(msg.return);
    }
  }

  private shutdown(err: Error | null): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = err;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(err ?? new QmpConnectionError(`QMP ${p.command}: the connection closed before the answer`));
      this.pending.delete(id);
    }
    for (const listener of [...this.closeListeners]) {
      try {
        listener(err);
      } catch {
        // as for events
      }
    }
    this.closeListeners.clear();
    this.listeners.clear();
  }
}

/** Options of `connectWithRetry`. */
export interface QmpRetryOptions extends QmpConnectOptions {
  /** How many connection attempts in total; default 20. */
  attempts?: number;
  /** Pause between attempts; default 100 ms. */
  delayMs?: number;
}

/**
 * Connect to a QMP socket that may not exist yet (QEMU still starting) or may
 * be taken for a moment; retries connection failures, not QMP errors.
 */
export async function connectWithRetry(path: string, opts: QmpRetryOptions = {}): Promise<QmpClient> {
  const attempts = Math.max(1, opts.attempts ?? 20);
  const delayMs = opts.delayMs ?? 100;
  let last: Error | null = null;
  for (let i = 0; i < attempts; i++) {
    try {
      return await QmpClient.connect(path, opts);
    } catch (err) {
      if (err instanceof QmpError) throw err;
      last = err as Error;
      if (i + 1 < attempts) await new Promise((r) => setTimeout(r, delayMs));
    }
  }
  throw last ?? new QmpConnectionError(`cannot connect to QMP at ${path}`);
}
