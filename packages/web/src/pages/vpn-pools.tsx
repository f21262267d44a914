import type { VpnPool } from '@floe/api';
import { useState } from 'react';
import { client, errorText } from '../api.js';
import { splitList } from '../logic/vpn.js';
import { ErrorLine } from '../ui/kit.js';

/** VPN pools: everyone sees them; operators create and delete them. */
export function VpnPools(props: { pools: readonly VpnPool[]; operator: boolean; onChange: () => void }) {
  const [name, setName] = useState('');
  const [ipv6, setIpv6] = useState('');
  const [ipv4, setIpv4] = useState('');
  const [hosts, setHosts] = useState('');
  const [endpoint, setEndpoint] = useState('');
  const [error, setError] = useState<string>();
  const act = (work: Promise<unknown>) =>
    work.then(
      () => {
        setError(undefined);
        props.onChange();
      },
      (e: unknown) => setError(errorText(e)),
    );
  return (
    <section aria-label="VPN pools">
      <h2>VPN pools</h2>
      <ErrorLine error={error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>Addresses</th>
              <th className="hide-narrow">Endpoint</th>
              <th>Used</th>
              {props.operator && <th />}
            </tr>
          </thead>
          <tbody>
            {props.pools.map((p) => (
              <tr key={p.id}>
                <td>{p.name}</td>
                <td>
                  {p.spec.ipv6}
                  {p.spec.ipv4 !== null && <> · {p.spec.ipv4}</>}
                </td>
                <td className="hide-narrow">
                  <code>
                    {p.spec.endpoint}:{p.spec.listen_port}
                  </code>
                </td>
                <td>
                  {p.status.networks}/{p.status.capacity}
                </td>
                {props.operator && (
                  <td>
                    <button type="button" className="danger" onClick={() => void act(client.vpnPools.delete(p.id))}>
                      Delete
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {props.operator && (
        <form
          className="inline-form panel"
          aria-label="New VPN pool"
          onSubmit={(e) => {
            e.preventDefault();
            void act(
              client.vpnPools
                .create({
                  name,
                  ipv6,
                  hosts: splitList(hosts),
                  endpoint,
                  ...(ipv4 === '' ? {} : { ipv4 }),
                })
                .then(() => setName('')),
            );
          }}
        >
          <label>
            Name
            <input value={name} onChange={(e) => setName(e.target.value.trim())} required />
          </label>
          <label>
            IPv6 range
            <input value={ipv6} onChange={(e) => setIpv6(e.target.value.trim())} placeholder="fd50::/40" required />
          </label>
          <label>
            IPv4 range (optional)
            <input value={ipv4} onChange={(e) => setIpv4(e.target.value.trim())} placeholder="10.200.0.0/16" />
          </label>
          <label>
            Gateway hosts
            <input value={hosts} onChange={(e) => setHosts(e.target.value)} placeholder="gw-1, gw-2" required />
          </label>
          <label>
            Endpoint
            <input
              value={endpoint}
              onChange={(e) => setEndpoint(e.target.value.trim())}
              placeholder="vpn.example.org"
              required
            />
          </label>
          <button type="submit">Create pool</button>
        </form>
      )}
    </section>
  );
}
