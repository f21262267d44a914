/** Floating IPs and port forwards as the page reads and shows them. */

/**
 * A port number from the form: the number, undefined for an empty field, or null when it is no port.
 *
 * @example
 * parsePort('2222') // 2222
 */
export function parsePort(text: string): number | undefined | null {
  const t = text.trim();
  if (t === '') return undefined;
  if (!/^\d{1,5}$/.test(t)) return null;
  const n = Number(t);
  return n >= 1 && n <= 65535 ? n : null;
}

/**
 * Where a port forward listens: `203.0.113.5:2222/tcp`, or `host:2222/tcp` on the host's own addresses.
 *
 * @example
 * listenText({ address: null, port: 2222, protocol: 'tcp' }) // 'host:2222/tcp'
 */
export function listenText(f: { address: string | null; port: number; protocol: string }): string {
  return `${f.address ?? 'host'}:${f.port}/${f.protocol}`;
}

/**
 * What the page says of a floating IP's attach (a move when it was attached) or detach, from the
 * operation carrying it: waiting for the host, done, or why not.
 *
 * @example
 * changeText({ name: 'web', address: '203.0.113.5' }, 'b', { status: 'running', message: '' }) // 'Attaching web (203.0.113.5) to b: waiting for its host…'
 */
export function changeText(
  ip: { name: string; address: string },
  to: string | null,
  op: { status: string; message: string; error?: { message: string } | null },
): string {
  const what = `${to === null ? 'Detaching' : 'Attaching'} ${ip.name} (${ip.address})${to === null ? '' : ` to ${to}`}`;
  switch (op.status) {
    case 'succeeded':
      return to === null ? `${ip.name} (${ip.address}) is detached.` : `${ip.name} (${ip.address}) now goes to ${to}.`;
    case 'failed':
      return `${what} failed: ${op.error?.message ?? (op.message || 'no reason given')}.`;
    case 'cancelled':
      return `${what} was cancelled${op.message === '' ? '' : ` (${op.message})`}.`;
    default:
      return `${what}: waiting for its host…`;
  }
}
