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

/**
 * Refuse with no_host_capacity when the instance's host has no room for `growth` (a resize to more vCPUs
 * or memory), inside the caller's transaction and before the instance's row changes. On PostgreSQL the
 * host's row is locked as placement locks it, so a resize and a placement cannot both take the last room.
 * An instance on no host (or a host that is gone) is placed again with its new size by whoever places it.
 */
export async function checkHostRoom(
  trx: Db,
  dialect: 'sqlite' | 'postgres',
  config: Config,
  hostId: string | null,
  growth: Demand,
): Promise<void> {
  if (hostId === null || (growth.vcpus <= 0 && growth.memory_mib <= 0)) return;
  let q = trx.selectFrom('hosts').select(['id', 'name', 'facts']).where('id', '=', hostId);
  if (dialect === 'postgres') q = q.forUpdate();
  const host = await q.executeTakeFirst();
  if (host === undefined) return;
  const capacity = capacityOf(parseHostJson<HostFacts>(host.facts), config.cpuOvercommit, config.memoryOvercommit);
  const used = (await allocations(trx, [hostId])).get(hostId) ?? { vcpus: 0, memory_mib: 0, instances: 0 };
  const free = { vcpus: capacity.vcpus - used.vcpus, memory_mib: capacity.memory_mib - used.memory_mib };
  if (free.vcpus >= Math.max(growth.vcpus, 0) && free.memory_mib >= Math.max(growth.memory_mib, 0)) return;
  throw new FloeError(
    'no_host_capacity',
    `host ${host.name} has ${free.vcpus} vCPU(s) and ${free.memory_mib} MiB free; the resize needs ${Math.max(growth.vcpus, 0)} and ${Math.max(growth.memory_mib, 0)} more`,
    { host: host.name, requested: growth, free },
  );
}
