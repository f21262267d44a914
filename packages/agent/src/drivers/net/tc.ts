import type { RateLimit } from '@floe/api';
import { invalid } from '../../host/validate.js';
import type { Argv } from './link-commands.js';
import { ifbName, tapName } from './names.js';
import { removeTablesScript, renderTables, type NftTable } from './nft-tables.js';

/*
 * Rate limits of a NIC, as commands for its tap. Seen from the instance,
 * ingress is what the tap sends it and egress what it receives from it.
 *
 * - Bandwidth is shaped with a token bucket (`tbf`): packets over the rate
 *   wait in a short queue (50 ms) instead of being dropped, which TCP follows
 *   closely. To the instance it is the tap's root qdisc; from the instance the
 *   tap's ingress is redirected (clsact + u32 match-all + mirred) to an IFB
 *   device of the NIC whose root qdisc is the bucket, since an ingress hook
 *   cannot queue. The `police` action would do the ingress side without an
 *   IFB, but it drops instead of queueing (TCP then runs well below or above
 *   the rate, depending on the burst), and kernels built without
 *   CONFIG_NET_ACT_POLICE (this project's test hosts among them) lack it.
 * - Packet rates have no tc qdisc; nftables' `limit` in a netdev table of the
 *   NIC (ingress and egress hooks of the tap) polices them: what is over the
 *   rate is dropped. One table per NIC, replaced whole in one transaction.
 */

/** How long a packet may wait in a bucket's queue before it is dropped. */
const LATENCY = '50ms';
/** Smallest bucket: a few full-size frames, or the bucket starves on timer granularity. */
const MIN_BURST_BYTES = 16 * 1024;
/** The bucket holds this much of a second's worth of bytes (20 ms). */
const BURST_PER_SECOND = 50;

/** Bytes of the token bucket for `kbps`: 20 ms of traffic, at least 16 KiB. */
export function tbfBurst(kbps: number): number {
  return Math.max(MIN_BURST_BYTES, Math.ceil((kbps * 1000) / 8 / BURST_PER_SECOND));
}

/** Packets of burst for a packet rate: a tenth of a second's worth, at least 10. */
export function ppsBurst(pps: number): number {
  return Math.max(10, Math.ceil(pps / 10));
}

function checkRate(field: keyof RateLimit, value: number | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isSafeInteger(value) || value < 1) throw invalid(field, `${field} must be a positive integer`);
  return value;
}

/** The limits with every field checked; empty fields dropped. */
export function checkRateLimit(limit: RateLimit | null | undefined): RateLimit {
  const out: RateLimit = {};
  for (const f of ['ingress_kbps', 'egress_kbps', 'ingress_pps', 'egress_pps'] as const) {
    const v = checkRate(f, limit?.[f]);
    if (v !== undefined) out[f] = v;
  }
  return out;
}

/** The argv of a token bucket of `kbps` as the root qdisc of `dev`. */
function tbf(dev: string, kbps: number): Argv {
  return [
    'tc',
    'qdisc',
    'replace',
    'dev',
    dev,
    'root',
    'tbf',
    'rate',
    `${kbps}kbit`,
    'burst',
    `${tbfBurst(kbps)}`,
    'latency',
    LATENCY,
  ];
}

/** One command of a plan; `allowFail` ones remove what may not be there. */
export interface RateStep {
  argv: Argv;
  allowFail?: boolean;
}

/** The nftables table of a NIC's packet rate limits. */
export function rateTable(nicId: string): Pick<NftTable, 'family' | 'name'> {
  return { family: 'netdev', name: `floe_rl_${tapName(nicId)}` };
}

/** The `nft -f` script that gives the NIC's tap its packet rate limits (or removes the table when it has none). */
export function ppsScript(nicId: string, limit: RateLimit): string {
  const tap = tapName(nicId);
  const table = rateTable(nicId);
  if (limit.ingress_pps === undefined && limit.egress_pps === undefined) return removeTablesScript([table]);
  const chains = [];
  const rule = (pps: number) => `limit rate over ${pps}/second burst ${ppsBurst(pps)} packets drop`;
  // The tap's ingress is what the instance sends; its egress what the instance receives.
  if (limit.egress_pps !== undefined)
    chains.push({
      name: 'from_vm',
      hook: `type filter hook ingress device "${tap}" priority 0; policy accept;`,
      rules: [rule(limit.egress_pps)],
    });
  if (limit.ingress_pps !== undefined)
    chains.push({
      name: 'to_vm',
      hook: `type filter hook egress device "${tap}" priority 0; policy accept;`,
      rules: [rule(limit.ingress_pps)],
    });
  return renderTables([{ ...table, chains }]);
}

/**
 * The tc and ip commands that make a NIC's tap carry `limit`'s bandwidths,
 * whatever it carried before (each step replaces or removes; those that remove
 * may find nothing to remove). `ifbExists`: whether the NIC's IFB device is
 * there already.
 *
 * @example
 * for (const s of bandwidthSteps(nic.id, { ingress_kbps: 10_000 }, false)) await exec(s.argv, { allowFail: s.allowFail });
 */
export function bandwidthSteps(nicId: string, limit: RateLimit, ifbExists: boolean): RateStep[] {
  const tap = tapName(nicId);
  const ifb = ifbName(nicId);
  const steps: RateStep[] = [];
  if (limit.ingress_kbps !== undefined) steps.push({ argv: tbf(tap, limit.ingress_kbps) });
  else steps.push({ argv: ['tc', 'qdisc', 'del', 'dev', tap, 'root'], allowFail: true });
  if (limit.egress_kbps !== undefined) {
    if (!ifbExists) steps.push({ argv: ['ip', 'link', 'add', ifb, 'type', 'ifb'] });
    steps.push({ argv: ['ip', 'link', 'set', ifb, 'up'] });
    steps.push({ argv: tbf(ifb, limit.egress_kbps) });
    steps.push({ argv: ['tc', 'qdisc', 'replace', 'dev', tap, 'clsact'] });
    steps.push({
      argv: [
        'tc',
        'filter',
        'replace',
        'dev',
        tap,
        'ingress',
        'pref',
        '1',
        'handle',
        '800::1',
        'protocol',
        'all',
        'u32',
        'match',
        'u32',
        '0',
        '0',
        'action',
        'mirred',
        'egress',
        'redirect',
        'dev',
        ifb,
      ],
    });
  } else {
    steps.push({ argv: ['tc', 'qdisc', 'del', 'dev', tap, 'clsact'], allowFail: true });
    if (ifbExists) steps.push({ argv: ['ip', 'link', 'del', ifb] });
  }
  return steps;
}

/** A token bucket as `tc -j qdisc show` reports it. */
interface JsonQdisc {
  kind?: string;
  root?: boolean;
  options?: { rate?: number };
}

/** The rate of the root token bucket in `tc -j qdisc show dev <dev>` output, in kbit/s; undefined when there is none. */
export function parseTbfKbps(json: string): number | undefined {
  let qdiscs: JsonQdisc[];
  try {
    qdiscs = JSON.parse(json || '[]') as JsonQdisc[];
  } catch {
    return undefined;
  }
  const root = qdiscs.find((q) => q.root === true && q.kind === 'tbf');
  // tc reports bytes per second.
  return typeof root?.options?.rate === 'number' ? Math.round((root.options.rate * 8) / 1000) : undefined;
}

/** The packet rates of a NIC's table in `nft -j list table netdev ...` output. */
export function parsePps(json: string): Pick<RateLimit, 'ingress_pps' | 'egress_pps'> {
  const out: Pick<RateLimit, 'ingress_pps' | 'egress_pps'> = {};
  let doc: {
    nftables?: Array<{ rule?: { chain?: string; expr?: Array<{ limit?: { rate?: number; per?: string } }> } }>;
  };
  try {
    doc = JSON.parse(json || '{}') as typeof doc;
  } catch {
    return out;
  }
  for (const item of doc.nftables ?? []) {
    const rate = item.rule?.expr?.find((e) => e.limit !== undefined)?.limit;
    if (rate?.rate === undefined || rate.per !== 'second') continue;
    if (item.rule?.chain === 'from_vm') out.egress_pps = rate.rate;
    if (item.rule?.chain === 'to_vm') out.ingress_pps = rate.rate;
  }
  return out;
}
