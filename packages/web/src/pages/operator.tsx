import type { AuditRecord, Host } from '@floe/api';
import { useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { ago, formatMib } from '../logic/format.js';
import { Badge, ErrorLine, Header, Meter, Secret } from '../ui/kit.js';

/** Hosts (operators): state, facts, capacity and allocation, drain, join tokens. */
export function HostsPage() {
  const hosts = useLoad(() => listAll<Host>((q) => client.hosts.list(q)), []);
  const [join, setJoin] = useState<string>();
  const [error, setError] = useState<string>();
  const drain = (h: Host) =>
    client.hosts
      .update(h.id, { spec: { schedulable: !h.spec.schedulable } }, { ifMatch: h.revision })
      .then(hosts.reload, (e: unknown) => setError(errorText(e)));
  return (
    <>
      <Header title="Hosts">
        <button
          type="button"
          onClick={() =>
            void client.hosts.joinToken({ expires_in_minutes: 60 }).then(
              (t) => setJoin(t.token),
              (e: unknown) => setError(errorText(e)),
            )
          }
        >
          New join token
        </button>
      </Header>
      <ErrorLine error={error ?? hosts.error} />
      {join !== undefined && <Secret label="Join token (1 hour)" value={join} />}
      <div className="cards hosts">
        {hosts.data?.map((h) => {
          const f = h.status.facts;
          const a = h.status.allocated;
          const c = h.status.capacity;
          return (
            <article key={h.id} className="card host" aria-label={`Host ${h.name}`}>
              <header>
                <strong>{h.name}</strong> <Badge value={h.status.state} />{' '}
                {!h.spec.schedulable && <Badge value="drained" />}
              </header>
              <p className="small muted">
                {f
                  ? `${f.hostname} · ${f.arch} · kernel ${f.kernel} · ${f.accelerator} · QEMU ${f.qemu_version ?? '–'} · agent ${f.agent_version}`
                  : 'no facts yet'}
              </p>
              <p className="small">
                vCPUs {a.vcpus} / {c.vcpus}
              </p>
              <Meter value={a.vcpus} max={c.vcpus} label={`${h.name} vCPUs allocated`} />
              <p className="small">
                Memory {formatMib(a.memory_mib)} / {formatMib(c.memory_mib)}
              </p>
              <Meter value={a.memory_mib} max={c.memory_mib} label={`${h.name} memory allocated`} />
              <p className="small">
                {a.instances} instances · disk free {f ? `${f.disk_free_gib.toFixed(0)} GiB` : '–'} · heartbeat{' '}
                {ago(h.status.last_heartbeat_at)}
              </p>
              <button type="button" onClick={() => void drain(h)}>
                {h.spec.schedulable ? 'Drain' : 'Undrain'}
              </button>
            </article>
          );
        })}
      </div>
    </>
  );
}

/** The audit log (operators): newest first, filterable by action. */
export function AuditPage() {
  const [action, setAction] = useState('');
  const log = useLoad(() => client.audit.list({ limit: 200, ...(action === '' ? {} : { action }) }), [action]);
  const items: AuditRecord[] = log.data?.items ?? [];
  return (
    <>
      <Header title="Audit log" />
      <label className="filter">
        <span>Action</span>
        <input
          type="search"
          value={action}
          onChange={(e) => setAction(e.target.value.trim())}
          placeholder="instance.create"
        />
      </label>
      <ErrorLine error={log.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>When</th>
              <th>Who</th>
              <th>Action</th>
              <th>Outcome</th>
              <th className="hide-narrow">Resource</th>
              <th className="hide-narrow">From</th>
            </tr>
          </thead>
          <tbody>
            {items.map((r) => (
              <tr key={r.id}>
                <td title={r.at}>{ago(r.at)}</td>
                <td>{r.user_name ?? r.token_id ?? '–'}</td>
                <td>{r.action}</td>
                <td>
                  <Badge value={r.outcome} /> {r.error_code ?? ''}
                </td>
                <td className="hide-narrow">{r.resource_id ?? '–'}</td>
                <td className="hide-narrow">{r.source_address ?? '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
