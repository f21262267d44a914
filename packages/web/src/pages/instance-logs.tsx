import { useEffect, useRef, useState } from 'react';
import { client, errorText } from '../api.js';

/** The console log: its history, then with "follow" new output as it comes (a streamed fetch). */
export function Logs(props: { instance: string; project: string }) {
  const [text, setText] = useState('');
  const [follow, setFollow] = useState(true);
  const [error, setError] = useState<string>();
  const pre = useRef<HTMLPreElement>(null);
  useEffect(() => {
    const ac = new AbortController();
    setText('');
    setError(undefined);
    const url = client.transport.url(`/v1/instances/${encodeURIComponent(props.instance)}/logs`, {
      project: props.project,
      tail_bytes: 256 * 1024,
      ...(follow ? { follow: true } : {}),
    });
    void (async () => {
      try {
        const res = await fetch(url, { credentials: 'same-origin', signal: ac.signal });
        if (!res.ok || res.body === null) {
          const body = (await res.json().catch(() => ({}))) as { error?: { message?: string; code?: string } };
          setError(body.error ? `${body.error.message} (${body.error.code})` : `HTTP ${res.status}`);
          return;
        }
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          // Keep the newest 512 KiB on screen.
          setText((t) => (t + value).slice(-512 * 1024));
        }
      } catch (err) {
        if (!ac.signal.aborted) setError(errorText(err));
      }
    })();
    return () => ac.abort();
  }, [props.instance, props.project, follow]);
  useEffect(() => {
    if (follow && pre.current) pre.current.scrollTop = pre.current.scrollHeight;
  }, [text, follow]);
  return (
    <section aria-label="Console log">
      <label className="check">
        <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.target.checked)} /> Follow
      </label>
      {error !== undefined && <p className="error">{error}</p>}
      <pre className="log" ref={pre} tabIndex={0} data-testid="log">
        {text}
      </pre>
    </section>
  );
}
