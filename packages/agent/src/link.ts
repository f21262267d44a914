import WebSocket from 'ws';
import { pino, type Logger } from 'pino';
import {
  AGENT_CLOSE,
  AGENT_PROTOCOL_VERSION,
  decodeControlMessage,
  type AgentMessage,
  type ControlMessage,
  type HostFacts,
  type ObservedInstance,
} from '@floe/api';
import { backoffDelay } from './backoff.js';
import type { AgentCredentials } from './state.js';

/** Reconnect timing: exponential from `initialMs` to `maxMs`, reset after a connection lasted `stableMs`. */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  stableMs?: number;
}

/** Options of the agent link. */
export interface AgentLinkOptions {
  /** Base URL of the control plane (https); the link dials wss://…/v1/agent. */
  server: string;
  /** Client certificate and key, and floe's CA: the only CA the server is checked against. */
  credentials: AgentCredentials;
  /** The full picture for `hello`, asked for on every (re)connect. */
  hello: () => Promise<{ facts: HostFacts; instances: ObservedInstance[] }>;
  /** Every control message that matches its schema (welcome, snapshot, desired, error, channels); others are dropped and logged. */
  onMessage: (msg: ControlMessage) => void;
  /** This host's id, for logs (the `welcome` message updates it). */
  hostId?: string;
  /** The control plane revoked this host: the link has stopped for good. */
  onRevoked?: (reason: string) => void;
  /** A connection closed (channels of that connection are gone). */
  onDown?: () => void;
  logger?: Logger;
  backoff?: BackoffOptions;
  /** Heartbeat interval until `welcome` names one; default 15 s. */
  heartbeatIntervalMs?: number;
  handshakeTimeoutMs?: number;
}

/** The wss URL of the agent endpoint for a control plane base URL. */
export function agentLinkUrl(server: string): string {
  const url = new URL(server);
  if (url.protocol !== 'https:') throw new Error(`the control plane URL must use https, not ${url.protocol}`);
  url.protocol = 'wss:';
  url.pathname = `${url.pathname.replace(/\/+$/, '')}/v1/agent`;
  url.search = '';
  url.hash = '';
  return url.toString();
}

/**
 * The agent's side of the agent link: one WebSocket over mutual TLS to the
 * control plane, re-dialed with backoff whenever it drops. Sends `hello` on
 * every connect and heartbeats while up. Messages sent while down are dropped
 * (statuses are level-triggered; the next hello carries the full picture).
 */
export class AgentLink {
  private readonly url: string;
  private readonly log: Logger;
  private readonly backoff: Required<BackoffOptions>;
  private ws: WebSocket | null = null;
  private ready = false;
  private stopped = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private heartbeatMs: number;
  private lastSeen = 0;
  private connectCount = 0;
  private hostId: string | undefined;

  constructor(private readonly opts: AgentLinkOptions) {
    this.url = agentLinkUrl(opts.server);
    this.log = opts.logger ?? pino({ level: 'silent' });
    this.backoff = { initialMs: 250, maxMs: 30_000, stableMs: 10_000, ...opts.backoff };
    this.heartbeatMs = opts.heartbeatIntervalMs ?? 15_000;
    this.hostId = opts.hostId;
  }

  /** True while connected and past `hello`. */
  get connected(): boolean {
    return this.ready;
  }

  /** How many times a connection was opened (tests and logs). */
  get connections(): number {
    return this.connectCount;
  }

  /** Bytes queued on the socket and not yet written (0 while down). */
  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  /** Start dialing. */
  start(): void {
    if (this.stopped || this.ws !== null || this.reconnectTimer !== null) return;
    this.connect();
  }

  /** Send a message if connected; returns false (and drops it) otherwise. */
  send(msg: AgentMessage): boolean {
    const ws = this.ws;
    if (!this.ready || ws === null || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(msg));
    return true;
  }

  /** Close the link for good (normal closure); resolves once the socket is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    const ws = this.ws;
    if (ws === null) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        ws.terminate();
        resolve();
      }, 2000);
      ws.once('close', () => {
        clearTimeout(force);
        resolve();
      });
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close(1000, 'agent stopping');
      else if (ws.readyState === WebSocket.CLOSED) {
        clearTimeout(force);
        resolve();
      }
    });
  }

  private clearTimers(): void {
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stopHeartbeat();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private startHeartbeat(intervalMs: number): void {
    this.stopHeartbeat();
    this.heartbeatMs = intervalMs;
    this.heartbeatTimer = setInterval(() => this.beat(), intervalMs);
    this.heartbeatTimer.unref?.();
  }

  private beat(): void {
    const ws = this.ws;
    if (ws === null || !this.ready) return;
    // A peer that answers neither messages nor pings for three intervals is gone, even if TCP has not noticed.
    if (Date.now() - this.lastSeen > 3 * this.heartbeatMs) {
      this.log.warn({ silent_ms: Date.now() - this.lastSeen }, 'control plane went silent; reconnecting');
      ws.terminate();
      return;
    }
    this.send({ type: 'heartbeat', time: new Date().toISOString() });
    ws.ping();
  }

  private connect(): void {
    this.reconnectTimer = null;
    if (this.stopped) return;
    const { credentials } = this.opts;
    const ws = new WebSocket(this.url, {
      cert: credentials.certPem,
      key: credentials.keyPem,
      ca: [credentials.caPem],
      rejectUnauthorized: true,
      handshakeTimeout: this.opts.handshakeTimeoutMs ?? 10_000,
      perMessageDeflate: false,
    });
    this.ws = ws;
    let openedAt: number | null = null;

    ws.on('open', () => {
      openedAt = Date.now();
      this.lastSeen = openedAt;
      this.connectCount++;
      void this.sendHello(ws);
    });
    ws.on('pong', () => {
      this.lastSeen = Date.now();
    });
    ws.on('message', (data, isBinary) => {
      this.lastSeen = Date.now();
      if (isBinary) {
        this.log.warn('ignoring a binary message on the agent link');
        return;
      }
      this.receive(
        (Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data)).toString(),
      );
    });
    ws.on('error', (err) => {
      // 'close' follows; only note why.
      this.log.warn({ err: err.message, url: this.url }, 'agent link error');
    });
    ws.on('close', (code, reasonBuf) => {
      const reason = reasonBuf.toString();
      if (this.ws === ws) this.ws = null;
      const wasReady = this.ready;
      this.ready = false;
      this.stopHeartbeat();
      if (wasReady) this.log.info({ code, reason }, 'agent link closed');
      if (wasReady) this.opts.onDown?.();
      if (this.stopped) return;
      if (code === AGENT_CLOSE.revoked) {
        this.stopped = true;
        this.clearTimers();
        this.log.error({ reason }, 'the control plane revoked this host; not reconnecting');
        this.opts.onRevoked?.(reason || 'host revoked');
        return;
      }
      if (code === AGENT_CLOSE.replaced) this.log.warn('another agent connection for this host took over');
      if (code === AGENT_CLOSE.protocol) this.log.error({ reason }, 'the control plane reported a protocol violation');
      if (openedAt !== null && Date.now() - openedAt >= this.backoff.stableMs) this.attempt = 0;
      const delay = backoffDelay(this.attempt, this.backoff.initialMs, this.backoff.maxMs);
      this.attempt++;
      this.log.debug({ delay_ms: delay, attempt: this.attempt }, 'reconnecting');
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private async sendHello(ws: WebSocket): Promise<void> {
    let hello: { facts: HostFacts; instances: ObservedInstance[] };
    try {
      hello = await this.opts.hello();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cannot build hello; dropping the connection');
      ws.close(1011, 'agent error');
      return;
    }
    if (this.ws !== ws || ws.readyState !== WebSocket.OPEN) return;
    const msg: AgentMessage = {
      type: 'hello',
      protocol: AGENT_PROTOCOL_VERSION,
      facts: hello.facts,
      instances: hello.instances,
    };
    ws.send(JSON.stringify(msg));
    this.ready = true;
    this.startHeartbeat(this.heartbeatMs);
    this.log.info({ url: this.url, instances: hello.instances.length }, 'agent link up');
  }

  /**
   * A malformed control message is dropped (and logged), the link stays up: the
   * control plane is the authority here, and reconnecting would only fetch the
   * same message again. Level-triggered state heals with the next snapshot.
   */
  private receive(text: string): void {
    const decoded = decodeControlMessage(text);
    if (!decoded.ok) {
      this.log.warn(
        { host_id: this.hostId, type: decoded.type, error: decoded.error },
        'dropping a malformed control message',
      );
      return;
    }
    const msg = decoded.value;
    if (msg.type === 'welcome') {
      this.hostId = msg.host_id;
      if (msg.heartbeat_interval_ms > 0) this.startHeartbeat(Math.max(100, msg.heartbeat_interval_ms));
    }
    try {
      this.opts.onMessage(msg);
    } catch (err) {
      this.log.error({ err: (err as Error).message, type: msg.type }, 'handling a control message failed');
    }
  }
}
