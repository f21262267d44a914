import { Terminal } from '@xterm/xterm';
import '@xterm/xterm/css/xterm.css';
import { useEffect, useRef, useState } from 'react';
import { client } from '../api.js';
import { closeText } from '../logic/ops.js';

/** The serial console: xterm.js over the instance's console WebSocket (bytes both ways). */
export function SerialConsole(props: { instance: string; project: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [state, setState] = useState('Connecting…');
  useEffect(() => {
    const term = new Terminal({
      convertEol: false,
      cursorBlink: true,
      fontSize: 14,
      scrollback: 5000,
      cols: 100,
      rows: 30,
    });
    term.open(box.current!);
    const ws = client.webSocket(`/v1/instances/${encodeURIComponent(props.instance)}/console`, {
      project: props.project,
    });
    ws.binaryType = 'arraybuffer';
    const enc = new TextEncoder();
    ws.onopen = () => {
      setState('Connected. Type to send keys to the serial port.');
      term.focus();
    };
    ws.onmessage = (m) => {
      if (m.data instanceof ArrayBuffer) term.write(new Uint8Array(m.data));
      else {
        try {
          const body = JSON.parse(String(m.data)) as { error?: { code: string; message: string } };
          if (body.error) setState(`${body.error.message} (${body.error.code})`);
        } catch {
          // not an error envelope
        }
      }
    };
    ws.onclose = (e) =>
      setState((s) => (s.startsWith('Connected') || s.startsWith('Connecting') ? closeText(e.code, e.reason) : s));
    const sub = term.onData((d) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
    });
    return () => {
      sub.dispose();
      ws.close(1000);
      term.dispose();
    };
  }, [props.instance, props.project]);
  return (
    <section aria-label="Serial console">
      <p className="muted small" role="status">
        {state}
      </p>
      <div className="terminal" ref={box} data-testid="serial-console" />
    </section>
  );
}
