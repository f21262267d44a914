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
