import { describe, expect, it } from 'vitest';
import { desiredInstance } from '@floe/testkit';
import { seedFiles } from '../drivers/vm/seed.js';
import { metadataAnswer, pathSegments, type MetadataContext } from './documents.js';
import { vendorData } from './vendor-data.js';

const ID = 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3';
const NIC0 = 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C4';
const NIC1 = 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C5';
const KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOlL0kHd5y2Qmk8 alice@laptop';
const KEY_B = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@home';
const nic = (id: string, index: number, ipv4: string) => ({
  id,
  network_id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
  vni: 7,
  index,
  mac: `02:12:34:56:78:9${index}`,
  ipv4,
  ipv4_prefix: 24,
  ipv6: null,
  ipv6_prefix: null,
  gateway4: '10.10.0.1',
  gateway6: null,
  mtu: 1450,
  dns_servers: [],
});
const VM = desiredInstance({
  id: ID,
  name: 'web-1',
  spec: { user_data: '#!/bin/sh\necho hi\n', ssh_keys: [KEY_A, KEY_B] },
  nics: [nic(NIC0, 0, '10.10.0.5'), nic(NIC1, 1, '10.20.0.9')],
});
const ctx: MetadataContext = { vm: VM, nicId: NIC0, vendorData: null };
const body = (method: string, path: string, c = ctx) => {
  const a = metadataAnswer(method, path, c);
  return a.kind === 'document' ? a.body : a.kind === 'error' ? `${a.status}` : a.report;
};

describe('metadataAnswer', () => {
  it("serves the seed documents at the NoCloud-net paths, vendor-data with floe's part", () => {
    const seed = seedFiles(VM);
    expect(body('GET', '/meta-data')).toBe(seed['meta-data']);
    expect(body('GET', '/user-data')).toBe('#!/bin/sh\necho hi\n');
    expect(body('GET', '/network-config')).toBe(seed['network-config']);
    expect(body('GET', '/vendor-data')).toBe(vendorData(null));
    expect(body('GET', '/vendor-data', { ...ctx, vendorData: '#cloud-config\npackages: [htop]\n' })).toBe(
      vendorData('#cloud-config\npackages: [htop]\n'),
    );
    expect(body('GET', '/')).toBe('meta-data\nuser-data\nvendor-data\nnetwork-config\nlatest/');
    // Without NICs there is no network-config: cloud-init falls back to DHCP.
    const bare = { vm: desiredInstance({ id: ID, name: 'web-1' }), nicId: NIC0 };
    expect(body('GET', '/network-config', bare)).toBe('404');
  });

  it('serves the EC2 tree under latest and dated versions, as seen from the NIC asked on', () => {
    for (const v of ['latest', '2009-04-04', '2021-03-23']) {
      expect(body('GET', `/${v}/meta-data/`)).toBe('hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\npublic-keys/');
      expect(body('GET', `/${v}/meta-data`)).toBe('hostname\ninstance-id\nlocal-hostname\nlocal-ipv4\npublic-keys/');
      expect(body('GET', `/${v}/meta-data/instance-id`)).toBe(ID);
      expect(body('GET', `/${v}/user-data`)).toBe('#!/bin/sh\necho hi\n');
    }
    expect(body('GET', '/latest')).toBe('meta-data/\nuser-data');
    expect(body('GET', '/latest/meta-data/hostname')).toBe('web-1');
    expect(body('GET', '/latest/meta-data/local-hostname')).toBe('web-1');
    expect(body('GET', '/latest/meta-data/local-ipv4')).toBe('10.10.0.5');
    expect(body('GET', '/latest/meta-data/local-ipv4', { ...ctx, nicId: NIC1 })).toBe('10.20.0.9');
    expect(body('GET', '/latest/meta-data/public-keys/')).toBe('0=key0\n1=key1');
    expect(body('GET', '/latest/meta-data/public-keys/1/')).toBe('openssh-key');
    expect(body('GET', '/latest/meta-data/public-keys/0/openssh-key')).toBe(`${KEY_A}\n`);
    expect(body('GET', '/latest/meta-data/public-keys/1/openssh-key')).toBe(`${KEY_B}\n`);
    const nokeys = { vm: desiredInstance({ id: ID, name: 'db' }), nicId: NIC0 };
    expect(body('GET', '/latest/meta-data/', nokeys)).toBe('hostname\ninstance-id\nlocal-hostname');
    expect(body('GET', '/latest/meta-data/public-keys/', nokeys)).toBe('404');
  });

  it('marks the fetches of meta-data and user-data, not of listings', () => {
    const fetched = (p: string) => {
      const a = metadataAnswer('GET', p, ctx);
      return a.kind === 'document' && a.fetched === true;
    };
    expect(['/meta-data', '/user-data', '/latest/user-data', '/latest/meta-data/instance-id'].map(fetched)).toEqual([
      true,
      true,
      true,
      true,
    ]);
    expect(['/', '/latest/meta-data/', '/vendor-data', '/network-config'].map(fetched)).toEqual([
      false,
      false,
      false,
      false,
    ]);
  });

  it('names no VM in its paths: unknown paths are 404, ids or other instances get nothing', () => {
    for (const p of [
      `/${ID}/meta-data`,
      `/latest/meta-data/${ID}`,
      '/latest/meta-data/instance-id/x',
      '/nocloud/meta-data',
      '/latest/dynamic/instance-identity/document',
      '/2009-4-4/meta-data/',
      '/meta-data/x',
      '/etc/passwd',
    ]) {
      expect(body('GET', p), p).toBe('404');
    }
  });

  it('refuses traversal, escapes and odd paths; a query is ignored', () => {
    for (const p of [
      '/../meta-data',
      '/latest/../meta-data',
      '/./meta-data',
      '/%2e%2e/meta-data',
      '/meta-data%00',
      '//meta-data',
      'meta-data',
      `/${'a'.repeat(300)}`,
      '/meta data',
    ]) {
      expect(body('GET', p), p).toBe('400');
    }
    expect(body('GET', '/meta-data?x=1')).toBe(seedFiles(VM)['meta-data']);
    expect(pathSegments('/latest/meta-data/')).toEqual(['latest', 'meta-data']);
    expect(pathSegments('/')).toEqual([]);
  });

  it('answers GET and HEAD; POST only to the report paths', () => {
    expect(metadataAnswer('HEAD', '/meta-data', ctx).kind).toBe('document');
    expect(metadataAnswer('PUT', '/latest/api/token', ctx)).toEqual({
      kind: 'error',
      status: 405,
      body: 'method not allowed\n',
      allow: 'GET, HEAD',
    });
    expect(metadataAnswer('POST', '/meta-data', ctx)).toMatchObject({ status: 405 });
    expect(metadataAnswer('POST', '/phone-home', ctx)).toEqual({ kind: 'report', report: 'phone-home' });
    expect(metadataAnswer('POST', '/report', ctx)).toEqual({ kind: 'report', report: 'webhook' });
    expect(metadataAnswer('GET', '/report', ctx)).toEqual({
      kind: 'error',
      status: 405,
      body: 'method not allowed\n',
      allow: 'POST',
    });
  });
});
