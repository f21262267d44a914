import type { FloatingIp, FloatingIpChanged, Instance, Network, PortForward } from '@floe/api';
import { useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { changeText, listenText, parsePort } from '../logic/nat.js';
import { canWrite, useSession } from '../session.js';
import { ErrorLine, Header } from '../ui/kit.js';

/** Floating IPs (create, attach, move, detach, delete) and port forwards (create, delete). */
export function NatPage() {
  const { project, role } = useSession();
  const data = useLoad(async () => {
    const [ips, forwards, instances, networks] = await Promise.all([
      listAll<FloatingIp>((q) => client.floatingIps.list({ ...q, project })),
      listAll<PortForward>((q) => client.portForwards.list({ ...q, project })),
      listAll<Instance>((q) => client.instances.list({ ...q, project })),
      listAll<Network>((q) => client.networks.list({ ...q, project })),
    ]);
    return { ips, forwards, instances, networks };
  }, [project]);
  const [error, setError] = useState<string>();
  const writable = canWrite(role);
  const instanceName = (id: string | null) =>
    id === null ? '–' : (data.data?.instances.find((i) => i.id === id)?.name ?? id);
  const act = (work: Promise<unknown>) =>
    work.then(
      () => {
        setError(undefined);
        data.reload();
      },
      (e: unknown) => setError(errorText(e)),
    );
  const [change, setChange] = useState<string>();
  /** An attach or detach: its operation followed until the host has the change, said in a status line. */
  const follow = (work: Promise<FloatingIpChanged>, to: string | null) =>
    act(
      work.then(async (r) => {
        const say = (op: FloatingIpChanged['operation']) => setChange(changeText(r.floating_ip, to, op));
        say(r.operation);
        // The table shows where it is now; the status line, when its host has it.
        data.reload();
        say(await client.operations.wait(r.operation, { timeoutMs: 300_000, onUpdate: say }));
      }),
    );
  return (
    <>
      <Header title="Floating IPs and port forwards" />
      <ErrorLine error={error ?? data.error} />
      <h2>Floating IPs</h2>
      {change !== undefined && <p role="status">{change}</p>}
      <div className="table-wrap">
        <table aria-label="Floating IPs">
          <thead>
            <tr>
              <th>Name</th>
              <th>Address</th>
              <th>Instance</th>
              {writable && <th />}
            </tr>
          </thead>
          <tbody>
            {data.data?.ips.map((ip) => (
              <tr key={ip.id}>
                <td>{ip.name}</td>
                <td>
                  <code>{ip.address}</code>
                </td>
                <td>{instanceName(ip.instance)}</td>
                {writable && (
                  <td>
                    <AttachForm ip={ip} instances={data.data?.instances ?? []} follow={follow} />
                    {ip.instance !== null && (
                      <button
                        type="button"
                        onClick={() => void follow(client.floatingIps.detach(ip.id, { project }), null)}
                      >
                        Detach
                      </button>
                    )}{' '}
                    <button
                      type="button"
                      className="danger"
                      onClick={() => void act(client.floatingIps.delete(ip.id, { project }))}
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
      {writable && data.data !== undefined && (
        <NewFloatingIp instances={data.data.instances} networks={data.data.networks} act={act} />
      )}
      <h2>Port forwards</h2>
      <div className="table-wrap">
        <table aria-label="Port forwards">
          <thead>
            <tr>
              <th>Name</th>
              <th>Listens on</th>
              <th>Instance</th>
              <th>Target</th>
              {writable && <th />}
            </tr>
          </thead>
          <tbody>
            {data.data?.forwards.map((f) => (
              <tr key={f.id}>
                <td>{f.name}</td>
                <td>
                  <code>{listenText(f)}</code>
                </td>
                <td>{instanceName(f.instance)}</td>
                <td>
                  <code>
                    {f.target_address}:{f.target_port}
                  </code>
                </td>
                {writable && (
                  <td>
                    <button
                      type="button"
                      className="danger"
                      onClick={() => void act(client.portForwards.delete(f.id, { project }))}
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
      {writable && data.data !== undefined && (
        <NewForward ips={data.data.ips} instances={data.data.instances} act={act} />
      )}
    </>
  );
}

type Act = (work: Promise<unknown>) => Promise<unknown>;

/** Attaches a floating IP to an instance, or moves it there from where it is. */
function AttachForm(props: {
  ip: FloatingIp;
  instances: readonly Instance[];
  follow: (work: Promise<FloatingIpChanged>, to: string | null) => Promise<unknown>;
}) {
  const { project } = useSession();
  const [instance, setInstance] = useState('');
  return (
    <form
      className="inline-form"
      aria-label={`Attach ${props.ip.name}`}
      onSubmit={(e) => {
        e.preventDefault();
        void props.follow(client.floatingIps.attach(props.ip.id, { instance }, { project }), instance);
      }}
    >
      <select value={instance} onChange={(e) => setInstance(e.target.value)} aria-label="Instance" required>
        <option value="">Instance…</option>
        {props.instances
          .filter((i) => i.id !== props.ip.instance)
          .map((i) => (
            <option key={i.id} value={i.name}>
              {i.name}
            </option>
          ))}
      </select>
      <button type="submit" disabled={instance === ''}>
        {props.ip.instance === null ? 'Attach' : 'Move'}
      </button>
    </form>
  );
}

/** A new floating IP from a network's pool, attached at once when an instance is chosen. */
function NewFloatingIp(props: { instances: readonly Instance[]; networks: readonly Network[]; act: Act }) {
  const { project } = useSession();
  const [name, setName] = useState('');
  const [network, setNetwork] = useState('');
  const [instance, setInstance] = useState('');
  return (
    <form
      className="inline-form panel"
      aria-label="New floating IP"
      onSubmit={(e) => {
        e.preventDefault();
        void props.act(
          client.floatingIps
            .create({
              name,
              project,
              ...(network === '' ? {} : { network }),
              ...(instance === '' ? {} : { instance }),
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
        Public network
        <select value={network} onChange={(e) => setNetwork(e.target.value)}>
          <option value="">default</option>
          {props.networks.map((n) => (
            <option key={n.id} value={n.name}>
              {n.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Attach to
        <select value={instance} onChange={(e) => setInstance(e.target.value)}>
          <option value="">nothing yet</option>
          {props.instances.map((i) => (
            <option key={i.id} value={i.name}>
              {i.name}
            </option>
          ))}
        </select>
      </label>
      <button type="submit">Create floating IP</button>
    </form>
  );
}

/** A new port forward: a port of a floating IP or of the host to a port of an instance. */
function NewForward(props: { ips: readonly FloatingIp[]; instances: readonly Instance[]; act: Act }) {
  const { project } = useSession();
  const [name, setName] = useState('');
  const [protocol, setProtocol] = useState<'tcp' | 'udp'>('tcp');
  const [ip, setIp] = useState('');
  const [port, setPort] = useState('');
  const [instance, setInstance] = useState('');
  const [target, setTarget] = useState('');
  const [error, setError] = useState<string>();
  return (
    <form
      className="inline-form panel"
      aria-label="New port forward"
      onSubmit={(e) => {
        e.preventDefault();
        const p = parsePort(port);
        const t = parsePort(target);
        if (p === undefined || p === null) return setError('Port is a number from 1 to 65535');
        if (t === null) return setError('Target port is a number from 1 to 65535 (empty: the same)');
        setError(undefined);
        void props.act(
          client.portForwards
            .create({
              name,
              project,
              protocol,
              port: p,
              instance,
              ...(ip === '' ? {} : { floating_ip: ip }),
              ...(t === undefined ? {} : { target_port: t }),
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
        Protocol
        <select value={protocol} onChange={(e) => setProtocol(e.target.value as 'tcp' | 'udp')}>
          <option value="tcp">tcp</option>
          <option value="udp">udp</option>
        </select>
      </label>
      <label>
        Listen on
        <select value={ip} onChange={(e) => setIp(e.target.value)}>
          <option value="">the host&apos;s addresses</option>
          {props.ips.map((i) => (
            <option key={i.id} value={i.name}>
              {i.name} ({i.address})
            </option>
          ))}
        </select>
      </label>
      <label>
        Port
        <input inputMode="numeric" value={port} onChange={(e) => setPort(e.target.value)} required />
      </label>
      <label>
        Instance
        <select value={instance} onChange={(e) => setInstance(e.target.value)} required>
          <option value="">Choose…</option>
          {props.instances.map((i) => (
            <option key={i.id} value={i.name}>
              {i.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        Target port
        <input inputMode="numeric" value={target} onChange={(e) => setTarget(e.target.value)} placeholder="same" />
      </label>
      <button type="submit">Create port forward</button>
      <ErrorLine error={error} />
    </form>
  );
}
