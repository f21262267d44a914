import { createConnection } from 'node:net';
import { FloeError } from '@floe/api';
import type { ConsoleStream } from '../types.js';
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

/**
 * Attach to the serial console of a running VM (QEMU `pid`). QEMU serves one
 * client at a time on the serial socket (a second one would wait silently
 * until the first leaves), so a second console on the same VM is refused with
 * `invalid_state` ("console busy") instead. The console log keeps recording
 * either way.
 */
export async function openSerialConsole(vm: QemuVm, name: string, pid: number): Promise<ConsoleStream> {
  const { id } = vm;
  if (vm.console !== null) {
    throw new FloeError('invalid_state', `console busy: another session is attached to VM ${name}`, {
      id,
      reason: 'console_busy',
    });
  }
  const socket = createConnection(vm.path('serial'));
  const session = { close: (reason: string) => finish(reason) };
  vm.console = session;
  const data = new Set<(d: Buffer) => void>();
  const closers = new Set<(reason: string) => void>();
  let open = true;
  const finish = (reason: string) => {
    if (!open) return;
    open = false;
    socket.destroy();
    if (vm.console === session) vm.console = null;
    tell(closers, reason);
  };
  await new Promise<void>((resolveConnect, reject) => {
    const onError = (err: Error) => {
      finish('error');
      reject(
        new FloeError('host_operation_failed', `cannot attach to the console of VM ${name}: ${err.message}`, { id }),
      );
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      resolveConnect();
    });
  });
  socket.on('data', (chunk: Buffer) => tell(data, chunk));
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
