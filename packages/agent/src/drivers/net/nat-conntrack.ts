import { checkInt, checkIp, invalid } from '../../host/validate.js';
import type { Argv } from './link-commands.js';
import type { NatNic } from './nat-rules.js';

/*
 * Connection tracking remembers the translation of a flow's first packet:
 * once the NAT table changes (a floating IP moves or goes, a forward goes),
 * packets of flows that were open before keep their old translation until
 * the kernel forgets them. So after each change the entries of the
 * translations that changed are dropped (`conntrack -D`), and the next packet
 * of such a flow is translated by the new table.
 */

/** One translation the NAT table makes: a public address whole, or one port of an address (null: the host's). */
export type NatTranslation =
  | { kind: 'address'; public: string; private: string }
  | {
      kind: 'port';
      protocol: 'tcp' | 'udp';
      public: string | null;
      port: number;
      private: string;
      targetPort: number;
    };

/** The translations of these NICs, sorted, so that two equal NATs give equal lists. */
export function natTranslations(nics: readonly NatNic[]): NatTranslation[] {
  const out: NatTranslation[] = [];
  for (const n of nics) {
    if (n.floatingIpv4 !== null) out.push({ kind: 'address', public: n.floatingIpv4, private: n.ipv4 });
    for (const f of n.forwards)
      out.push({
        kind: 'port',
        protocol: f.protocol,
        public: f.address,
        port: f.port,
        private: n.ipv4,
        targetPort: f.target_port,
      });
  }
  return out.map(checkedTranslation).sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
}

function keyOf(t: NatTranslation): string {
  return t.kind === 'address'
    ? `address ${t.public} ${t.private}`
    : `port ${t.protocol} ${t.public ?? '*'} ${t.port} ${t.private} ${t.targetPort}`;
}

/** A translation as read back from a file: refused when it is not one this module would have written. */
export function checkedTranslation(t: NatTranslation, i = 0): NatTranslation {
  const at = `translations[${i}]`;
  if (typeof t !== 'object' || t === null) throw invalid(at, 'an object');
  checkIp(`${at}.private`, t.private, 4);
  if (t.kind === 'address') {
    checkIp(`${at}.public`, t.public, 4);
    return { kind: 'address', public: t.public, private: t.private };
  }
  if (t.kind !== 'port') throw invalid(`${at}.kind`, 'address or port');
  if (t.protocol !== 'tcp' && t.protocol !== 'udp') throw invalid(`${at}.protocol`, 'tcp or udp');
  if (t.public !== null) checkIp(`${at}.public`, t.public, 4);
  checkInt(`${at}.port`, t.port, 1, 65535);
  checkInt(`${at}.target_port`, t.targetPort, 1, 65535);
  return {
    kind: 'port',
    protocol: t.protocol,
    public: t.public,
    port: t.port,
    private: t.private,
    targetPort: t.targetPort,
  };
}

/**
 * The `conntrack -D` commands that drop the tracked flows a change of NAT
 * from `before` to `after` leaves wrongly translated, in a stable order
 * without repeats:
 *
 * - an address translated whole that changed (moved, gone or new): every flow
 *   sent to it; when it went from a NIC, also that NIC's outgoing flows that
 *   left from it (their replies no longer come back here);
 * - a port of an address that changed: the flows sent to that port;
 * - a port of the host's that went or changed: the flows it translated (sent
 *   to that port, translated to the old NIC's address and port). A new one
 *   drops nothing: a flow to a host port that no translation changed cannot be
 *   told apart from the host's own traffic.
 *
 * Every translation is checked first (those of the last apply are read back
 * from a file). `conntrack -D` exits 1 when nothing matched; the applier tells that apart
 * from a failure by its message.
 */
export function conntrackFlushes(beforeIn: readonly NatTranslation[], afterIn: readonly NatTranslation[]): Argv[] {
  const before = beforeIn.map(checkedTranslation);
  const after = afterIn.map(checkedTranslation);
  const afterKeys = new Set(after.map(keyOf));
  const beforeKeys = new Set(before.map(keyOf));
  const gone = before.filter((t) => !afterKeys.has(keyOf(t)));
  const added = after.filter((t) => !beforeKeys.has(keyOf(t)));
  const out = new Map<string, Argv>();
  const add = (argv: Argv) => out.set(argv.join(' '), argv);
  for (const t of [...gone, ...added]) {
    const wasHere = gone.includes(t);
    if (t.kind === 'address') {
      add(['conntrack', '-D', '--orig-dst', t.public]);
      if (wasHere) add(['conntrack', '-D', '--orig-src', t.private, '--reply-dst', t.public]);
    } else if (t.public !== null) {
      add(['conntrack', '-D', '-p', t.protocol, '--orig-dst', t.public, '--orig-port-dst', String(t.port)]);
    } else if (wasHere) {
      add([
        'conntrack',
        '-D',
        '-p',
        t.protocol,
        '--dst-nat',
        '--orig-port-dst',
        String(t.port),
        '--reply-src',
        t.private,
        '--reply-port-src',
        String(t.targetPort),
      ]);
    }
  }
  return [...out.values()];
}

/** Whether a `conntrack -D` that exited non-zero only found nothing to drop. */
export function nothingToDrop(stderr: string): boolean {
  return /\b0 flow entries have been deleted/.test(stderr);
}
