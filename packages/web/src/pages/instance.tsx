import type { Instance, RestartPolicy } from '@floe/api';
import { lazy, Suspense, useState } from 'react';
import { client, errorText, useLoad } from '../api.js';
import { useEvents } from '../events.js';
import { ago, formatMib } from '../logic/format.js';
import { actionOf } from '../logic/live.js';
import { INSTANCE_TABS } from '../logic/route.js';
import { navigate } from '../router.js';
import { canWrite, useSession } from '../session.js';
import { Badge, ErrorLine, Header, Labels, Link } from '../ui/kit.js';
import { Graphs } from './instance-graphs.js';
import { History, Operations } from './instance-history.js';
import { Logs } from './instance-logs.js';
import { Nics } from './instance-nics.js';

// The consoles bring xterm.js and noVNC: loaded when opened, so the instance list stays light.
const SerialConsole = lazy(() => import('./instance-console.js').then((m) => ({ default: m.SerialConsole })));
const GraphicalConsole = lazy(() => import('./instance-vnc.js').then((m) => ({ default: m.GraphicalConsole })));

const TAB_LABEL: Record<(typeof INSTANCE_TABS)[number], string> = {
  overview: 'Overview',
  console: 'Serial console',
  vnc: 'Graphical console',
  logs: 'Logs',
  graphs: 'Graphs',
  nics: 'NICs',
  history: 'History',
  operations: 'Operations',
};

/** Tabs that need more than the viewer role. */
const CONSOLE_TABS = new Set(['console', 'vnc']);

/** One instance: overview and power actions, consoles, logs, graphs, NICs, history, operations. */
export function InstancePage(props: { id: string; tab: string }) {
  const { project, role } = useSession();
  const inst = useLoad(() => client.instances.get(props.id, { project }), [props.id, project]);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const writable = canWrite(role);
  const i = inst.data;
  useEvents(project, (e) => {
    if (i === undefined || e.resource_id !== i.id) return;
    const a = actionOf(e);
    if (a.kind === 'state')
      inst.set({ ...i, status: { ...i.status, state: a.state as Instance['status']['state'], reason: a.reason } });
    else if (a.kind === 'refetch') inst.reload();
    else if (a.kind === 'remove') navigate('/instances');
  });
  const base = `/instances/${encodeURIComponent(props.id)}`;
  const tabs = INSTANCE_TABS.filter((t) => writable || !CONSOLE_TABS.has(t));
  const tab = tabs.includes(props.tab as (typeof INSTANCE_TABS)[number]) ? props.tab : 'overview';

  const act = async (what: 'start' | 'stop' | 'restart' | 'delete' | 'force') => {
    if (i === undefined) return;
    if (what === 'delete' && !confirm(`Delete ${i.name}? Its disk is destroyed.`)) return;
    setBusy(true);
    setError(undefined);
    try {
      const o = { project };
      if (what === 'start') await client.instances.start(i.id, o);
      else if (what === 'stop') await client.instances.stop(i.id, o);
      else if (what === 'force') await client.instances.stop(i.id, { ...o, force: true });
      else if (what === 'restart') await client.instances.restart(i.id, o);
      else {
        await client.instances.delete(i.id, o);
        navigate('/instances');
      }
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  const setRestart = async (policy: RestartPolicy) => {
    if (i === undefined) return;
    try {
      inst.set(
        await client.instances.update(i.id, { spec: { restart_policy: policy } }, { project, ifMatch: i.revision }),
      );
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <>
      <Header title={props.id}>
        {i !== undefined && <Badge value={i.status.state} />}
        {i !== undefined && writable && (
          <span className="actions" role="group" aria-label="Power">
            <button type="button" disabled={busy || i.status.state === 'running'} onClick={() => void act('start')}>
              Start
            </button>
            <button type="button" disabled={busy || i.status.state !== 'running'} onClick={() => void act('stop')}>
              Stop
            </button>
            <button type="button" disabled={busy || i.status.state !== 'running'} onClick={() => void act('force')}>
              Force stop
            </button>
            <button type="button" disabled={busy || i.status.state !== 'running'} onClick={() => void act('restart')}>
              Restart
            </button>
            <button type="button" className="danger" disabled={busy} onClick={() => void act('delete')}>
              Delete
            </button>
          </span>
        )}
      </Header>
      <ErrorLine error={error ?? inst.error} />
      <nav className="tabs" aria-label="Instance">
        {tabs.map((t) => (
          <Link
            key={t}
            to={t === 'overview' ? base : `${base}/${t}`}
            className={t === tab ? 'tab active' : 'tab'}
            current={t === tab}
          >
            {TAB_LABEL[t]}
          </Link>
        ))}
      </nav>
      {i !== undefined && tab === 'overview' && (
        <dl className="facts">
          <dt>ID</dt>
          <dd>
            <code>{i.id}</code>
          </dd>
          <dt>State</dt>
          <dd>
            {i.status.state} {i.status.reason ? <span className="muted">({i.status.reason})</span> : null}
          </dd>
          <dt>Size</dt>
          <dd>
            {i.spec.machine_type ?? 'custom'}: {i.spec.vcpus} vCPU · {formatMib(i.spec.memory_mib)} · {i.spec.disk_gib}{' '}
            GiB
          </dd>
          <dt>Image</dt>
          <dd>{i.spec.image}</dd>
          <dt>Host</dt>
          <dd>{i.status.host ?? '–'}</dd>
          <dt>Accelerator</dt>
          <dd>{i.status.accelerator ?? '–'}</dd>
          <dt>Started</dt>
          <dd>{ago(i.status.started_at)}</dd>
          <dt>First boot</dt>
          <dd>
            {i.status.first_boot.finished_at
              ? `finished ${ago(i.status.first_boot.finished_at)}`
              : i.status.first_boot.fetched_at
                ? 'data fetched'
                : '–'}
          </dd>
          <dt>Labels</dt>
          <dd>
            <Labels labels={i.labels} />
          </dd>
          <dt>Restart policy</dt>
          <dd>
            {writable ? (
              <select
                aria-label="Restart policy"
                value={i.spec.restart_policy}
                onChange={(e) => void setRestart(e.target.value as RestartPolicy)}
              >
                <option value="never">never</option>
                <option value="on-failure">on failure</option>
                <option value="always">always</option>
              </select>
            ) : (
              i.spec.restart_policy
            )}
          </dd>
          <dt>Revision</dt>
          <dd>{i.revision}</dd>
        </dl>
      )}
      <Suspense fallback={<p className="muted">Loading…</p>}>
        {tab === 'console' && <SerialConsole instance={props.id} project={project} />}
        {tab === 'vnc' && <GraphicalConsole instance={props.id} project={project} />}
      </Suspense>
      {tab === 'logs' && <Logs instance={props.id} project={project} />}
      {tab === 'graphs' && <Graphs instance={props.id} project={project} />}
      {tab === 'nics' && <Nics instance={props.id} project={project} writable={writable} />}
      {tab === 'history' && <History instance={props.id} project={project} />}
      {tab === 'operations' && i !== undefined && <Operations instanceId={i.id} project={project} />}
    </>
  );
}
