import type { Operation } from '@floe/api';
import { useEffect, useState } from 'react';
import { client } from '../api.js';
import { useEvents } from '../events.js';
import { ago } from '../logic/format.js';
import { mergeOperation } from '../logic/ops.js';
import { useSession } from '../session.js';
import { Badge } from './kit.js';

/** The task panel at the bottom of every page: running and recent operations of the project, live. */
export function TaskPanel() {
  const { project } = useSession();
  const [ops, setOps] = useState<Operation[]>([]);
  const [open, setOpen] = useState(false);
  useEffect(() => {
    if (project === '') return;
    client.operations.list({ project, limit: 20 }).then(
      (p) => setOps(p.items),
      () => setOps([]),
    );
  }, [project]);
  useEvents(project, (e) => {
    if (e.kind !== 'operation') return;
    const op = (e.data as { operation?: Operation }).operation;
    if (op !== undefined) setOps((list) => mergeOperation(list, op));
    else
      client.operations.get(e.resource_id).then(
        (o) => setOps((list) => mergeOperation(list, o)),
        () => undefined,
      );
  });
  const running = ops.filter((o) => o.status === 'running' || o.status === 'pending');
  return (
    <section className={open ? 'tasks open' : 'tasks'} aria-label="Tasks">
      <button type="button" className="tasks-toggle" aria-expanded={open} onClick={() => setOpen((o) => !o)}>
        Tasks: {running.length} running, {ops.length - running.length} recent
      </button>
      {open && (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th>Operation</th>
                <th>Status</th>
                <th>Progress</th>
                <th>Message</th>
                <th>Started</th>
              </tr>
            </thead>
            <tbody>
              {ops.map((o) => (
                <tr key={o.id} data-operation={o.id}>
                  <td>
                    {o.kind} <span className="muted">{o.resources.map((r) => r.name ?? r.id).join(', ')}</span>
                  </td>
                  <td>
                    <Badge value={o.status} />
                  </td>
                  <td>
                    <progress max={100} value={o.progress} aria-label={`${o.kind} progress`} />
                  </td>
                  <td>{o.error?.message ?? o.message}</td>
                  <td>{ago(o.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
