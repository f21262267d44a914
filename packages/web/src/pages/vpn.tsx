import type { Network, VpnNetwork, VpnPeer, VpnPeerCreated, VpnPool } from '@floe/api';
import { useEffect, useMemo, useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { configFileName } from '../logic/vpn.js';
import { canWrite, useSession } from '../session.js';
import { ErrorLine, Header } from '../ui/kit.js';
import { VpnPools } from './vpn-pools.js';
import { VpnPeerActivity } from './vpn-stats.js';

/** WireGuard VPN: the project's VPN networks and their peers; operators also manage the pools. */
export function VpnPage() {
  const { project, role, user } = useSession();
  const data = useLoad(async () => {
    const [pools, vpns, peers, networks] = await Promise.all([
      listAll<VpnPool>((q) => client.vpnPools.list(q)),
      listAll<VpnNetwork>((q) => client.vpnNetworks.list({ ...q, project })),
      listAll<VpnPeer>((q) => client.vpnPeers.list({ ...q, project })),
      listAll<Network>((q) => client.networks.list({ ...q, project })),
    ]);
    return { pools, vpns, peers, networks };
  }, [project]);
  const [error, setError] = useState<string>();
  const [created, setCreated] = useState<{ vpn: string; result: VpnPeerCreated }>();
  const [activity, setActivity] = useState<VpnNetwork>();
  const writable = canWrite(role);
  const act = (work: Promise<unknown>) =>
    work.then(
      () => {
        setError(undefined);
        data.reload();
      },
      (e: unknown) => setError(errorText(e)),
    );
  const d = data.data;
  const poolName = (id: string) => d?.pools.find((p) => p.id === id)?.name ?? id;
  const netName = (id: string) => d?.networks.find((n) => n.id === id)?.name ?? id;
  const vpnName = (id: string) => d?.vpns.find((v) => v.id === id)?.name ?? id;
  return (
    <>
      <Header title="VPN" />
      <ErrorLine error={error ?? data.error} />
      <h2>VPN networks</h2>
      <div className="table-wrap">
        <table aria-label="VPN networks">
          <thead>
            <tr>
              <th>Name</th>
              <th>Pool</th>
              <th>Addresses</th>
              <th className="hide-narrow">Endpoint</th>
              <th>Reaches</th>
              <th>Peers</th>
              <th />
              {writable && <th />}
            </tr>
          </thead>
          <tbody>
            {d?.vpns.map((v) => (
              <tr key={v.id}>
                <td>{v.name}</td>
                <td>{poolName(v.spec.pool)}</td>
                <td>
                  {v.ipv6}
                  {v.ipv4 !== null && <> · {v.ipv4}</>}
                </td>
                <td className="hide-narrow">
                  <code>{v.endpoint}</code>
                </td>
                <td>{v.spec.networks.map(netName).join(', ') || '–'}</td>
                <td>{v.status.peers}</td>
                <td>
                  <button type="button" onClick={() => setActivity(v)}>
                    Activity
                  </button>
                </td>
                {writable && (
                  <td>
                    <button
                      type="button"
                      className="danger"
                      onClick={() => void act(client.vpnNetworks.delete(v.id, { project }))}
                    >
                      Delete
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {activity !== undefined && (
        <VpnPeerActivity
          key={activity.id}
          id={activity.id}
          name={activity.name}
          project={project}
          onClose={() => setActivity(undefined)}
        />
      )}
      {writable && d !== undefined && <NewVpnNetwork pools={d.pools} networks={d.networks} act={act} />}
      <h2>Peers</h2>
      {created !== undefined && <CreatedPeer {...created} onClose={() => setCreated(undefined)} />}
      <div className="table-wrap">
        <table aria-label="VPN peers">
          <thead>
            <tr>
              <th>Name</th>
              <th>VPN network</th>
              <th>Addresses</th>
              <th className="hide-narrow">Public key</th>
              <th>Files</th>
              {writable && <th />}
            </tr>
          </thead>
          <tbody>
            {d?.peers.map((p) => (
              <tr key={p.id}>
                <td>{p.name}</td>
                <td>{vpnName(p.vpn_network)}</td>
                <td>
                  {p.ipv6}
                  {p.ipv4 !== null && <> · {p.ipv4}</>}
                </td>
                <td className="hide-narrow">
                  <code>{p.public_key}</code>
                </td>
                <td>
                  <a href={peerFile(p, 'config', project)} download={configFileName(vpnName(p.vpn_network), p.name)}>
                    config
                  </a>{' '}
                  <a href={peerFile(p, 'qr.png', project)} target="_blank" rel="noreferrer">
                    QR
                  </a>
                </td>
                {writable && (
                  <td>
                    <button
                      type="button"
                      className="danger"
                      onClick={() => void act(client.vpnPeers.delete(p.id, { project }))}
                    >
                      Remove
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {writable && d !== undefined && d.vpns.length > 0 && (
        <NewPeer
          vpns={d.vpns}
          onCreated={(vpn, result) => {
            setCreated({ vpn, result });
            data.reload();
          }}
        />
      )}
      {d !== undefined && <VpnPools pools={d.pools} operator={user.operator} onChange={data.reload} />}
    </>
  );
}

/** The URL of a peer's wg-quick file or its QR code (without the private key floe does not keep). */
function peerFile(p: VpnPeer, file: 'config' | 'qr.png', project: string): string {
  return client.transport.url(`/v1/vpn-peers/${encodeURIComponent(p.id)}/${file}`, { project });
}

type Act = (work: Promise<unknown>) => Promise<unknown>;

/** A new VPN network from a pool, reaching some of the project's networks. */
function NewVpnNetwork(props: { pools: readonly VpnPool[]; networks: readonly Network[]; act: Act }) {
  const { project } = useSession();
  const [name, setName] = useState('');
  const [pool, setPool] = useState('');
  const [networks, setNetworks] = useState<string[]>([]);
  return (
    <form
      className="inline-form panel"
      aria-label="New VPN network"
      onSubmit={(e) => {
        e.preventDefault();
        void props.act(
          client.vpnNetworks.create({ name, project, pool, networks }).then(() => {
            setName('');
            setNetworks([]);
          }),
        );
      }}
    >
      <label>
        Name
        <input value={name} onChange={(e) => setName(e.target.value.trim())} required />
      </label>
      <label>
        Pool
        <select value={pool} onChange={(e) => setPool(e.target.value)} required>
          <option value="">Choose…</option>
          {props.pools.map((p) => (
            <option key={p.id} value={p.name}>
              {p.name} ({p.status.networks}/{p.status.capacity})
            </option>
          ))}
        </select>
      </label>
      <fieldset>
        <legend>Reaches</legend>
        {props.networks.map((n) => (
          <label key={n.id} className="check">
            <input
              type="checkbox"
              checked={networks.includes(n.name)}
              onChange={(e) => setNetworks((l) => (e.target.checked ? [...l, n.name] : l.filter((x) => x !== n.name)))}
            />
            {n.name}
          </label>
        ))}
      </fieldset>
      <button type="submit">Create VPN network</button>
    </form>
  );
}

/** A new peer: with its own public key, or with a key pair floe generates and shows once. */
function NewPeer(props: { vpns: readonly VpnNetwork[]; onCreated: (vpn: string, r: VpnPeerCreated) => void }) {
  const { project } = useSession();
  const [name, setName] = useState('');
  const [vpn, setVpn] = useState(props.vpns[0]?.name ?? '');
  const [key, setKey] = useState('');
  const [error, setError] = useState<string>();
  return (
    <form
      className="inline-form panel"
      aria-label="New peer"
      onSubmit={(e) => {
        e.preventDefault();
        client.vpnPeers.create({ name, project, vpn_network: vpn, ...(key === '' ? {} : { public_key: key }) }).then(
          (r) => {
            setError(undefined);
            setName('');
            setKey('');
            props.onCreated(vpn, r);
          },
          (err: unknown) => setError(errorText(err)),
        );
      }}
    >
      <label>
        Name
        <input value={name} onChange={(e) => setName(e.target.value.trim())} required />
      </label>
      <label>
        VPN network
        <select value={vpn} onChange={(e) => setVpn(e.target.value)} required>
          {props.vpns.map((v) => (
            <option key={v.id} value={v.name}>
              {v.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Public key (empty: generate a key pair)
        <input value={key} onChange={(e) => setKey(e.target.value.trim())} placeholder="base64 WireGuard key" />
      </label>
      <button type="submit">Add peer</button>
      <ErrorLine error={error} />
    </form>
  );
}

/** The new peer's wg-quick config and QR code, shown this once, with a download button. */
function CreatedPeer(props: { vpn: string; result: VpnPeerCreated; onClose: () => void }) {
  const { config, qr_png: qr, peer, private_key: privateKey } = props.result;
  const href = useMemo(() => URL.createObjectURL(new Blob([config], { type: 'text/plain' })), [config]);
  useEffect(() => () => URL.revokeObjectURL(href), [href]);
  return (
    <section className="panel" aria-label="New peer config">
      <h2>Config of {peer.name}</h2>
      <p>
        {privateKey === null
          ? 'Put your private key where the file says.'
          : 'This file holds the private key; floe does not keep it and shows it only now.'}
      </p>
      <pre className="config">{config}</pre>
      <img src={`data:image/png;base64,${qr}`} alt={`QR code of the config of ${peer.name}`} width={240} />
      <p className="inline-form">
        <a className="button" href={href} download={configFileName(props.vpn, peer.name)}>
          Download {configFileName(props.vpn, peer.name)}
        </a>
        <button type="button" onClick={props.onClose}>
          Done
        </button>
      </p>
    </section>
  );
}
