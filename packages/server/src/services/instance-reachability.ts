import type { InstanceStatus } from '@floe/api';
import { forUpdate, fromJson, nowIso, toJson, transaction, type Db } from '../db/index.js';
import type { ServiceContext } from './context.js';
import type { NewEvent } from './events.js';
import { normalizeStatus } from './first-boot.js';
import type { InstanceCache } from './instance-cache.js';
import type { OperationService } from './operations.js';
import type { PostCommit } from './post-commit.js';

/** Prefix of the message of an operation that waits for an unreachable host (replaced once the host is back). */
const WAITING = 'waiting for host ';

/** What an operation on an instance of an unreachable host says it waits for. */
function waitingForHost(hostName: string, since: string): string {
  return `${WAITING}${hostName}, unreachable since ${since}`;
}

/** The message of a new operation on an instance whose host is unreachable; null when the host answers. */
export async function unreachableMessage(db: Db, status: InstanceStatus): Promise<string | null> {
  if (status.host_unreachable_since === undefined || status.host === null) return null;
  return waitingForHost(await hostName(db, status.host), status.host_unreachable_since);
}

/** The name of a host, or its id when it is gone. */
async function hostName(db: Db, hostId: string): Promise<string> {
  const row = await db.selectFrom('hosts').select('name').where('id', '=', hostId).executeTakeFirst();
  return row?.name ?? hostId;
}

/**
 * What the control plane knows of instances whose host stopped answering: their state becomes `unknown`
 * (with the host and since when), and their unfinished operations say they wait for that host. When the
 * host is back, the state it reports replaces this; instances it has not reported yet get their last
 * known state back. Agents' reports stay the only source of observed state.
 */
export class InstanceReachability {
  constructor(
    private readonly ctx: ServiceContext,
    private readonly operations: OperationService,
    private readonly cache: InstanceCache,
    private readonly post: PostCommit,
  ) {}

  /** The host stopped answering at `since`: its instances are `unknown` and their operations say why they wait. */
  async hostUnreachable(hostId: string, since: string = nowIso()): Promise<void> {
    const ids: string[] = [];
    const events = await transaction(this.ctx.store, async (trx) => {
      ids.length = 0;
      // The host row is locked first: an agent saying hello marks it online only after this commits, and then
      // gives the instances their state back; a host already back online is left alone.
      const host = await forUpdate(
        trx.selectFrom('hosts').select(['name', 'state']).where('id', '=', hostId),
      ).executeTakeFirst();
      if (host === undefined || host.state === 'online') return [];
      const name = host.name;
      const message = waitingForHost(name, since);
      const rows = await trx.selectFrom('instances').selectAll().where('host_id', '=', hostId).execute();
      const out: NewEvent[] = [];
      for (const row of rows) {
        const before = normalizeStatus(fromJson<InstanceStatus>(row.status));
        if (before.host_unreachable_since === undefined) {
          const status: InstanceStatus = {
            ...before,
            state: 'unknown',
            host_unreachable_since: since,
            last_known_state: before.state,
          };
          ids.push(row.id);
          out.push(
            await this.setStatus(trx, row, status, {
              previous: before.state,
              reason: `host ${name} is unreachable`,
              host_unreachable_since: since,
            }),
          );
        }
        out.push(
          ...(await this.operations.advance(trx, row.id, (op) => ({
            status: op.status === 'running' ? 'running' : 'pending',
            progress: Number(op.progress),
            message,
          }))),
        );
      }
      return out;
    });
    await this.post.run({ forget: ids, events });
  }

  /**
   * The host is back and has reported what it runs: instances it did not report get their last known
   * state back (its next reports bring the real one), and operations no longer say they wait for it.
   */
  async hostReachable(hostId: string): Promise<void> {
    const ids: string[] = [];
    const events = await transaction(this.ctx.store, async (trx) => {
      ids.length = 0;
      const back = `host ${await hostName(trx, hostId)} is back`;
      const rows = await trx.selectFrom('instances').selectAll().where('host_id', '=', hostId).execute();
      const out: NewEvent[] = [];
      for (const row of rows) {
        const before = normalizeStatus(fromJson<InstanceStatus>(row.status));
        if (before.host_unreachable_since !== undefined) {
          const { host_unreachable_since: _since, last_known_state, ...rest } = before;
          const status: InstanceStatus = { ...rest, state: last_known_state ?? 'unknown' };
          ids.push(row.id);
          out.push(await this.setStatus(trx, row, status, { previous: before.state, reason: null }));
        }
        out.push(
          ...(await this.operations.advance(trx, row.id, (op) =>
            op.message.startsWith(WAITING)
              ? {
                  status: op.status === 'running' ? 'running' : 'pending',
                  progress: Number(op.progress),
                  message: back,
                }
              : null,
          )),
        );
      }
      return out;
    });
    await this.post.run({ forget: ids, events });
  }

  /** Writes an instance's new status and returns its `instance.state` event. */
  private async setStatus(
    trx: Db,
    row: { id: string; name: string; project: string },
    status: InstanceStatus,
    data: Record<string, unknown>,
  ): Promise<NewEvent> {
    await this.cache.forget(trx, row.id);
    await trx
      .updateTable('instances')
      .set({ status: toJson(status), state: status.state })
      .where('id', '=', row.id)
      .execute();
    return {
      type: 'instance.state',
      project: row.project,
      kind: 'instance',
      resource_id: row.id,
      data: { name: row.name, state: status.state, ...data },
    };
  }
}
