import type { DesiredInstance } from '@floe/api';
import { seedFiles, sshKeys } from '../drivers/vm/seed.js';
import { PHONE_HOME_PATH, REPORT_PATH, vendorData } from './vendor-data.js';

/** What the service knows when a request arrives: the VM behind the tap it came in on, and which NIC that is. */
export interface MetadataContext {
  vm: DesiredInstance;
  nicId: string;
  /** The operator's or instance's own vendor-data, served after floe's part; null for none. */
  vendorData?: string | null;
}

/** The answer to one request, decided without I/O. */
export type MetadataAnswer =
  | {
      kind: 'document';
      status: 200;
      contentType: string;
      body: string;
      /** Set when the VM fetched its configuration (meta-data or user-data): a first-boot event. */
      fetched?: boolean;
    }
  | { kind: 'report'; report: 'phone-home' | 'webhook' }
  | { kind: 'error'; status: 400 | 404 | 405; body: string; allow?: string };

/** EC2 API versions are `latest` or a date; cloud-init asks for several before it settles. */
const VERSION_RE = /^(latest|\d{4}-\d{2}-\d{2})$/;
/** Path characters floe serves: no percent escapes, no dots that could climb, nothing outside printable ASCII. */
const PATH_RE = /^\/[A-Za-z0-9_\-/.]*$/;

const TEXT = 'text/plain; charset=utf-8';

function notFound(): MetadataAnswer {
  return { kind: 'error', status: 404, body: 'not found\n' };
}

function doc(body: string, fetched = false): MetadataAnswer {
  return { kind: 'document', status: 200, contentType: TEXT, body, ...(fetched ? { fetched: true } : {}) };
}

/** The path segments of a request target, or null when it is malformed (a query is ignored, `.`/`..`/empty segments are not). */
export function pathSegments(target: string): string[] | null {
  const path = target.split('?', 1)[0]!;
  if (path.length > 256 || !PATH_RE.test(path)) return null;
  const trimmed = path.slice(1);
  const dir = trimmed.endsWith('/');
  const segs = trimmed.split('/').filter((s, i, all) => !(dir && i === all.length - 1));
  if (trimmed === '') return [];
  if (segs.some((s) => s === '' || s === '.' || s === '..')) return null;
  return segs;
}

/**
 * The EC2-style meta-data tree of a VM as its NIC sees it: a directory is a
 * listing (sub-directories end with `/`), a leaf a value. `public-keys` lists
 * `<n>=key<n>` as EC2 does, each with an `openssh-key`.
 */
function ec2MetaData(ctx: MetadataContext): Map<string, string> {
  const { vm } = ctx;
  const keys = sshKeys(vm);
  const nic = (vm.nics ?? []).find((n) => n.id === ctx.nicId);
  const leaves = new Map<string, string>([
    ['hostname', vm.name],
    ['instance-id', vm.id],
    ['local-hostname', vm.name],
  ]);
  if (nic?.ipv4 != null) leaves.set('local-ipv4', nic.ipv4);
  const tree = new Map<string, string>();
  const top = [...leaves.keys()];
  if (keys.length > 0) {
    top.push('public-keys/');
    tree.set('public-keys', keys.map((_, i) => `${i}=key${i}`).join('\n'));
    keys.forEach((k, i) => {
      tree.set(`public-keys/${i}`, 'openssh-key');
      tree.set(`public-keys/${i}/openssh-key`, `${k}\n`);
    });
  }
  for (const [k, v] of leaves) tree.set(k, v);
  tree.set('', top.join('\n'));
  return tree;
}

/**
 * Decide the answer to `method target` for the VM of `ctx`. Serves the
 * NoCloud-net files (`/meta-data`, `/user-data`, `/vendor-data`,
 * `/network-config`, the same documents as the seed disk) and the EC2 paths
 * cloud-init's Ec2 data source reads (`/<version>/meta-data/...`,
 * `/<version>/user-data`), GET and HEAD only; POST only to the report paths.
 * Nothing in the path names a VM: the context is all there is.
 *
 * @example
 * metadataAnswer('GET', '/latest/meta-data/instance-id', ctx) // { kind: 'document', body: 'inst_...' }
 */
export function metadataAnswer(method: string, target: string, ctx: MetadataContext): MetadataAnswer {
  const segs = pathSegments(target);
  if (segs === null) return { kind: 'error', status: 400, body: 'bad path\n' };
  const path = `/${segs.join('/')}`;
  if (path === PHONE_HOME_PATH || path === REPORT_PATH) {
    if (method !== 'POST') return { kind: 'error', status: 405, body: 'method not allowed\n', allow: 'POST' };
    return { kind: 'report', report: path === PHONE_HOME_PATH ? 'phone-home' : 'webhook' };
  }
  if (method !== 'GET' && method !== 'HEAD')
    return { kind: 'error', status: 405, body: 'method not allowed\n', allow: 'GET, HEAD' };

  const seed = seedFiles(ctx.vm, { vendorData: vendorData(ctx.vendorData ?? null) });
  if (segs.length === 0)
    return doc(
      ['meta-data', 'user-data', 'vendor-data', ...(seed['network-config'] ? ['network-config'] : []), 'latest/'].join(
        '\n',
      ),
    );
  if (segs.length === 1 && seed[segs[0]!] !== undefined)
    return doc(seed[segs[0]!]!, segs[0] === 'meta-data' || segs[0] === 'user-data');

  const [version, kind, ...rest] = segs;
  if (!VERSION_RE.test(version!)) return notFound();
  if (kind === undefined) return doc('meta-data/\nuser-data');
  if (kind === 'user-data' && rest.length === 0) return doc(seed['user-data']!, true);
  if (kind !== 'meta-data') return notFound();
  const value = ec2MetaData(ctx).get(rest.join('/'));
  return value === undefined ? notFound() : doc(value, rest.length > 0);
}
