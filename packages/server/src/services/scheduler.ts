import { FloeError, type HostFacts } from '@floe/api';
import { fromJson, type Db } from '../db/index.js';
import type { Config } from '../config.js';
import { allocations, capacityOf } from './hosts.js';

/** What an instance needs from a host. */
export interface Demand {
  vcpus: number;
  memory_mib: number;
}

/** One candidate host with its free room. */
export interface Candidate {
  id: string;
  name: string;
  capacity: { vcpus: number; memory_mib: number };
  used: { vcpus: number; memory_mib: number; instances: number };
}

/**
 * Pick a host for `demand` among `candidates` (pure, so it is unit-tested).
 * `spread` picks the host that is least full after placement, `pack` the
 * fullest that still fits. Ties go to fewer instances, then to the id.
 */
export function choose(candidates: Candidate[], demand: Demand, strategy: 'spread' | 'pack'): Candidate | null {
  const fits = candidates.filter(
    (c) =>
      c.capacity.vcpus - c.used.vcpus >= demand.vcpus && c.capacity.memory_mib - c.used.memory_mib >= demand.memory_mib,
  );
  if (fits.length === 0) return null;
  const load = (c: Candidate) =>
    Math.max(
      (c.used.vcpus + demand.vcpus) / c.capacity.vcpus,
      (c.used.memory_mib + demand.memory_mib) / c.capacity.memory_mib,
    );
  const before = (a: Candidate, b: Candidate) => {
    const d = strategy === 'spread' ? load(a) - load(b) : load(b) - load(a);
    if (d !== 0) return d < 0;
    if (a.used.instances !== b.used.instances) return a.used.instances < b.used.instances;
    return a.id < b.id;
  };
  // One pass for the first in that order: placement looks at every online host each time.
  let best = fits[0]!;
  for (const c of fits) if (before(c, best)) best = c;
  return best;
}

/** Parsed host `facts` and `spec` texts by the text itself: they change rarely and parsing all of them took most of a placement. */
const parsedHostJson = new Map<string, unknown>();
const PARSED_HOST_JSON_MAX = 10_000;

function parseHostJson<T>(text: string | null): T | null {
  if (text === null) return null;
  let value = parsedHostJson.get(text);
  if (value === undefined) {
    if (parsedHostJson.size >= PARSED_HOST_JSON_MAX) parsedHostJson.clear();
    value = Object.freeze(fromJson<T>(text));
    parsedHostJson.set(text, value);
  }
  return value as T | null;
}

/**
 * Place an instance on an online, schedulable host with room, inside the
 * caller's transaction. On PostgreSQL the host rows are locked so concurrent
 * placements cannot overfill a host; SQLite serializes writers anyway.
 */
export async function placeInstance(
  trx: Db,
  dialect: 'sqlite' | 'postgres',
  config: Config,
  demand: Demand,
): Promise<string> {
  let q = trx.selectFrom('hosts').select(['id', 'name', 'facts', 'spec']).where('state', '=', 'online').orderBy('id');
  if (dialect === 'postgres') q = q.forUpdate();
  const hosts = (await q.execute()).filter(
    (h) => parseHostJson<{ schedulable: boolean }>(h.spec)?.schedulable !== false,
  );
  // The whole table: one small row per host that holds instances, cheaper than naming every host.
  const used = await allocations(trx);
  const candidates: Candidate[] = hosts.map((h) => ({
    id: h.id,
    name: h.name,
    capacity: capacityOf(parseHostJson<HostFacts>(h.facts), config.cpuOvercommit, config.memoryOvercommit),
    used: used.get(h.id) ?? { vcpus: 0, memory_mib: 0, instances: 0 },
  }));
  const chosen = choose(candidates, demand, config.scheduler);
  if (!chosen) {
    throw new FloeError(
      'no_host_capacity',
      `no online host has ${demand.vcpus} vCPU(s) and ${demand.memory_mib} MiB free`,
      {
        requested: demand,
        hosts_online: candidates.length,
      },
    );
  }
  return chosen.id;
}
