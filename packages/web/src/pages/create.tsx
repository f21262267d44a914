import type { Image, MachineType, Network, Operation, ProjectUsage, RestartPolicy, SecurityGroup } from '@floe/api';
import { useEffect, useMemo, useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { checkUserData, type UserDataCheck } from '../logic/cloud-config.js';
import { formatMib } from '../logic/format.js';
import { allFit, headroom } from '../logic/headroom.js';
import { nicRequests } from '../logic/sg.js';
import { navigate } from '../router.js';
import { useSession } from '../session.js';
import { Badge, ErrorLine, Header, Link } from '../ui/kit.js';

const STEPS = ['Image', 'Networks', 'Size', 'Access', 'Review'] as const;

/** Checks user-data with the YAML parser, loaded only when the wizard needs it. */
function useUserDataCheck(text: string): UserDataCheck | undefined {
  const [check, setCheck] = useState<UserDataCheck>();
  useEffect(() => {
    let live = true;
    const t = setTimeout(() => {
      void import('yaml').then(({ parse }) => {
        if (live) setCheck(checkUserData(text, parse));
      });
    }, 150);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [text]);
  return check;
}

/** The create wizard: image, networks, size, access and first boot, review with quota headroom, then progress. */
export function CreatePage() {
  const { project } = useSession();
  const [step, setStep] = useState(0);
  const [name, setName] = useState('');
  const [image, setImage] = useState('');
  const [networks, setNetworks] = useState<string[]>([]);
  const [groups, setGroups] = useState<string[]>([]);
  const [machineType, setMachineType] = useState('');
  const [vcpus, setVcpus] = useState(1);
  const [memory, setMemory] = useState(512);
  const [disk, setDisk] = useState<number | ''>('');
  const [sshKeys, setSshKeys] = useState('');
  const [userData, setUserData] = useState('');
  const [restart, setRestart] = useState<RestartPolicy>('never');
  const [error, setError] = useState<string>();
  const [operation, setOperation] = useState<Operation>();
  const [busy, setBusy] = useState(false);

  const choices = useLoad(async () => {
    const [images, nets, types, sgs] = await Promise.all([
      listAll<Image>((q) => client.images.list({ ...q, project })),
      listAll<Network>((q) => client.networks.list({ ...q, project })),
      listAll<MachineType>((q) => client.machineTypes.list(q)),
      listAll<SecurityGroup>((q) => client.securityGroups.list({ ...q, project })),
    ]);
    return { images: images.filter((i) => i.status.state === 'ready'), nets, types, sgs };
  }, [project]);
  const usage = useLoad<ProjectUsage | undefined>(
    () => client.projects.usage(project).catch(() => undefined),
    [project, step === 4],
  );
  const check = useUserDataCheck(userData);
  const type = choices.data?.types.find((t) => t.name === machineType);
  const size = type ? { vcpus: type.spec.vcpus, memory_mib: type.spec.memory_mib } : { vcpus, memory_mib: memory };
  const img = choices.data?.images.find((i) => i.name === image || i.id === image);
  const diskGib = disk === '' ? (type?.spec.disk_gib ?? img?.spec.min_disk_gib ?? 1) : disk;
  const room = useMemo(
    () =>
      usage.data === undefined
        ? []
        : headroom(usage.data.dimensions, { instances: 1, ...size, disk_gib: diskGib, nics: networks.length }),
    [usage.data, size.vcpus, size.memory_mib, diskGib, networks.length],
  );

  const stepError = (s: number): string | undefined => {
    if (s === 0 && !/^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/.test(name)) return 'Name: a DNS label (a-z, 0-9, -)';
    if (s === 0 && image === '') return 'Choose an image';
    if (s === 2 && disk !== '' && img && disk < img.spec.min_disk_gib)
      return `The image needs a disk of at least ${img.spec.min_disk_gib} GiB`;
    if (s === 3 && check !== undefined && !check.ok)
      return `User-data${check.line ? ` line ${check.line}` : ''}: ${check.message}`;
    return undefined;
  };
  const next = () => {
    const e = stepError(step);
    setError(e);
    if (e === undefined) setStep((s) => Math.min(s + 1, STEPS.length - 1));
  };

  const submit = async () => {
    for (let s = 0; s < 4; s++) {
      const e = stepError(s);
      if (e !== undefined) {
        setStep(s);
        setError(e);
        return;
      }
    }
    setBusy(true);
    setError(undefined);
    try {
      const keys = sshKeys
        .split('\n')
        .map((k) => k.trim())
        .filter(Boolean);
      const created = await client.instances.create({
        name,
        project,
        image,
        ...(type ? { machine_type: type.name } : { vcpus, memory_mib: memory }),
        ...(disk === '' ? {} : { disk_gib: disk }),
        ...(networks.length > 0 ? { networks: nicRequests(networks, groups) } : {}),
        ...(keys.length > 0 ? { ssh_keys: keys } : {}),
        ...(userData.trim() === '' ? {} : { user_data: userData }),
        restart_policy: restart,
      });
      setOperation(created.operation);
      const done = await client.operations.wait(created.operation, { onUpdate: setOperation, timeoutMs: 600_000 });
      setOperation(done);
      if (done.status === 'succeeded') navigate(`/instances/${encodeURIComponent(name)}`);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <Header title="Create instance">
        <Link to="/instances" className="button">
          Cancel
        </Link>
      </Header>
      <ol className="steps" aria-label="Steps">
        {STEPS.map((s, i) => (
          <li key={s} aria-current={i === step ? 'step' : undefined} className={i < step ? 'done' : ''}>
            <button type="button" onClick={() => i < step && setStep(i)} disabled={i > step}>
              {i + 1}. {s}
            </button>
          </li>
        ))}
      </ol>
      <ErrorLine error={choices.error} />
      <form
        className="wizard"
        onSubmit={(e) => {
          e.preventDefault();
          if (step < STEPS.length - 1) next();
          else void submit();
        }}
      >
        {step === 0 && (
          <fieldset>
            <legend>Name and image</legend>
            <label>
              Name
              <input name="name" value={name} onChange={(e) => setName(e.target.value.trim())} autoFocus required />
            </label>
            <div role="radiogroup" aria-label="Image" className="cards">
              {choices.data?.images.map((i) => (
                <label key={i.id} className={image === i.name ? 'card selected' : 'card'}>
                  <input
                    type="radio"
                    name="image"
                    value={i.name}
                    checked={image === i.name}
                    onChange={() => setImage(i.name)}
                  />
                  <strong>{i.name}</strong>
                  <span className="muted small">
                    {i.spec.os || 'unknown OS'} · min {i.spec.min_disk_gib} GiB{i.spec.public ? ' · public' : ''}
                  </span>
                </label>
              ))}
              {choices.data?.images.length === 0 && (
                <p className="muted">No ready image: upload or import one first.</p>
              )}
            </div>
          </fieldset>
        )}
        {step === 1 && (
          <fieldset>
            <legend>Networks (one NIC each, in order)</legend>
            {choices.data?.nets.map((n) => (
              <label key={n.id} className="check">
                <input
                  type="checkbox"
                  name="network"
                  value={n.name}
                  checked={networks.includes(n.name)}
                  onChange={(e) =>
                    setNetworks((list) => (e.target.checked ? [...list, n.name] : list.filter((x) => x !== n.name)))
                  }
                />
                {n.name}{' '}
                <span className="muted small">
                  {n.spec.ipv4 ?? ''} {n.spec.ipv6 ?? ''}
                </span>
              </label>
            ))}
            {choices.data?.nets.length === 0 && <p className="muted">No network: the instance gets no NIC.</p>}
            {networks.length > 0 && (choices.data?.sgs.length ?? 0) > 0 && (
              <fieldset>
                <legend>Security groups of the NICs (none: the project&apos;s default)</legend>
                {choices.data?.sgs.map((g) => (
                  <label key={g.id} className="check">
                    <input
                      type="checkbox"
                      name="security-group"
                      value={g.name}
                      checked={groups.includes(g.name)}
                      onChange={(e) =>
                        setGroups((list) => (e.target.checked ? [...list, g.name] : list.filter((x) => x !== g.name)))
                      }
                    />
                    {g.name}
                  </label>
                ))}
              </fieldset>
            )}
          </fieldset>
        )}
        {step === 2 && (
          <fieldset>
            <legend>Size</legend>
            <label>
              Machine type
              <select name="machine_type" value={machineType} onChange={(e) => setMachineType(e.target.value)}>
                <option value="">Custom</option>
                {choices.data?.types.map((t) => (
                  <option key={t.id} value={t.name}>
                    {t.name}: {t.spec.vcpus} vCPU, {formatMib(t.spec.memory_mib)}, {t.spec.disk_gib} GiB
                  </option>
                ))}
              </select>
            </label>
            {machineType === '' && (
              <div className="row">
                <label>
                  vCPUs
                  <input
                    name="vcpus"
                    type="number"
                    min={1}
                    max={256}
                    value={vcpus}
                    onChange={(e) => setVcpus(Number(e.target.value))}
                  />
                </label>
                <label>
                  Memory (MiB)
                  <input
                    name="memory"
                    type="number"
                    min={128}
                    step={128}
                    value={memory}
                    onChange={(e) => setMemory(Number(e.target.value))}
                  />
                </label>
              </div>
            )}
            <label>
              Disk (GiB, empty: {type ? 'the machine type’s' : 'the image’s minimum'})
              <input
                name="disk"
                type="number"
                min={img?.spec.min_disk_gib ?? 1}
                value={disk}
                onChange={(e) => setDisk(e.target.value === '' ? '' : Number(e.target.value))}
              />
            </label>
          </fieldset>
        )}
        {step === 3 && (
          <fieldset>
            <legend>Access and first boot</legend>
            <label>
              SSH public keys (one a line)
              <textarea name="ssh_keys" rows={3} value={sshKeys} onChange={(e) => setSshKeys(e.target.value)} />
            </label>
            <label>
              User-data (#cloud-config YAML or a #! script)
              <textarea
                name="user_data"
                rows={10}
                className="code"
                spellCheck={false}
                value={userData}
                placeholder={'#cloud-config\nruncmd:\n  - echo hello'}
                onChange={(e) => setUserData(e.target.value)}
                aria-invalid={check !== undefined && !check.ok}
                aria-describedby="user-data-check"
              />
            </label>
            <p id="user-data-check" className={check !== undefined && !check.ok ? 'error' : 'muted small'}>
              {check === undefined
                ? ' '
                : check.ok
                  ? check.kind === 'empty'
                    ? 'No user-data.'
                    : `Valid ${check.kind}.`
                  : `${check.line ? `Line ${check.line}: ` : ''}${check.message}`}
            </p>
            <label>
              Restart policy
              <select
                name="restart_policy"
                value={restart}
                onChange={(e) => setRestart(e.target.value as RestartPolicy)}
              >
                <option value="never">never</option>
                <option value="on-failure">on failure</option>
                <option value="always">always</option>
              </select>
            </label>
          </fieldset>
        )}
        {step === 4 && (
          <fieldset>
            <legend>Review</legend>
            <dl className="facts">
              <dt>Name</dt>
              <dd>{name}</dd>
              <dt>Image</dt>
              <dd>{image}</dd>
              <dt>Networks</dt>
              <dd>{networks.join(', ') || 'none'}</dd>
              <dt>Security groups</dt>
              <dd>{networks.length === 0 ? '–' : groups.join(', ') || 'default'}</dd>
              <dt>Size</dt>
              <dd>
                {size.vcpus} vCPU · {formatMib(size.memory_mib)} · {diskGib} GiB
              </dd>
              <dt>Restart policy</dt>
              <dd>{restart}</dd>
            </dl>
            <h2>Quota headroom</h2>
            <table className="headroom">
              <thead>
                <tr>
                  <th>Dimension</th>
                  <th>Asked</th>
                  <th>Left</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {room.map((r) => (
                  <tr key={r.dimension} className={r.fits ? '' : 'over'}>
                    <td>{r.dimension}</td>
                    <td>{r.asked}</td>
                    <td>{r.available ?? 'no limit'}</td>
                    <td>{r.fits ? 'fits' : 'over the limit'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {!allFit(room) && <p className="error">This instance does not fit in the project’s limits.</p>}
          </fieldset>
        )}
        <ErrorLine error={error} />
        {operation !== undefined && (
          <div className="progress" role="status" aria-live="polite">
            <Badge value={operation.status} /> <progress max={100} value={operation.progress} /> {operation.message}
            {operation.error && <p className="error">{operation.error.message}</p>}
          </div>
        )}
        <div className="wizard-nav">
          {step > 0 && (
            <button type="button" onClick={() => setStep((s) => s - 1)} disabled={busy}>
              Back
            </button>
          )}
          {step < STEPS.length - 1 ? (
            <button type="submit" className="primary">
              Next
            </button>
          ) : (
            <button type="submit" className="primary" disabled={busy || !allFit(room)}>
              Create
            </button>
          )}
        </div>
      </form>
    </>
  );
}
