import RFB from '@novnc/novnc';
import { useEffect, useRef, useState } from 'react';
import { client } from '../api.js';

/**
 * The graphical console: noVNC speaking RFB over the instance's VNC WebSocket, which the control plane
 * carries over the agent link to QEMU's VNC socket. Keyboard input goes to the guest while the screen has
 * focus; the picture scales to the page; Ctrl-Alt-Del has its own button.
 */
export function GraphicalConsole(props: { instance: string; project: string }) {
  const screen = useRef<HTMLDivElement>(null);
  const rfbRef = useRef<RFB | null>(null);
  const [state, setState] = useState('Connecting…');
  useEffect(() => {
    const ws = client.webSocket(client.instances.vncPath(props.instance), { project: props.project });
    ws.binaryType = 'arraybuffer';
    const rfb = new RFB(screen.current!, ws, { shared: true });
    rfb.scaleViewport = true;
    rfb.resizeSession = true;
    rfb.focusOnClick = true;
    rfb.background = '#111';
    rfbRef.current = rfb;
    rfb.addEventListener('connect', () => setState('Connected. Click the screen to type.'));
    rfb.addEventListener('disconnect', (e) => {
      const clean = (e as CustomEvent<{ clean: boolean }>).detail?.clean;
      setState(clean ? 'Disconnected.' : 'The graphical console is not available (is the instance running?).');
    });
    rfb.addEventListener('desktopname', (e) => {
      const name = (e as CustomEvent<{ name: string }>).detail?.name;
      if (name) setState(`Connected to ${name}. Click the screen to type.`);
    });
    return () => {
      rfbRef.current = null;
      try {
        rfb.disconnect();
      } catch {
        // already closed
      }
    };
  }, [props.instance, props.project]);
  return (
    <section aria-label="Graphical console">
      <div className="toolbar">
        <p className="muted small" role="status">
          {state}
        </p>
        <button type="button" onClick={() => rfbRef.current?.sendCtrlAltDel()}>
          Send Ctrl-Alt-Del
        </button>
        <button type="button" onClick={() => void screen.current?.requestFullscreen?.()}>
          Full screen
        </button>
      </div>
      <div className="vnc-screen" ref={screen} data-testid="vnc-screen" />
    </section>
  );
}
