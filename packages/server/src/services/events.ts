import type { Event, EventsQuery } from '@floe/api';
import { fromJson, toJson, nowIso, type Store } from '../db/index.js';
import { newId } from '../ids.js';
import type { Cluster } from '../cluster.js';
import type { EventsTable } from '../db/schema.js';
import { currentActor } from './actor.js';
import type { Principal } from './principal.js';

/** An event before it is stored (seq, id and time are assigned on publish). */
export interface NewEvent {
  type: string;
  project: string | null;
  kind: string;
  resource_id: string;
  data: Record<string, unknown>;
  /**
   * Who caused it. Absent: the actor of the request being answered (null outside one); a publisher that
   * knows better (or knows it acts for nobody) says so.
   */
  actor?: string | null;
}

/** An event as stored, as the API shows it. */
function eventFromRow(r: Omit<EventsTable, 'seq'> & { seq: number | bigint | string }): Event {
  return { ...r, seq: Number(r.seq), data: fromJson<Record<string, unknown>>(r.data) ?? {}, actor: r.actor ?? null };
}

/** A filter over events, from `/v1/events` query parameters and the caller's token. */
export interface EventFilter {
  principal: Principal;
  project?: string;
  kinds?: string[];
  types?: string[];
  resource?: string;
}

/** True when the principal may see events of `project` (null: global events, admins only). */
function visible(principal: Principal, project: string | null): boolean {
  if (principal.admin) return true;
  return project !== null && principal.projects.has(project);
}

/** True when `event` passes `filter`. */
export function matches(event: Event, filter: EventFilter): boolean {
  if (!visible(filter.principal, event.project)) return false;
  if (filter.project !== undefined && event.project !== filter.project) return false;
  if (filter.kinds && filter.kinds.length > 0 && !filter.kinds.includes(event.kind)) return false;
  if (
    filter.types &&
    filter.types.length > 0 &&
    !filter.types.some((t) => event.type === t || event.type.startsWith(`${t}.`))
  )
    return false;
  if (filter.resource !== undefined && event.resource_id !== filter.resource) return false;
  return true;
}

/** Turn the query of `/v1/events` into a filter. */
export function filterFromQuery(principal: Principal, q: EventsQuery): EventFilter {
  const list = (v: string | string[] | undefined) =>
    v === undefined ? undefined : Array.isArray(v) ? v : v.split(',');
  const filter: EventFilter = { principal };
  if (q.project !== undefined) filter.project = q.project;
  const kinds = list(q.kind);
  if (kinds) filter.kinds = kinds;
  const types = list(q.type);
  if (types) filter.types = types;
  if (q.resource !== undefined) filter.resource = q.resource;
  return filter;
}

type Listener = (event: Event) => void;

/** Events stored per INSERT statement (8 parameters each). */
const EVENT_INSERT_CHUNK = 500;

/**
 * Stores events (so streams can resume from a seq) and fans them out to
 * subscribers in this process.
 */
export class EventBus {
  private readonly listeners = new Set<Listener>();
  /** Publishes run one after another, so seq order is commit order within this process. */
  private tail: Promise<unknown> = Promise.resolve();

  private readonly unsubscribeCluster: () => void;

  constructor(
    private readonly store: Store,
    private readonly cluster?: Cluster,
  ) {
    // Events stored by other control planes reach this one's subscribers too.
    this.unsubscribeCluster =
      cluster?.subscribe('floe_events', (p) => {
        const seqs = Array.isArray(p.seqs) ? p.seqs.filter((n): n is number => typeof n === 'number') : [];
        if (seqs.length > 0) void this.deliverRemote(seqs).catch(() => undefined);
      }) ?? (() => undefined);
  }

  private async deliverRemote(seqs: number[]): Promise<void> {
    const rows = await this.store.db.selectFrom('events').selectAll().where('seq', 'in', seqs).orderBy('seq').execute();
    this.deliver(rows.map(eventFromRow));
  }

  private deliver(events: Event[]): void {
    for (const event of events) {
      for (const listener of this.listeners) {
        try {
          listener(event);
        } catch {
          // A broken subscriber must not stop the others.
        }
      }
    }
  }

  /** Stop hearing other control planes. */
  close(): void {
    this.unsubscribeCluster();
  }

  /** Store events and deliver them to subscribers, in order. */
  async publish(...events: NewEvent[]): Promise<Event[]> {
    if (events.length === 0) return [];
    // The actor is read here, in the publisher's context, not in the queued insert's.
    const actor = currentActor();
    const stamped = events.map((e) => ({ ...e, actor: e.actor === undefined ? actor : e.actor }));
    const run = this.tail.then(() => this.insertAndDeliver(stamped));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async insertAndDeliver(events: Array<NewEvent & { actor: string | null }>): Promise<Event[]> {
    const out: Event[] = [];
    // One multi-row insert per chunk rather than one per event: a round trip and (on PostgreSQL) a
    // commit with its WAL flush per publish, not per event. Chunks stay far below parameter limits.
    for (let start = 0; start < events.length; start += EVENT_INSERT_CHUNK) {
      const chunk = events.slice(start, start + EVENT_INSERT_CHUNK);
      const rows = chunk.map((e) => ({
        id: newId('event'),
        time: nowIso(),
        type: e.type,
        project: e.project,
        kind: e.kind,
        resource_id: e.resource_id,
        data: toJson(e.data),
        actor: e.actor,
      }));
      const inserted = await this.store.db.insertInto('events').values(rows).returning(['id', 'seq']).execute();
      const seqOf = new Map(inserted.map((r) => [r.id, Number(r.seq)]));
      const stored = rows.map((row, i) => ({ ...row, seq: seqOf.get(row.id)!, data: chunk[i]!.data }));
      out.push(...stored.sort((a, b) => a.seq - b.seq));
    }
    this.deliver(out);
    if (this.cluster) await this.cluster.publish('floe_events', { seqs: out.map((e) => e.seq) }).catch(() => undefined);
    return out;
  }

  /** Resolves once every publish so far is stored and delivered. */
  async idle(): Promise<void> {
    await this.tail;
  }

  /** Call `fn` for every new event; returns the unsubscribe function. */
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Stored events after `since` that pass the filter, oldest first (at most `limit`). */
  async replay(since: number, filter: EventFilter, limit = 1000): Promise<Event[]> {
    let q = this.store.db.selectFrom('events').selectAll().where('seq', '>', since).orderBy('seq', 'asc').limit(limit);
    if (filter.project !== undefined) q = q.where('project', '=', filter.project);
    if (filter.resource !== undefined) q = q.where('resource_id', '=', filter.resource);
    // Visibility, kinds and types are filtered in SQL too, so a page holds up to `limit` matching
    // events rather than `limit` rows of which few (or none) match; `matches` below stays the judge.
    if (!filter.principal.admin) {
      const projects = [...filter.principal.projects];
      if (projects.length === 0) return [];
      q = q.where('project', 'in', projects);
    }
    if (filter.kinds && filter.kinds.length > 0) q = q.where('kind', 'in', filter.kinds);
    const types = filter.types ?? [];
    if (types.length > 0)
      q = q.where((eb) => eb.or(types.flatMap((t) => [eb('type', '=', t), eb('type', 'like', `${t}.%`)])));
    const rows = await q.execute();
    return rows.map(eventFromRow).filter((e) => matches(e, filter));
  }

  /** Highest stored seq (0 when empty). */
  async lastSeq(): Promise<number> {
    const row = await this.store.db
      .selectFrom('events')
      .select((eb) => eb.fn.max('seq').as('m'))
      .executeTakeFirst();
    return Number(row?.m ?? 0);
  }
}
