import type { Image, Network } from '@floe/api';
import { useState } from 'react';
import { client, errorText, listAll, useLoad } from '../api.js';
import { formatBytes } from '../logic/format.js';
import { canWrite, useSession } from '../session.js';
import { Badge, ErrorLine, Header, Labels } from '../ui/kit.js';

/** Images: the list, an upload with progress, an import from a URL. */
export function ImagesPage() {
  const { project, role } = useSession();
  const images = useLoad(() => listAll<Image>((q) => client.images.list({ ...q, project })), [project]);
  const [name, setName] = useState('');
  const [file, setFile] = useState<File | null>(null);
  const [url, setUrl] = useState('');
  const [progress, setProgress] = useState<number | null>(null);
  const [error, setError] = useState<string>();
  const writable = canWrite(role);
  const upload = async () => {
    if (file === null) return;
    setError(undefined);
    try {
      const img = await client.images.create({ name, project, format: file.name.endsWith('.qcow2') ? 'qcow2' : 'raw' });
      setProgress(0);
      await client.uploadImage(img.id, file, { project, onProgress: (s, t) => setProgress(t > 0 ? s / t : 0) });
      images.reload();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setProgress(null);
    }
  };
  const importUrl = async () => {
    setError(undefined);
    try {
      const { operation } = await client.images.import({ name, project, source: { url } });
      images.reload();
      await client.operations.wait(operation, { timeoutMs: 3600_000 });
      images.reload();
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <>
      <Header title="Images" />
      <ErrorLine error={error ?? images.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>OS</th>
              <th className="hide-narrow">Size</th>
              <th className="hide-narrow">Min disk</th>
              <th className="hide-narrow">Labels</th>
              {writable && <th />}
            </tr>
          </thead>
          <tbody>
            {images.data?.map((i) => (
              <tr key={i.id}>
                <td>
                  {i.name} {i.spec.public && <span className="chip">public</span>}
                </td>
                <td>
                  <Badge value={i.status.state} />
                </td>
                <td>{i.spec.os || '–'}</td>
                <td className="hide-narrow">{formatBytes(i.status.size_bytes)}</td>
                <td className="hide-narrow">{i.spec.min_disk_gib} GiB</td>
                <td className="hide-narrow">
                  <Labels labels={i.labels} />
                </td>
                {writable && (
                  <td>
                    {i.project === project && (
                      <button
                        type="button"
                        className="danger"
                        onClick={() =>
                          void client.images
                            .delete(i.id, { project })
                            .then(images.reload, (e: unknown) => setError(errorText(e)))
                        }
                      >
                        Delete
                      </button>
                    )}
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {writable && (
        <section className="panel" aria-label="Add an image">
          <h2>Add an image</h2>
          <label>
            Name
            <input value={name} onChange={(e) => setName(e.target.value.trim())} />
          </label>
          <form
            className="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              void upload();
            }}
          >
            <label>
              File (qcow2 or raw)
              <input type="file" onChange={(e) => setFile(e.target.files?.[0] ?? null)} />
            </label>
            <button type="submit" disabled={file === null || name === '' || progress !== null}>
              Upload
            </button>
            {progress !== null && <progress max={1} value={progress} aria-label="Upload progress" />}
          </form>
          <form
            className="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              void importUrl();
            }}
          >
            <label>
              Import from URL
              <input
                type="url"
                value={url}
                onChange={(e) => setUrl(e.target.value)}
                placeholder="https://…/image.qcow2"
              />
            </label>
            <button type="submit" disabled={url === '' || name === ''}>
              Import
            </button>
          </form>
        </section>
      )}
    </>
  );
}

/** Networks: the list, a new one, deletion. */
export function NetworksPage() {
  const { project, role } = useSession();
  const nets = useLoad(() => listAll<Network>((q) => client.networks.list({ ...q, project })), [project]);
  const [name, setName] = useState('');
  const [ipv4, setIpv4] = useState('10.20.0.0/24');
  const [error, setError] = useState<string>();
  const writable = canWrite(role);
  return (
    <>
      <Header title="Networks" />
      <ErrorLine error={error ?? nets.error} />
      <div className="table-wrap">
        <table>
          <thead>
            <tr>
              <th>Name</th>
              <th>IPv4</th>
              <th className="hide-narrow">IPv6</th>
              <th className="hide-narrow">Gateway</th>
              <th>NICs</th>
              {writable && <th />}
            </tr>
          </thead>
          <tbody>
            {nets.data?.map((n) => (
              <tr key={n.id}>
                <td>{n.name}</td>
                <td>{n.spec.ipv4 ?? '–'}</td>
                <td className="hide-narrow">{n.spec.ipv6 ?? '–'}</td>
                <td className="hide-narrow">{n.spec.gateway}</td>
                <td>{n.status.nics}</td>
                {writable && (
                  <td>
                    <button
                      type="button"
                      className="danger"
                      onClick={() =>
                        void client.networks
                          .delete(n.id, { project })
                          .then(nets.reload, (e: unknown) => setError(errorText(e)))
                      }
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
      {writable && (
        <form
          className="inline-form panel"
          aria-label="New network"
          onSubmit={(e) => {
            e.preventDefault();
            setError(undefined);
            client.networks.create({ name, project, ...(ipv4 === '' ? {} : { ipv4 }) }).then(
              () => {
                setName('');
                nets.reload();
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
            IPv4 range
            <input value={ipv4} onChange={(e) => setIpv4(e.target.value.trim())} />
          </label>
          <button type="submit">Create network</button>
        </form>
      )}
    </>
  );
}
