import type { Instance } from '@floe/api';
import { memo, useDeferredValue, useEffect, useMemo, useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { useEvents } from '../events.js';
import { formatMib } from '../logic/format.js';
import { labelQuery, matchesLabels, parseLabelFilter } from '../logic/labels.js';
import { actionOf, applyAction, canDo, upsert } from '../logic/live.js';
import { canWrite, useSession } from '../session.js';
import { Badge, ErrorLine, Header, Labels, Link } from '../ui/kit.js';

type Bulk = 'start' | 'stop' | 'delete';

/** The instance list: live states from the event stream, a label filter, bulk start/stop/delete. */
export function InstancesPage() {
  const { project, role } = useSession();
  const [filter, setFilter] = useState(new URLSearchParams(location.search).get('label') ?? '');
  // Typing stays responsive on a long list: the rows follow the filter a moment later.
  const deferredFilter = useDeferredValue(filter);
  const terms = useMemo(() => parseLabelFilter(deferredFilter), [deferredFilter]);
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const loaded = useLoad(() => listAll((q) => client.instances.list({ ...q, project })), [project]);
  const [items, setItems] = useState<readonly Instance[]>([]);
  useEffect(() => {
    if (loaded.data !== undefined) setItems(loaded.data);
  }, [loaded.data]);
  useEffect(() => setSelected(new Set()), [project]);

  useEvents(project, (e) => {
    const a = actionOf(e);
    if (a.kind === 'refetch')
      client.instances.get(a.id, { project }).then(
        (i) => setItems((list) => upsert(list, i)),
        () => undefined,
      );
    else if (a.kind !== 'none') setItems((list) => applyAction(list, a));
  });

  const shown = useMemo(() => items.filter((i) => matchesLabels(i.labels, terms)), [items, terms]);
  const chosen = shown.filter((i) => selected.has(i.id));
  const writable = canWrite(role);

  const bulk = async (action: Bulk) => {
    const targets = chosen.filter((i) => canDo(action, i.status.state));
    if (action === 'delete' && !confirm(`Delete ${targets.map((i) => i.name).join(', ')}?`)) return;
    setBusy(true);
    setError(undefined);
    const failures: string[] = [];
    await Promise.all(
      targets.map((i) =>
        (action === 'start'
          ? client.instances.start(i.id, { project })
          : action === 'stop'
            ? client.instances.stop(i.id, { project })
            : client.instances.delete(i.id, { project })
        ).catch((err: unknown) => failures.push(`${i.name}: ${errorText(err)}`)),
      ),
    );
    setBusy(false);
    setSelected(new Set());
    if (failures.length > 0) setError(failures.join('; '));
  };

  const toggle = useMemo(
    () => (id: string) =>
      setSelected((s) => {
        const n = new Set(s);
        if (n.has(id)) n.delete(id);
        else n.add(id);
        return n;
      }),
    [],
  );

  return (
    <>
      <Header title="Instances">
        {writable && (
          <Link to="/new" className="button primary">
            Create instance
          </Link>
        )}
      </Header>
      <div className="toolbar">
        <label className="filter">
          <span>Filter by label</span>
          <input
            type="search"
            placeholder="env=prod, tier"
            value={filter}
            onChange={(e) => setFilter(e.target.value)}
            aria-describedby="filter-help"
          />
        </label>
        <span id="filter-help" className="muted small">
          {terms.length > 0 ? `label=${labelQuery(terms).join(' & ')}` : 'key or key=value, comma separated'}
        </span>
        {writable && (
          <div className="bulk" role="group" aria-label="Selected instances">
            {(['start', 'stop', 'delete'] as const).map((a) => (
              <button
                key={a}
                type="button"
                className={a === 'delete' ? 'danger' : ''}
                disabled={busy || !chosen.some((i) => canDo(a, i.status.state))}
                onClick={() => void bulk(a)}
              >
                {a[0]!.toUpperCase() + a.slice(1)} ({chosen.filter((i) => canDo(a, i.status.state)).length})
              </button>
            ))}
          </div>
        )}
      </div>
      <ErrorLine error={error ?? loaded.error} />
      <div className="table-wrap">
        <table className="instances" aria-busy={loaded.loading}>
          <thead>
            <tr>
              {writable && (
                <th scope="col">
                  <input
                    type="checkbox"
                    aria-label="Select all shown"
                    checked={shown.length > 0 && chosen.length === shown.length}
                    onChange={(e) => setSelected(e.target.checked ? new Set(shown.map((i) => i.id)) : new Set())}
                  />
                </th>
              )}
              <th scope="col">Name</th>
              <th scope="col">State</th>
              <th scope="col" className="hide-narrow">
                Size
              </th>
              <th scope="col" className="hide-narrow">
                Labels
              </th>
            </tr>
          </thead>
          <tbody>
            {shown.map((i) => (
              <Row key={i.id} i={i} writable={writable} selected={selected.has(i.id)} toggle={toggle} />
            ))}
          </tbody>
        </table>
      </div>
      {!loaded.loading && shown.length === 0 && (
        <p className="muted">No instances{terms.length > 0 ? ' match' : ''}.</p>
      )}
      <p className="muted small" id="instance-count">
        {shown.length} of {items.length} instances
      </p>
    </>
  );
}

/** One row of the list; drawn again only when its instance or its selection changes. */
const Row = memo(function Row(props: {
  i: Instance;
  writable: boolean;
  selected: boolean;
  toggle: (id: string) => void;
}) {
  const { i } = props;
  return (
    <tr data-instance={i.name}>
      {props.writable && (
        <td>
          <input
            type="checkbox"
            aria-label={`Select ${i.name}`}
            checked={props.selected}
            onChange={() => props.toggle(i.id)}
          />
        </td>
      )}
      <td>
        <Link to={`/instances/${encodeURIComponent(i.name)}`}>{i.name}</Link>
      </td>
      <td>
        <Badge value={i.status.state} />
      </td>
      <td className="hide-narrow">
        {i.spec.vcpus} vCPU · {formatMib(i.spec.memory_mib)} · {i.spec.disk_gib} GiB
      </td>
      <td className="hide-narrow">
        <Labels labels={i.labels} />
      </td>
    </tr>
  );
});
