import { useEffect, useRef } from 'react';
import type { LiveEvent } from './logic/live.js';
import { client } from './api.js';

/*
 * One WebSocket to /v1/events per project the app looks at, shared by every page that listens. It resumes
 * after a dropped connection from the last sequence number it saw (`?since=`), so no event is lost.
 */

type Listener = (e: LiveEvent) => void;

interface Stream {
  listeners: Set<Listener>;
  socket: WebSocket | null;
  lastSeq: number | null;
  retry: ReturnType<typeof setTimeout> | null;
  closed: boolean;
}

const streams = new Map<string, Stream>();

function open(project: string, s: Stream, delayMs = 1000): void {
  if (s.closed) return;
  const query = { ...(project === '' ? {} : { project }), ...(s.lastSeq === null ? {} : { since: s.lastSeq }) };
  const ws = client.webSocket('/v1/events', query);
  s.socket = ws;
  ws.onmessage = (m) => {
    if (typeof m.data !== 'string') return;
    let e: LiveEvent;
    try {
      e = JSON.parse(m.data) as LiveEvent;
    } catch {
      return;
    }
    if (s.lastSeq !== null && e.seq <= s.lastSeq) return;
    s.lastSeq = e.seq;
    for (const l of [...s.listeners]) l(e);
  };
  ws.onclose = () => {
    s.socket = null;
    if (!s.closed) s.retry = setTimeout(() => open(project, s, Math.min(delayMs * 2, 15_000)), delayMs);
  };
  ws.onopen = () => {
    delayMs = 1000;
  };
}

/** Listens to the events of a project ('' for all the caller may see) while `listener` is subscribed. */
function subscribe(project: string, listener: Listener): () => void {
  let s = streams.get(project);
  if (s === undefined) {
    s = { listeners: new Set(), socket: null, lastSeq: null, retry: null, closed: false };
    streams.set(project, s);
    open(project, s);
  }
  s.listeners.add(listener);
  const stream = s;
  return () => {
    stream.listeners.delete(listener);
    if (stream.listeners.size > 0) return;
    stream.closed = true;
    if (stream.retry !== null) clearTimeout(stream.retry);
    stream.socket?.close(1000);
    streams.delete(project);
  };
}

/** Calls `listener` for each event of `project` while the component is mounted. */
export function useEvents(project: string | undefined, listener: Listener): void {
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => {
    if (project === undefined) return;
    return subscribe(project, (e) => ref.current(e));
  }, [project]);
}
