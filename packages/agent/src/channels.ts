import { pino, type Logger } from 'pino';
import { FloeError, type AgentMessage, type ChannelId, type ControlMessage } from '@floe/api';
import type { ConsoleStream, VmDriver } from './drivers/vm/types.js';
import type { StatsSampler } from './stats-history.js';

/** What the channels need from the agent link. */
export interface ChannelLink {
  /** Send a message if connected; false when it was dropped. */
  send(msg: AgentMessage): boolean;
  /** Bytes queued on the link's socket and not yet written (0 when down). */
  readonly bufferedAmount: number;
}

/** Options of {@link AgentChannels}. */
export interface AgentChannelsOptions {
  driver: VmDriver;
  link: ChannelLink;
  /** The stats history the agent keeps; without it, `stats.history.get` is answered with an error. */
  history?: Pick<StatsSampler, 'history' | 'intervalMs' | 'retentionMs'>;
  logger?: Logger;
  /** Largest `channel.data` payload before base64, in bytes (default 32 KiB). */
  chunkBytes?: number;
  /**
   * When the link has more than this many bytes queued, live output (console,
   * followed logs) is not buffered further: the channel is closed with
   * `stream_overflow`. Log history waits for the queue to drain instead. Default 4 MiB.
   */
  maxBufferedBytes?: number;
  /** Keystrokes kept while a console is still opening, in bytes (default 64 KiB). */
  maxPendingInputBytes?: number;
}

/** The largest `tail_bytes` a log channel honours. */
const MAX_LOG_TAIL_BYTES = 64 * 1024 * 1024;

const INSTANCE_ID = /^inst_[0-9A-HJKMNP-TV-Z]{26}$/;
const CHANNEL_ID = /^[A-Za-z0-9_.:-]{1,100}$/;

interface Channel {
  id: ChannelId;
  kind: 'console' | 'logs';
  closed: boolean;
  console: ConsoleStream | null;
  /** Keystrokes that arrived before the console was open. */
  pending: Buffer[];
  pendingBytes: number;
  /** Undo everything the channel holds (listeners, console, log follower). */
  cleanup: Array<() => void>;
}

/** The `{code, message}` of a failure, for `channel.closed` and `stats` replies. */
export function errorBody(err: unknown): { code: string; message: string } {
  if (err instanceof FloeError) return { code: err.code, message: err.message };
  return { code: 'host_operation_failed', message: err instanceof Error ? err.message : String(err) };
}

/**
 * Drop from `early` (output a log follower saw while the history was read)
 * the leading chunks the history already ends with, so nothing is shown twice.
 */
export function dropSeen(history: Buffer, early: Buffer[]): Buffer[] {
  for (let n = early.length; n > 0; n--) {
    const head = Buffer.concat(early.slice(0, n));
    if (head.length > 0 && head.length <= history.length && history.subarray(history.length - head.length).equals(head))
      return early.slice(n);
  }
  return early;
}

/** Split `data` into pieces of at most `size` bytes. */
export function chunks(data: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size));
  return out;
}

/**
 * The agent's side of the multiplexed streams of the link: serial consoles,
 * console logs and stats requests, served from the VM driver. The control
 * plane names every channel; the agent answers an opened channel with an
 * empty `channel.data` first (so the control plane can tell "open" from
 * "failed" before it streams), then the bytes, and `channel.closed` at the
 * end (with an error when it could not open or had to give up).
 */
export class AgentChannels {
  private readonly channels = new Map<ChannelId, Channel>();
  private readonly log: Logger;
  private readonly chunkBytes: number;
  private readonly maxBuffered: number;
  private readonly maxPending: number;

  constructor(private readonly opts: AgentChannelsOptions) {
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.chunkBytes = opts.chunkBytes ?? 32 * 1024;
    this.maxBuffered = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.maxPending = opts.maxPendingInputBytes ?? 64 * 1024;
  }

  /** Open channels (tests and logs). */
  get size(): number {
    return this.channels.size;
  }

  /** Take one control message; false when it is not a channel or stats message. */
  handle(msg: ControlMessage): boolean {
    switch (msg.type) {
      case 'console.open':
        this.openConsole(msg.channel, msg.instance_id, (id) => this.opts.driver.openConsole(id));
        return true;
      case 'vnc.open':
        this.openConsole(msg.channel, msg.instance_id, (id) => this.opts.driver.openVnc(id));
        return true;
      case 'logs.open':
        this.openLogs(msg.channel, msg.instance_id, msg.tail_bytes, msg.follow === true);
        return true;
      case 'channel.data':
        this.input(msg.channel, msg.data);
        return true;
      case 'channel.close': {
        const ch = this.channels.get(msg.channel);
        if (ch !== undefined) this.finish(ch);
        return true;
      }
      case 'stats.get':
        void this.stats(msg.request_id, msg.instance_id);
        return true;
      case 'stats.history.get':
        this.statsHistory(msg.request_id, msg.instance_id, msg.since);
        return true;
      default:
        return false;
    }
  }

  /** The link dropped: close every channel (the control plane forgot them too). */
  closeAll(): void {
    for (const ch of [...this.channels.values()]) this.finish(ch, undefined, false);
  }

  private begin(id: ChannelId, kind: Channel['kind'], instanceId: string): Channel | null {
    if (typeof id !== 'string' || !CHANNEL_ID.test(id)) {
      this.log.warn({ channel: String(id).slice(0, 100) }, 'ignoring a channel with an invalid id');
      return null;
    }
    if (this.channels.has(id)) {
      this.log.warn({ channel: id }, 'ignoring a second open of a channel');
      return null;
    }
    const ch: Channel = { id, kind, closed: false, console: null, pending: [], pendingBytes: 0, cleanup: [] };
    this.channels.set(id, ch);
    if (typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId)) {
      this.finish(ch, { code: 'validation_failed', message: 'the instance id is not valid' });
      return null;
    }
    return ch;
  }

  /** A console channel: the serial console or the graphical one (raw RFB), whichever `open` attaches to. */
  private openConsole(id: ChannelId, instanceId: string, open: (instanceId: string) => Promise<ConsoleStream>): void {
    const ch = this.begin(id, 'console', instanceId);
    if (ch === null) return;
    open(instanceId).then(
      (stream) => {
        if (ch.closed) {
          stream.close();
          return;
        }
        ch.console = stream;
        // Acknowledged first: a stream may hand over what it already holds as soon as it is listened to.
        this.ack(ch);
        ch.cleanup.push(
          stream.onData((d) => this.live(ch, d)),
          stream.onClose((reason) => {
            ch.console = null; // already closed: finish must not close it again
            this.log.debug({ channel: ch.id, reason }, 'console closed');
            this.finish(ch);
          }),
          () => ch.console?.close(),
        );
        const pending = ch.pending;
        ch.pending = [];
        ch.pendingBytes = 0;
        for (const d of pending) if (!ch.closed) stream.write(d);
      },
      (err: unknown) => this.finish(ch, errorBody(err)),
    );
  }

  private openLogs(id: ChannelId, instanceId: string, tailBytes: number | undefined, follow: boolean): void {
    const ch = this.begin(id, 'logs', instanceId);
    if (ch === null) return;
    if (tailBytes !== undefined && (!Number.isSafeInteger(tailBytes) || tailBytes < 0)) {
      this.finish(ch, { code: 'validation_failed', message: 'tail_bytes must be a whole number of bytes, 0 or more' });
      return;
    }
    const tail = tailBytes === undefined ? undefined : Math.min(tailBytes, MAX_LOG_TAIL_BYTES);
    void (async () => {
      // Follow before reading the history, keeping what arrives meanwhile, so no output falls in between.
      let early: Buffer[] | null = follow ? [] : null;
      if (follow) {
        const unfollow = await this.opts.driver.followLog(instanceId, (d) => {
          if (early !== null) early.push(Buffer.from(d));
          else this.live(ch, d);
        });
        ch.cleanup.push(unfollow);
        if (ch.closed) {
          unfollow();
          return;
        }
      }
      const history = await this.opts.driver.readLog(instanceId, tail === undefined ? {} : { tailBytes: tail });
      if (ch.closed) return;
      this.ack(ch);
      for (const piece of chunks(history, this.chunkBytes)) {
        if (!(await this.drained(ch))) return;
        this.data(ch, piece);
      }
      if (!follow) {
        this.finish(ch);
        return;
      }
      const missed = dropSeen(history, early ?? []);
      early = null;
      for (const d of missed) this.live(ch, d);
    })().catch((err: unknown) => this.finish(ch, errorBody(err)));
  }

  private input(id: ChannelId, base64: string): void {
    const ch = this.channels.get(id);
    if (ch === undefined || ch.kind !== 'console' || typeof base64 !== 'string') return;
    const data = Buffer.from(base64, 'base64');
    if (data.length === 0) return;
    if (ch.console !== null) {
      ch.console.write(data);
      return;
    }
    // Still opening: keep a little, drop beyond that (a paste into a console that never opened).
    if (ch.pendingBytes + data.length <= this.maxPending) {
      ch.pending.push(data);
      ch.pendingBytes += data.length;
    }
  }

  private async stats(requestId: string, instanceId: string): Promise<void> {
    if (typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId)) {
      this.opts.link.send({
        type: 'stats',
        request_id: requestId,
        instance_id: String(instanceId),
        error: { code: 'validation_failed', message: 'the instance id is not valid' },
      });
      return;
    }
    try {
      const stats = await this.opts.driver.stats(instanceId);
      this.opts.link.send({ type: 'stats', request_id: requestId, instance_id: instanceId, stats });
    } catch (err) {
      this.opts.link.send({ type: 'stats', request_id: requestId, instance_id: instanceId, error: errorBody(err) });
    }
  }

  private statsHistory(requestId: string, instanceId: string, since: string | undefined): void {
    const answer = { type: 'stats.history', request_id: requestId, instance_id: String(instanceId) } as const;
    const history = this.opts.history;
    if (typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId)) {
      this.opts.link.send({ ...answer, error: { code: 'validation_failed', message: 'the instance id is not valid' } });
      return;
    }
    if (history === undefined) {
      this.opts.link.send({
        ...answer,
        error: { code: 'host_operation_failed', message: 'this agent keeps no stats history' },
      });
      return;
    }
    this.opts.link.send({
      ...answer,
      interval_ms: history.intervalMs,
      retention_ms: history.retentionMs,
      samples: history.history(instanceId, since),
    });
  }

  /** The channel is open: an empty data message tells the control plane so. */
  private ack(ch: Channel): void {
    this.opts.link.send({ type: 'channel.data', channel: ch.id, data: '' });
  }

  private data(ch: Channel, piece: Buffer): void {
    this.opts.link.send({ type: 'channel.data', channel: ch.id, data: piece.toString('base64') });
  }

  /** Live output: never queue without bound behind a slow link; give the channel up instead. */
  private live(ch: Channel, d: Buffer): void {
    if (ch.closed) return;
    if (this.opts.link.bufferedAmount > this.maxBuffered) {
      this.log.warn(
        { channel: ch.id, kind: ch.kind, buffered: this.opts.link.bufferedAmount },
        'link backed up; closing the channel',
      );
      this.finish(ch, {
        code: 'stream_overflow',
        message: `the ${ch.kind} output came faster than it could be delivered; reconnect to continue`,
      });
      return;
    }
    for (const piece of chunks(d, this.chunkBytes)) this.data(ch, piece);
  }

  /** Wait until the link has room; false when the channel closed meanwhile. */
  private async drained(ch: Channel): Promise<boolean> {
    while (!ch.closed && this.opts.link.bufferedAmount > this.maxBuffered / 2) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return !ch.closed;
  }

  private finish(ch: Channel, error?: { code: string; message: string }, notify = true): void {
    if (ch.closed) return;
    ch.closed = true;
    if (this.channels.get(ch.id) === ch) this.channels.delete(ch.id);
    for (const undo of ch.cleanup.splice(0)) {
      try {
        undo();
      } catch (err) {
        this.log.warn({ channel: ch.id, err: (err as Error).message }, 'closing a channel failed');
      }
    }
    ch.console = null;
    ch.pending = [];
    if (notify)
      this.opts.link.send({ type: 'channel.closed', channel: ch.id, ...(error === undefined ? {} : { error }) });
  }
}
