import type { Network, Nic, SecurityGroup } from '@floe/api';
import { Fragment, useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { ErrorLine } from '../ui/kit.js';
import { NicSettings } from './nic-settings.js';

/** The NICs of an instance: hot attach on a network, hot detach, security groups, filtering, rate limits. */
export function Nics(props: { instance: string; project: string; writable: boolean }) {
  const nics = useLoad(() => client.instances.nics(props.instance, { project: props.project }), [props.instance]);
  const nets = useLoad(
    () => listAll<Network>((q) => client.networks.list({ ...q, project: props.project })),
    [props.project],
  );
  const sgs = useLoad(
    () => listAll<SecurityGroup>((q) => client.securityGroups.list({ ...q, project: props.project })),
    [props.project],
  );
  const [editing, setEditing] = useState<string>();
  const [network, setNetwork] = useState('');
  const [ipv4, setIpv4] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const run = async (work: () => Promise<unknown>) => {
    setBusy(true);
    setError(undefined);
    try {
      await work();
      nics.reload();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section aria-label="NICs">
      <ErrorLine error={error ?? nics.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Slot</th>
              <th>Network</th>
              <th>MAC</th>
              <th>IPv4</th>
              <th>IPv6</th>
              <th>Security groups</th>
              <th className="hide-narrow">Rate limits</th>
              {props.writable && <th />}
            </tr>
          </thead>
          <tbody>
            {nics.data?.map((n: Nic) => (
              <Fragment key={n.id}>
                <tr>
                  <td>{n.index}</td>
                  <td>{n.network_name}</td>
                  <td>
                    <code>{n.mac}</code>
                  </td>
                  <td>{n.ipv4 ?? '–'}</td>
                  <td>{n.ipv6 ?? '–'}</td>
                  <td>
                    {n.security_groups.map((g) => sgName(g, sgs.data)).join(', ') || 'default'}
                    {!n.filtering && <span className="chip">no filtering</span>}
                  </td>
                  <td className="hide-narrow">{rateText(n)}</td>
                  {props.writable && (
                    <td>
                      <button
                        type="button"
                        aria-expanded={editing === n.id}
                        onClick={() => setEditing(editing === n.id ? undefined : n.id)}
                      >
                        Settings
                      </button>{' '}
                      <button
                        type="button"
                        className="danger"
                        disabled={busy}
                        onClick={() =>
                          void run(async () => {
                            const op = await client.instances.removeNic(props.instance, n.id, {
                              project: props.project,
                            });
                            await client.operations.wait(op, { timeoutMs: 300_000 });
                          })
                        }
                      >
                        Detach
                      </button>
                    </td>
                  )}
                </tr>
                {props.writable && editing === n.id && sgs.data !== undefined && (
                  <tr>
                    <td colSpan={8}>
                      <NicSettings
                        instance={props.instance}
                        project={props.project}
                        nic={n}
                        groups={sgs.data}
                        onDone={() => {
                          setEditing(undefined);
                          nics.reload();
                        }}
                      />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      </div>
      {props.writable && (
        <form
          className="inline-form"
          onSubmit={(e) => {
            e.preventDefault();
            void run(async () => {
              const added = await client.instances.addNic(
                props.instance,
                { network, ...(ipv4 === '' ? {} : { ipv4 }) },
                { project: props.project },
              );
              await client.operations.wait(added.operation, { timeoutMs: 300_000 });
            });
          }}
        >
          <label>
            Network
            <select value={network} onChange={(e) => setNetwork(e.target.value)} required>
              <option value="">Choose…</option>
              {nets.data?.map((n) => (
                <option key={n.id} value={n.name}>
                  {n.name}
                </option>
              ))}
            </select>
          </label>
          <label>
            IPv4 (optional)
            <input value={ipv4} onChange={(e) => setIpv4(e.target.value.trim())} placeholder="next free" />
          </label>
          <button type="submit" disabled={busy || network === ''}>
            Attach NIC
          </button>
        </form>
      )}
    </section>
  );
}

/** A group's name from its id (or the id when the group is not listed). */
function sgName(id: string, groups: readonly SecurityGroup[] | undefined): string {
  return groups?.find((g) => g.id === id)?.name ?? id;
}

/** A NIC's limits in short: `in 10000 kbit/s, out 500 pps` or `none`. */
function rateText(n: Nic): string {
  const r = n.rate_limit;
  if (r === null) return 'none';
  const parts = [
    r.ingress_kbps === undefined ? '' : `in ${r.ingress_kbps} kbit/s`,
    r.ingress_pps === undefined ? '' : `in ${r.ingress_pps} pps`,
    r.egress_kbps === undefined ? '' : `out ${r.egress_kbps} kbit/s`,
    r.egress_pps === undefined ? '' : `out ${r.egress_pps} pps`,
  ];
  return parts.filter((p) => p !== '').join(', ') || 'none';
}
