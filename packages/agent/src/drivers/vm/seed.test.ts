import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FloeError } from '@floe/api';
import { desiredInstance } from '@floe/testkit';
import { run, which } from '../../host/exec.js';
import { parse } from 'yaml';
import { seedFiles, writeSeedIso } from './seed.js';

const ID = 'inst_01JB8X0Q3E6M2T9K4V7W5YB1C3';
const KEY_A = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOlL0kHd5y2Qmk8 alice@laptop';
const KEY_B = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 "bob" \\ home';

describe('seedFiles', () => {
  it('writes meta-data and an empty #cloud-config without user-data or keys', () => {
    expect(seedFiles(desiredInstance({ id: ID, name: 'web-1' }))).toEqual({
      'meta-data': 'instance-id: inst_01JB8X0Q3E6M2T9K4V7W5YB1C3\nlocal-hostname: web-1\n',
      'user-data': '#cloud-config\n',
    });
  });

  it('installs the ssh keys through a minimal #cloud-config when the user gave none', () => {
    const files = seedFiles(desiredInstance({ id: ID, name: 'db', spec: { ssh_keys: [KEY_A, `  ${KEY_B}\n`] } }));
    expect(files['meta-data']).toBe(
      'instance-id: inst_01JB8X0Q3E6M2T9K4V7W5YB1C3\n' +
        'local-hostname: db\n' +
        'public-keys:\n' +
        '  - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOlL0kHd5y2Qmk8 alice@laptop"\n' +
        '  - "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 \\"bob\\" \\\\ home"\n',
    );
    expect(files['user-data']).toBe(
      '#cloud-config\n' +
        'ssh_authorized_keys:\n' +
        '  - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOlL0kHd5y2Qmk8 alice@laptop"\n' +
        '  - "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 \\"bob\\" \\\\ home"\n',
    );
    expect(parse(files['meta-data']!, { version: '1.1' })).toEqual({
      'instance-id': ID,
      'local-hostname': 'db',
      'public-keys': [KEY_A, KEY_B],
    });
    expect(parse(files['user-data']!, { version: '1.1' })).toEqual({ ssh_authorized_keys: [KEY_A, KEY_B] });
    expect(files['vendor-data']).toBeUndefined();
  });

  it('adds network-config with the static addresses of the NICs', () => {
    const nics = [
      {
        id: 'nic_01JB8X0Q3E6M2T9K4V7W5YB1C3',
        network_id: 'net_01JB8X0Q3E6M2T9K4V7W5YB1C3',
        vni: 7,
        index: 0,
        mac: '02:12:34:56:78:9a',
        ipv4: '10.10.0.2',
        ipv4_prefix: 24,
        ipv6: null,
        ipv6_prefix: null,
        gateway4: null,
        gateway6: null,
        mtu: 1450,
        dns_servers: [],
      },
    ];
    const files = seedFiles(desiredInstance({ id: ID, name: 'web-1', nics }));
    expect(Object.keys(files).sort()).toEqual(['meta-data', 'network-config', 'user-data']);
    expect(files['network-config']).toBe(
      'version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: "02:12:34:56:78:9a"\n    set-name: eth0\n    mtu: 1450\n' +
        '    dhcp4: false\n    dhcp6: false\n    addresses:\n      - "10.10.0.2/24"\n',
    );
    expect(seedFiles(desiredInstance({ id: ID, name: 'web-1', nics: [] }))['network-config']).toBeUndefined();
  });

  it("keeps the user's #cloud-config as given and leaves the keys to meta-data", () => {
    const doc = '#cloud-config\npackages: [nginx]\nruncmd:\n  - [systemctl, start, nginx]\n';
    const files = seedFiles(desiredInstance({ id: ID, name: 'web', spec: { user_data: doc, ssh_keys: [KEY_A] } }));
    expect(files['user-data']).toBe(doc);
    expect(files['meta-data']).toBe(
      'instance-id: inst_01JB8X0Q3E6M2T9K4V7W5YB1C3\n' +
        'local-hostname: web\n' +
        'public-keys:\n' +
        '  - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOlL0kHd5y2Qmk8 alice@laptop"\n',
    );
  });

  it('passes a script through byte for byte and adds vendor-data when given', () => {
    const script = '#!/bin/sh\necho "hello from $(hostname)"\n';
    expect(
      seedFiles(desiredInstance({ id: ID, name: 'job', spec: { user_data: script } }), {
        vendorData: '#cloud-config\ntimezone: UTC\n',
      }),
    ).toEqual({
      'meta-data': 'instance-id: inst_01JB8X0Q3E6M2T9K4V7W5YB1C3\nlocal-hostname: job\n',
      'user-data': script,
      'vendor-data': '#cloud-config\ntimezone: UTC\n',
    });
  });

  it('passes MIME multipart user-data (cloud-config and shell script parts, CRLF lines) through byte for byte', () => {
    const multipart = [
      'Content-Type: multipart/mixed; boundary="==b=="',
      'MIME-Version: 1.0',
      '',
      '--==b==',
      'Content-Type: text/cloud-config; charset="us-ascii"',
      '',
      '#cloud-config',
      'runcmd:',
      '  - [touch, /x]',
      '',
      '--==b==',
      'Content-Type: text/x-shellscript; charset="us-ascii"',
      '',
      '#!/bin/sh',
      'echo hi > /y',
      '',
      '--==b==--',
      '',
    ].join('\r\n');
    const files = seedFiles(
      desiredInstance({ id: ID, name: 'mime', spec: { user_data: multipart, ssh_keys: [KEY_A] } }),
    );
    expect(files['user-data']).toBe(multipart);
    // The keys still reach the guest through meta-data, as with any document of the user's.
    expect(files['meta-data']).toContain(KEY_A);
  });

  it('takes the vendor-data the control plane sends with the instance', () => {
    const vm = desiredInstance({ id: ID, name: 'job', vendor_data: '#!/bin/sh\necho vendor\n' });
    expect(seedFiles(vm)['vendor-data']).toBe('#!/bin/sh\necho vendor\n');
    expect(seedFiles(desiredInstance({ id: ID, name: 'job', vendor_data: null }))['vendor-data']).toBeUndefined();
  });

  it('refuses names, ids and keys that would break the YAML, and oversized user-data', () => {
    const bad = [
      desiredInstance({ id: ID, name: 'Web\nevil: 1' }),
      desiredInstance({ id: 'inst_1\ninstance-id: x', name: 'web' }),
      desiredInstance({ id: ID, name: 'web', spec: { ssh_keys: ['ssh-ed25519 AAAA\nssh-rsa BBBB'] } }),
      desiredInstance({ id: ID, name: 'web', spec: { ssh_keys: ['   '] } }),
      desiredInstance({ id: ID, name: 'web', spec: { user_data: `#!/bin/sh\n${'é'.repeat(33 * 1024)}` } }),
    ];
    for (const vm of bad) {
      expect(() => seedFiles(vm)).toThrow(FloeError);
      try {
        seedFiles(vm);
      } catch (err) {
        expect((err as FloeError).code).toBe('validation_failed');
      }
    }
  });
});

describe('writeSeedIso', () => {
  let dir: string | null = null;
  afterEach(async () => {
    if (dir !== null) await rm(dir, { recursive: true, force: true });
    dir = null;
  });

  it('builds an ISO labelled cidata that holds exactly the seed files', async (ctx) => {
    if ((await which('isoinfo')) === null) {
      ctx.skip('isoinfo is not installed (Debian package genisoimage)');
      return;
    }
    dir = await mkdtemp(join(tmpdir(), 'floe-seed-'));
    const files = seedFiles(
      desiredInstance({ id: ID, name: 'web', spec: { user_data: '#!/bin/sh\necho seeded\n', ssh_keys: [KEY_A] } }),
      { vendorData: '#cloud-config\n' },
    );
    const iso = await writeSeedIso(dir, files);
    expect(iso).toBe(join(dir, 'seed.iso'));
    expect((await stat(iso)).size).toBeGreaterThan(0);

    const info = await run('isoinfo', ['-d', '-i', iso]);
    expect(info.stdout).toMatch(/^Volume id: cidata$/m);
    expect(info.stdout).toMatch(/Joliet/);
    expect(info.stdout).toMatch(/Rock Ridge/);

    const listing = await run('isoinfo', ['-J', '-f', '-i', iso]);
    expect(listing.stdout.trim().split('\n').sort()).toEqual(['/meta-data', '/user-data', '/vendor-data']);
    for (const [name, text] of Object.entries(files)) {
      expect((await run('isoinfo', ['-J', '-x', `/${name}`, '-i', iso])).stdout).toBe(text);
      expect((await run('isoinfo', ['-R', '-x', `/${name}`, '-i', iso])).stdout).toBe(text);
    }

    // A second write replaces the ISO and leaves no temporary files behind.
    await writeSeedIso(dir, { 'meta-data': 'instance-id: x\n', 'user-data': '#cloud-config\n' });
    expect(await readdir(dir)).toEqual(['seed.iso']);
    expect((await run('isoinfo', ['-J', '-x', '/meta-data', '-i', iso])).stdout).toBe('instance-id: x\n');
  });

  it('refuses file names cloud-init does not read and seeds without meta-data', async () => {
    dir = await mkdtemp(join(tmpdir(), 'floe-seed-'));
    await expect(writeSeedIso(dir, { 'meta-data': '', 'user-data': '', '../evil': 'x' })).rejects.toMatchObject({
      code: 'validation_failed',
    });
    await expect(writeSeedIso(dir, { 'user-data': '' })).rejects.toMatchObject({ code: 'validation_failed' });
    expect(await readdir(dir)).toEqual([]);
  });
});
