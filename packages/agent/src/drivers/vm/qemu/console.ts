import { createConnection } from 'node:net';
import { FloeError } from '@floe/api';
import type { ConsoleStream } from '../types.js';
import { exists } from './runtime.js';
import type { QemuVm } from './vm.js';

/** Call every listener; one that throws must not keep the others from hearing. */
function tell<T>(listeners: Iterable<(value: T) => void>, value: T): void {
  for (const l of [...listeners]) {
    try {
      l(value);
    } catch {
      // a listener's failure is its own
    }
  }
}

/** Output kept for a stream nobody listens to yet, at most. */
const MAX_EARLY_BYTES = 1024 * 1024;

/** A session the VM holds so it can end it (VM stopped, deleted, driver closed). */
interface Session {
  close(reason: string): void;
}

/**
 * Connect to one of a running VM's unix sockets and wrap it as a
 * ConsoleStream. `hold`/`release` register the session with the VM; `what`
 * names the console in errors.
 */
async function socketStream(
  vm: QemuVm,
  pid: number,
  path: string,
  what: string,
  hold: (session: Session) => void,
  release: (session: Session) => void,
): Promise<ConsoleStream> {
  const { id } = vm;
  const socket = createConnection(path);
  const session: Session = { close: (reason: string) => finish(reason) };
  hold(session);
  const data = new Set<(d: Buffer) => void>();
  const closers = new Set<(reason: string) => void>();
  let open = true;
  let early: Buffer[] | null = [];
  let earlyBytes = 0;
  const finish = (reason: string) => {
    if (!open) return;
    open = false;
    socket.destroy();
    release(session);
    tell(closers, reason);
  };
  await new Promise<void>((resolveConnect, reject) => {
    const onError = (err: Error) => {
      finish('error');
      reject(new FloeError('host_operation_failed', `cannot attach to ${what}: ${err.message}`, { id }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolveConnect();
    });
  });
  socket.on('data', (chunk: Buffer) => {
    if (early === null) tell(data, chunk);
    else if (earlyBytes + chunk.length <= MAX_EARLY_BYTES) {
      early.push(chunk);
      earlyBytes += chunk.length;
    }
  });
  socket.on('error', () => finish('error'));
  socket.on('close', () => {
    // QEMU closes the socket as it exits; give it a moment to be gone before saying why.
    void vm.waitGone(pid, 200).then((gone) => finish(gone ? 'VM stopped' : 'closed'));
  });
  return {
    write: (d) => {
      if (open) socket.write(d);
    },
    onData: (l) => {
      data.add(l);
      // What came before anyone listened (a VNC server greets at once) goes to the first listener.
      const waiting = early ?? [];
      early = null;
      for (const chunk of waiting) l(chunk);
      return () => data.delete(l);
    },
    onClose: (l) => {
      if (!open) {
        queueMicrotask(() => l('closed'));
        return () => {};
      }
      closers.add(l);
      return () => closers.delete(l);
    },
    close: () => finish('closed'),
  };
}

/**
 * Attach to the serial console of a running VM (QEMU `pid`). QEMU serves one
 * client at a time on the serial socket (a second one would wait silently
 * until the first leaves), so a second console on the same VM is refused with
 * `invalid_state` ("console busy") instead. The console log keeps recording
 * either way.
 */
export async function openSerialConsole(vm: QemuVm, name: string, pid: number): Promise<ConsoleStream> {
  if (vm.console !== null) {
    throw new FloeError('invalid_state', `console busy: another session is attached to VM ${name}`, {
      id: vm.id,
      reason: 'console_busy',
    });
  }
  return socketStream(
    vm,
    pid,
    vm.path('serial'),
    `the console of VM ${name}`,
    (session) => (vm.console = session),
    (session) => {
      if (vm.console === session) vm.console = null;
    },
  );
}

/**
 * Attach to the graphical console (QEMU's VNC server on `vnc.sock`) of a
 * running VM: raw RFB both ways. QEMU takes several VNC clients at once, so
 * sessions do not exclude each other. A VM started before floe gave VMs a
 * VNC display has no socket: `vnc_unavailable` (a restart gives it one).
 */
export async function openVncConsole(vm: QemuVm, name: string, pid: number): Promise<ConsoleStream> {
  const path = vm.path('vnc');
  if (!(await exists(path))) {
    throw new FloeError(
      'vnc_unavailable',
      `VM ${name} has no graphical console: it was started before floe gave VMs one; restart it to get one`,
      { id: vm.id },
    );
  }
  return socketStream(
    vm,
    pid,
    path,
    `the graphical console of VM ${name}`,
    (session) => vm.displays.add(session),
    (session) => vm.displays.delete(session),
  );
}
