import {
  FloeError,
  isErrorCode,
  type AgentMessage,
  type ChannelId,
  type ControlMessage,
  type VmStats,
  type VmStatsSample,
  type VpnPeerCounters,
} from '@floe/api';

/** What opens a channel on the agent: a serial console, the graphical console (VNC) or the console log. */
export type ChannelOpen =
  | { type: 'console.open'; instance_id: string }
  | { type: 'vnc.open'; instance_id: string }
  | { type: 'logs.open'; instance_id: string; tail_bytes?: number; follow: boolean };

/** How a channel ended: nothing for a normal end, else why. */
export type ChannelEnd = { code: string; message: string } | undefined;

/** Bytes a channel keeps for a reader that has not attached yet, before it gives up. */
const MAX_UNREAD_BYTES = 16 * 1024 * 1024;
/** Keystrokes are refused while the link to the agent has more than this queued. */
const MAX_LINK_QUEUE_BYTES = 8 * 1024 * 1024;

/** The error a failure the agent reported becomes; unknown codes are the host's failure. */
export function agentError(error: { code: string; message: string }): FloeError {
  return isErrorCode(error.code)
    ? new FloeError(error.code, error.message)
    : new FloeError('host_operation_failed', `${error.code}: ${error.message}`);
}

/**
 * One open console or log channel as the control plane sees it. Bytes from the
 * agent are kept until a reader attaches with `onData`; `close()` asks the
 * agent to stop and ends the channel at once.
 */
export class ServerChannel {
  private dataListener: ((chunk: Buffer) => void) | null = null;
  private closeListeners: Array<(end: ChannelEnd) => void> = [];
  private unread: Buffer[] = [];
  private unreadBytes = 0;
  private ended = false;
  private end: ChannelEnd;

  constructor(
    readonly id: ChannelId,
    private readonly registry: LinkChannels,
  ) {}

  /** True once the channel ended, from either side. */
  get closed(): boolean {
    return this.ended;
  }

  /** Receive the bytes (those that came before first); one reader per channel. */
  onData(listener: (chunk: Buffer) => void): void {
    this.dataListener = listener;
    const unread = this.unread;
    this.unread = [];
    this.unreadBytes = 0;
    for (const chunk of unread) listener(chunk);
  }

  /** Called once when the channel ends (at once when it already has). */
  onClose(listener: (end: ChannelEnd) => void): void {
    if (this.ended) listener(this.end);
    else this.closeListeners.push(listener);
  }

  /** True while the link towards the agent has too much queued to take more keystrokes. */
  get backedUp(): boolean {
    return this.registry.queuedBytes() > MAX_LINK_QUEUE_BYTES;
  }

  /** Send keystrokes to a console; false when the channel is closed or the link is down. */
  write(data: Buffer): boolean {
    if (this.ended) return false;
    if (data.length === 0) return true;
    return this.registry.sendControl({ type: 'channel.data', channel: this.id, data: data.toString('base64') });
  }

  /** Stop the channel (the agent is told); a normal end unless `error` says why. */
  close(error?: { code: string; message: string }): void {
    if (this.ended) return;
    this.registry.forget(this.id, true);
    this.finish(error);
  }

  /** @internal Bytes from the agent. */
  deliver(chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    if (this.dataListener !== null) {
      this.dataListener(chunk);
      return;
    }
    this.unread.push(chunk);
    this.unreadBytes += chunk.length;
    if (this.unreadBytes > MAX_UNREAD_BYTES)
      this.close({ code: 'stream_overflow', message: 'nobody read the channel' });
  }

  /** @internal End the channel locally. */
  finish(end: ChannelEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.end = end;
    this.unread = [];
    const listeners = this.closeListeners;
    this.closeListeners = [];
    for (const l of listeners) l(end);
  }
}

interface Opening {
  channel: ServerChannel;
  resolve: (ch: ServerChannel) => void;
  reject: (err: FloeError) => void;
  timer: NodeJS.Timeout;
}

/** The agent's answer to `stats.history.get`. */
export interface AgentStatsHistory {
  interval_ms: number | null;
  retention_ms: number | null;
  samples: VmStatsSample[];
}

interface PendingRequest {
  kind: 'stats' | 'stats.history' | 'vpn.stats';
  resolve: (answer: never) => void;
  reject: (err: FloeError) => void;
  timer: NodeJS.Timeout;
}

/** What each channel opener is called in messages. */
const CHANNEL_NOUN: Record<ChannelOpen['type'], string> = {
  'console.open': 'console',
  'vnc.open': 'graphical console',
  'logs.open': 'log',
};

/**
 * The channels and requests of one agent link: picks channel and request ids,
 * routes the agent's `channel.data`, `channel.closed` and `stats` messages by
 * id, and fails everything at once when the link goes away.
 */
export class LinkChannels {
  private readonly open = new Map<ChannelId, ServerChannel>();
  private readonly opening = new Map<ChannelId, Opening>();
  private readonly requests = new Map<string, PendingRequest>();
  /** Channels this side closed, until the agent confirms (late data for them is expected). */
  private readonly closing = new Map<ChannelId, NodeJS.Timeout>();
  private counter = 0;
  private down: ChannelEnd | null = null;

  constructor(
    private readonly send: (msg: ControlMessage) => boolean,
    /** Bytes queued on the link towards the agent. */
    readonly queuedBytes: () => number = () => 0,
  ) {}

  /** Channels open or opening (tests and logs). */
  get size(): number {
    return this.open.size + this.opening.size;
  }

  /**
   * Open a channel; resolves once the agent acknowledged it, rejects with the
   * agent's error (for example `invalid_state`), `host_timeout` or `host_offline`.
   */
  openChannel(req: ChannelOpen, timeoutMs: number): Promise<ServerChannel> {
    if (this.down !== null)
      return Promise.reject(new FloeError('host_offline', this.down?.message ?? 'the host is not connected'));
    const id = `ch${(++this.counter).toString(36)}`;
    const channel = new ServerChannel(id, this);
    return new Promise<ServerChannel>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.opening.delete(id);
        this.forget(id, true);
        channel.finish({ code: 'host_timeout', message: 'the host did not answer' });
        reject(
          new FloeError('host_timeout', `the host did not open the ${CHANNEL_NOUN[req.type]} within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      this.opening.set(id, { channel, resolve, reject, timer });
      if (!this.send({ ...req, channel: id })) {
        clearTimeout(timer);
        this.opening.delete(id);
        reject(new FloeError('host_offline', 'the host is not connected'));
      }
    });
  }

  /** Ask the agent for a VM's counters. */
  stats(instanceId: string, timeoutMs: number): Promise<VmStats> {
    return this.ask<VmStats>(
      'stats',
      (id) => ({ type: 'stats.get', request_id: id, instance_id: instanceId }),
      'stats',
      timeoutMs,
    );
  }

  /** Ask the agent for the stats history it keeps of a VM (samples after `since` when given). */
  statsHistory(instanceId: string, since: string | undefined, timeoutMs: number): Promise<AgentStatsHistory> {
    return this.ask<AgentStatsHistory>(
      'stats.history',
      (id) => ({
        type: 'stats.history.get',
        request_id: id,
        instance_id: instanceId,
        ...(since === undefined ? {} : { since }),
      }),
      'the stats history',
      timeoutMs,
    );
  }

  /** Ask a gateway's agent for the handshakes and counters of a VPN network's peers. */
  vpnStats(vpnNetworkId: string, timeoutMs: number): Promise<VpnPeerCounters[]> {
    return this.ask<VpnPeerCounters[]>(
      'vpn.stats',
      (id) => ({ type: 'vpn.stats.get', request_id: id, vpn_network_id: vpnNetworkId }),
      'VPN peer counters',
      timeoutMs,
    );
  }

  private ask<T>(
    kind: PendingRequest['kind'],
    build: (id: string) => ControlMessage,
    what: string,
    timeoutMs: number,
  ): Promise<T> {
    if (this.down !== null)
      return Promise.reject(new FloeError('host_offline', this.down?.message ?? 'the host is not connected'));
    const id = `rq${(++this.counter).toString(36)}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.requests.delete(id);
        reject(new FloeError('host_timeout', `the host did not report ${what} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.requests.set(id, { kind, resolve, reject, timer });
      if (!this.send(build(id))) {
        clearTimeout(timer);
        this.requests.delete(id);
        reject(new FloeError('host_offline', 'the host is not connected'));
      }
    });
  }

  /** The pending request an answer belongs to (removed from the waiting list), or undefined. */
  private answered(requestId: string, kind: PendingRequest['kind']): PendingRequest | undefined {
    const pending = this.requests.get(requestId);
    if (pending === undefined || pending.kind !== kind) return undefined;
    clearTimeout(pending.timer);
    this.requests.delete(requestId);
    return pending;
  }

  /** Route one agent message (checked against its schema already); false when it is not a channel or stats message. */
  deliver(msg: AgentMessage): boolean {
    switch (msg.type) {
      case 'channel.data': {
        const opening = this.opening.get(msg.channel);
        if (opening !== undefined) {
          // The first data message (empty by convention) says the channel is open.
          clearTimeout(opening.timer);
          this.opening.delete(msg.channel);
          this.open.set(msg.channel, opening.channel);
          opening.resolve(opening.channel);
        }
        const ch = this.open.get(msg.channel);
        if (ch !== undefined) {
          if (msg.data !== '') ch.deliver(Buffer.from(msg.data, 'base64'));
        } else if (!this.closing.has(msg.channel)) {
          // Nobody here knows this channel: stop the agent from streaming into the void.
          this.forget(msg.channel, true);
        }
        return true;
      }
      case 'channel.closed': {
        const error = msg.error === undefined ? undefined : { code: msg.error.code, message: msg.error.message };
        const opening = this.opening.get(msg.channel);
        if (opening !== undefined) {
          clearTimeout(opening.timer);
          this.opening.delete(msg.channel);
          opening.channel.finish(error);
          opening.reject(
            agentError(
              error ?? { code: 'host_operation_failed', message: 'the host closed the channel before it opened' },
            ),
          );
          return true;
        }
        const timer = this.closing.get(msg.channel);
        if (timer !== undefined) {
          clearTimeout(timer);
          this.closing.delete(msg.channel);
        }
        const ch = this.open.get(msg.channel);
        this.open.delete(msg.channel);
        ch?.finish(error);
        return true;
      }
      case 'stats': {
        const pending = this.answered(msg.request_id, 'stats');
        if (pending === undefined) return true;
        if (msg.stats !== undefined) (pending.resolve as (s: VmStats) => void)(msg.stats);
        else
          pending.reject(agentError(msg.error ?? { code: 'host_operation_failed', message: 'the host sent no stats' }));
        return true;
      }
      case 'stats.history': {
        const pending = this.answered(msg.request_id, 'stats.history');
        if (pending === undefined) return true;
        if (msg.samples !== undefined)
          (pending.resolve as (h: AgentStatsHistory) => void)({
            interval_ms: msg.interval_ms ?? null,
            retention_ms: msg.retention_ms ?? null,
            samples: msg.samples,
          });
        else
          pending.reject(
            agentError(msg.error ?? { code: 'host_operation_failed', message: 'the host sent no stats history' }),
          );
        return true;
      }
      case 'vpn.stats': {
        const pending = this.answered(msg.request_id, 'vpn.stats');
        if (pending === undefined) return true;
        if (msg.peers !== undefined) (pending.resolve as (p: VpnPeerCounters[]) => void)(msg.peers);
        else
          pending.reject(
            agentError(msg.error ?? { code: 'host_operation_failed', message: 'the host sent no VPN peer counters' }),
          );
        return true;
      }
      default:
        return false;
    }
  }

  /** The link went away: end every channel and fail every request with `end`. */
  closeAll(end: { code: string; message: string }): void {
    this.down = end;
    const err = agentError(end);
    for (const [id, o] of this.opening) {
      clearTimeout(o.timer);
      o.channel.finish(end);
      o.reject(err);
      this.opening.delete(id);
    }
    for (const [id, ch] of this.open) {
      this.open.delete(id);
      ch.finish(end);
    }
    for (const [id, r] of this.requests) {
      clearTimeout(r.timer);
      this.requests.delete(id);
      r.reject(err);
    }
    for (const timer of this.closing.values()) clearTimeout(timer);
    this.closing.clear();
  }

  /** @internal Send a control message on the link. */
  sendControl(msg: ControlMessage): boolean {
    return this.down === null && this.send(msg);
  }

  /** @internal Drop a channel from the registry, telling the agent to close it. */
  forget(id: ChannelId, tellAgent: boolean): void {
    this.open.delete(id);
    if (!tellAgent || this.down !== null || this.closing.has(id)) return;
    // Remember it for a while: data already on the way is then dropped quietly.
    const timer = setTimeout(() => this.closing.delete(id), 30_000);
    timer.unref();
    this.closing.set(id, timer);
    this.send({ type: 'channel.close', channel: id });
  }
}
