import type { Network, Nic } from '@floe/api';
import { useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { ErrorLine } from '../ui/kit.js';

/** The NICs of an instance: hot attach on a network, hot detach. */
export function Nics(props: { instance: string; project: string; writable: boolean }) {
  const nics = useLoad(() => client.instances.nics(props.instance, { project: props.project }), [props.instance]);
  const nets = useLoad(
    () => listAll<Network>((q) => client.networks.list({ ...q, project: props.project })),
    [props.project],
  );
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
              {props.writable && <th />}
            </tr>
          </thead>
          <tbody>
            {nics.data?.map((n: Nic) => (
              <tr key={n.id}>
                <td>{n.index}</td>
                <td>{n.network_name}</td>
                <td>
                  <code>{n.mac}</code>
                </td>
                <td>{n.ipv4 ?? '–'}</td>
                <td>{n.ipv6 ?? '–'}</td>
                {props.writable && (
                  <td>
                    <button
                      type="button"
                      className="danger"
                      disabled={busy}
                      onClick={() =>
                        void run(async () => {
                          const op = await client.instances.removeNic(props.instance, n.id, { project: props.project });
                          await client.operations.wait(op, { timeoutMs: 300_000 });
                        })
                      }
                    >
                      Detach
                    </button>
                  </td>
                )}
              </tr>
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
