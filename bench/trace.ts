import type WebSocket from 'ws';
import { epochMs } from './worker.js';

/** One moment on the path of a request: when (epoch ms, comparable across threads) and what. */
export interface TraceEntry {
  at: number;
  what: string;
}

/**
 * Moments noted by a benchmark around floe's code, never inside it: messages
 * on the agent link, calls into drivers, signals between services. Entries
 * pile up until `take()`.
 */
export class Trace {
  private entries: TraceEntry[] = [];

  note(what: string): void {
    this.entries.push({ at: epochMs(), what });
  }

  take(): TraceEntry[] {
    const out = this.entries;
    this.entries = [];
    return out;
  }
}

/** The `type` of an agent-link message (and the kind of a few), for the trace. */
function describe(data: unknown): string {
  try {
    const text = typeof data === 'string' ? data : Buffer.isBuffer(data) ? data.toString('utf8') : '';
    const msg = JSON.parse(text) as { type?: string; instance?: { status?: { state?: string }; state?: string } };
    const state = msg.type === 'status' ? (msg.instance?.state ?? msg.instance?.status?.state) : undefined;
    return state === undefined ? String(msg.type) : `${msg.type}:${state}`;
  } catch {
    return 'non-JSON';
  }
}

/**
 * Note every message sent and received on any `ws` WebSocket of this thread
 * (`side` names the thread: cp or agent). Patches the class's prototype, so it
 * sees the sockets the control plane and the agent make themselves.
 */
export function traceWebSockets(ws: typeof WebSocket, side: string, trace: Trace): void {
  const proto = ws.prototype as unknown as {
    send: (data: unknown, ...rest: unknown[]) => void;
    emit: (event: string | symbol, ...args: unknown[]) => boolean;
  };
  const send = proto.send;
  const emit = proto.emit;
  proto.send = function (this: unknown, data: unknown, ...rest: unknown[]) {
    trace.note(`${side} sends ${describe(data)}`);
    send.call(this, data, ...rest);
  };
  proto.emit = function (this: unknown, event: string | symbol, ...args: unknown[]) {
    if (event === 'message') trace.note(`${side} receives ${describe(args[0])}`);
    return emit.call(this, event, ...args);
  };
}

/**
 * `target` with a clock on each method call: notes `<name>.<method>` when it
 * is called and `<name>.<method> done` when its promise settles. Calls the
 * object makes on itself are not seen.
 */
export function timed<T extends object>(target: T, name: string, trace: Trace): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const value = Reflect.get(obj, prop, receiver) as unknown;
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args: unknown[]) => {
        const label =
          prop === 'exec' && Array.isArray(args[0]) ? `${name}.exec ${String(args[0][0])}` : `${name}.${prop}`;
        trace.note(label);
        const result = (value as (...a: unknown[]) => unknown).apply(obj, args);
        if (result instanceof Promise)
          void result.then(
            () => trace.note(`${label} done`),
            () => trace.note(`${label} failed`),
          );
        return result;
      };
    },
  });
}

/**
 * Per step of several traced rounds, the median time after each round's
 * start (`startAt`, epoch ms) at which it happened. A step that repeats in a
 * round is numbered (`#2`, `#3`...); steps seen in fewer than half of the
 * rounds are left out. Rows in order of their median.
 */
export function traceSteps(rounds: Array<{ startAt: number; entries: TraceEntry[] }>): Array<[string, number[]]> {
  const byStep = new Map<string, number[]>();
  for (const r of rounds) {
    const seen = new Map<string, number>();
    for (const e of [...r.entries].sort((a, b) => a.at - b.at)) {
      const n = (seen.get(e.what) ?? 0) + 1;
      seen.set(e.what, n);
      const step = n === 1 ? e.what : `${e.what} #${n}`;
      const list = byStep.get(step) ?? [];
      list.push(e.at - r.startAt);
      byStep.set(step, list);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
  return [...byStep].filter(([, xs]) => xs.length * 2 >= rounds.length).sort((a, b) => median(a[1]) - median(b[1]));
}
