import type { VpnNetworkStats } from '@floe/api';
import { client, useLoad } from '../api.js';
import { ago, formatBytes } from '../logic/format.js';
import { ErrorLine } from '../ui/kit.js';

/** Each peer's latest handshake and transfer as the VPN network's gateways count them (read on demand). */
export function VpnPeerActivity(props: { id: string; name: string; project: string; onClose: () => void }) {
  const stats = useLoad<VpnNetworkStats>(
    (signal) => client.vpnNetworks.stats(props.id, { project: props.project, signal }),
    [props.id, props.project],
  );
  const s = stats.data;
  return (
    <section className="panel" aria-label={`Peer activity of ${props.name}`}>
      <h3>Peer activity of {props.name}</h3>
      <ErrorLine error={stats.error} />
      {s !== undefined && s.gateways.answered < s.gateways.total && (
        <p>
          {s.gateways.answered} of {s.gateways.total} gateways answered.
        </p>
      )}
      <div className="table-wrap">
        <table aria-label="Peer activity">
          <thead>
            <tr>
              <th>Peer</th>
              <th className="hide-narrow">Endpoint</th>
              <th>Latest handshake</th>
              <th>Received</th>
              <th>Sent</th>
            </tr>
          </thead>
          <tbody>
            {s?.peers.map((p) => (
              <tr key={p.peer}>
                <td>{p.name}</td>
                <td className="hide-narrow">{p.endpoint === null ? '–' : <code>{p.endpoint}</code>}</td>
                <td>{p.latest_handshake === null ? 'never' : ago(p.latest_handshake, Date.parse(s.time))}</td>
                <td>{formatBytes(p.rx_bytes)}</td>
                <td>{formatBytes(p.tx_bytes)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <button type="button" onClick={stats.reload}>
        Refresh
      </button>{' '}
      <button type="button" onClick={props.onClose}>
        Close
      </button>
    </section>
  );
}
