import type { HistoryEntry, Operation } from '@floe/api';
import { client, listAll, useLoad } from '../api.js';
import { diff } from '../logic/diff.js';
import { ago } from '../logic/format.js';
import { Badge, ErrorLine } from '../ui/kit.js';

const show = (v: unknown) => (v === undefined ? '∅' : JSON.stringify(v));

/** The change history of an instance, each revision with what changed. */
export function History(props: { instance: string; project: string }) {
  const h = useLoad(
    () => listAll<HistoryEntry>((q) => client.instances.history(props.instance, { ...q, project: props.project })),
    [props.instance],
  );
  return (
    <section aria-label="History">
      <ErrorLine error={h.error} />
      <ol className="history">
        {[...(h.data ?? [])].reverse().map((e) => (
          <li key={e.id}>
            <p>
              <strong>r{e.revision}</strong> {e.action} by <code>{e.actor}</code>{' '}
              <span className="muted">{ago(e.time)}</span>
            </p>
            <table className="diff">
              <tbody>
                {diff(e.before ?? {}, e.after ?? {}).map((c) => (
                  <tr key={c.path}>
                    <th scope="row">{c.path}</th>
                    <td className="del">{show(c.before)}</td>
                    <td className="add">{show(c.after)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </li>
        ))}
      </ol>
    </section>
  );
}

/** The operations that involved an instance. */
export function Operations(props: { instanceId: string; project: string }) {
  const ops = useLoad(
    async () =>
      (await client.operations.list({ project: props.project, limit: 200 })).items.filter((o: Operation) =>
        o.resources.some((r) => r.id === props.instanceId),
      ),
    [props.instanceId],
  );
  return (
    <section aria-label="Operations">
      <ErrorLine error={ops.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Kind</th>
              <th>Status</th>
              <th>Message</th>
              <th>Started</th>
            </tr>
          </thead>
          <tbody>
            {ops.data?.map((o) => (
              <tr key={o.id}>
                <td>{o.kind}</td>
                <td>
                  <Badge value={o.status} />
                </td>
                <td>{o.error?.message ?? o.message}</td>
                <td>{ago(o.created_at)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}
