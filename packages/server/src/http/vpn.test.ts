import { execFileSync } from 'node:child_process';
import { ERROR_CODES, type ErrorCode, type VpnNetwork, type VpnPeerCreated, type VpnPool } from '@floe/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeTargets } from '../db/testing.js';
import { generateKeyPair } from '../services/vpn-keys.js';
import { injectJson, onlineTestHost, startTestControlPlane, type TestControlPlane } from '../testing.js';

// VPN pools, networks and peers through the HTTP API on both stores: addresses carved from the pool,
// the wg-quick file and QR code, the gateways' desired state, and each refusal with its own code that
// leaves every table as it was.

interface Res {
  status: number;
  body: any;
}

/** Everything the VPN tables hold, to prove a refused request changed nothing. */
async function vpnRows(cp: TestControlPlane) {
  const db = cp.store.db;
  return {
    pools: await db.selectFrom('vpn_pools').selectAll().orderBy('id').execute(),
    networks: await db.selectFrom('vpn_networks').selectAll().orderBy('id').execute(),
    peers: await db.selectFrom('vpn_peers').selectAll().orderBy('id').execute(),
  };
}

for (const t of storeTargets()) {
  describe.skipIf(t.skip)(`VPN API on ${t.name}`, () => {
    let cp: TestControlPlane;
    let userToken: string;
    let otherToken: string;
    let gateway: string;
    const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown, token?: string) => {
      const res = await injectJson(cp, method, url, body, token);
      return res as Res;
    };
    const expectError = (res: Res, code: ErrorCode) => {
      expect(res.body?.error?.code, JSON.stringify(res.body)).toBe(code);
      expect(res.status).toBe(ERROR_CODES[code].status);
    };
    /** A request that must be refused with `code` and leave the VPN tables untouched. */
    const refused = async (code: ErrorCode, method: 'POST' | 'DELETE', url: string, body: unknown, token?: string) => {
      const before = await vpnRows(cp);
      expectError(await call(method, url, body, token), code);
      expect(await vpnRows(cp)).toEqual(before);
    };

    beforeAll(async () => {
      cp = await startTestControlPlane(await t.open());
      for (const p of ['vpa', 'vpb']) expect((await call('POST', '/v1/projects', { name: p })).status).toBe(201);
      userToken = (await call('POST', '/v1/tokens', { name: 'u', projects: ['vpa'] })).body.secret;
      otherToken = (await call('POST', '/v1/tokens', { name: 'o', projects: ['vpb'] })).body.secret;
      gateway = await onlineTestHost(cp.app, 'gw-1');
      for (const [p, v4] of [
        ['vpa', '10.31.0.0/24'],
        ['vpb', '10.32.0.0/24'],
      ] as const) {
        const r = await call('POST', '/v1/networks', { name: 'lan', project: p, ipv4: v4, ipv6: 'auto' });
        expect(r.status, JSON.stringify(r.body)).toBe(201);
      }
    });
    afterAll(async () => {
      await cp?.close();
    });

    it('lets admins create pools, refuses overlapping prefixes and hides gateway hosts from users', async () => {
      await refused(
        'forbidden',
        'POST',
        '/v1/vpn-pools',
        { name: 'p', ipv6: 'fd50::/40', hosts: ['gw-1'], endpoint: 'vpn.example.org' },
        userToken,
      );
      const res = await call('POST', '/v1/vpn-pools', {
        name: 'edge',
        ipv6: 'fd50::/40',
        network_prefix: 48,
        ipv4: '10.250.0.0/16',
        ipv4_prefix: 24,
        hosts: ['gw-1'],
        listen_port: 51820,
        endpoint: 'vpn.example.org',
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      const pool = res.body as VpnPool;
      expect(pool.spec).toEqual({
        ipv6: 'fd50::/40',
        network_prefix: 48,
        ipv4: '10.250.0.0/16',
        ipv4_prefix: 24,
        hosts: [gateway],
        listen_port: 51820,
        endpoint: 'vpn.example.org',
      });
      expect(pool.status).toEqual({ networks: 0, capacity: 256 });
      await refused('vpn_prefix_overlap', 'POST', '/v1/vpn-pools', {
        name: 'inner',
        ipv6: 'fd50:0:10::/44',
        hosts: ['gw-1'],
        endpoint: 'vpn.example.org',
      });
      await refused('vpn_prefix_overlap', 'POST', '/v1/vpn-pools', {
        name: 'v4',
        ipv6: 'fd60::/40',
        ipv4: '10.250.128.0/17',
        hosts: ['gw-1'],
        endpoint: 'vpn.example.org',
      });
      const seen = await call('GET', '/v1/vpn-pools/edge', undefined, userToken);
      expect(seen.status).toBe(200);
      expect(seen.body.spec.hosts).toEqual([]);
    });

    it('carves VPN networks from the pool, connected to the project networks, with a gateway key', async () => {
      const a = await call(
        'POST',
        '/v1/vpn-networks',
        { name: 'office', project: 'vpa', pool: 'edge', networks: ['lan'] },
        userToken,
      );
      expect(a.status, JSON.stringify(a.body)).toBe(201);
      const net = a.body as VpnNetwork;
      expect(net).toMatchObject({ ipv6: 'fd50::/48', ipv4: '10.250.0.0/24', endpoint: 'vpn.example.org:51820' });
      expect(net.public_key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      expect(JSON.stringify(net)).not.toMatch(/private/);
      const b = await call(
        'POST',
        '/v1/vpn-networks',
        { name: 'office', project: 'vpb', pool: 'edge', networks: ['lan'] },
        otherToken,
      );
      expect(b.body).toMatchObject({ ipv6: 'fd50:0:1::/48', ipv4: '10.250.1.0/24', endpoint: 'vpn.example.org:51821' });
      // B cannot name A's VPN network.
      expectError(await call('GET', `/v1/vpn-networks/${net.id}`, undefined, otherToken), 'vpn_network_not_found');
      // A network whose range overlaps another tenant's connected network on the same gateways.
      expect((await call('POST', '/v1/networks', { name: 'dup', project: 'vpa', ipv4: '10.32.0.0/25' })).status).toBe(
        201,
      );
      await refused(
        'vpn_prefix_overlap',
        'POST',
        '/v1/vpn-networks',
        { name: 'x', project: 'vpa', pool: 'edge', networks: ['dup'] },
        userToken,
      );
    });

    it('adds peers with generated or supplied keys, a wg-quick file and a QR code; refuses bad and duplicate keys', async () => {
      const gen = await call(
        'POST',
        '/v1/vpn-peers',
        { name: 'phone', project: 'vpa', vpn_network: 'office' },
        userToken,
      );
      expect(gen.status, JSON.stringify(gen.body)).toBe(201);
      const created = gen.body as VpnPeerCreated;
      expect(created.peer).toMatchObject({ ipv6: 'fd50::2/128', ipv4: '10.250.0.2/32', subnets: [] });
      expect(created.private_key).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      const net = (await call('GET', '/v1/vpn-networks/office?project=vpa', undefined, userToken)).body as VpnNetwork;
      expect(created.config).toBe(
        [
          '[Interface]',
          `PrivateKey = ${created.private_key}`,
          'Address = fd50::2/128, 10.250.0.2/32',
          '',
          '[Peer]',
          `PublicKey = ${net.public_key}`,
          'Endpoint = vpn.example.org:51820',
          `AllowedIPs = fd50::/48, 10.250.0.0/24, ${(await call('GET', '/v1/networks/lan?project=vpa')).body.spec.ipv6}, 10.31.0.0/24`,
          'PersistentKeepalive = 25',
          '',
        ].join('\n'),
      );
      const png = Buffer.from(created.qr_png, 'base64');
      expect(png.subarray(1, 4).toString()).toBe('PNG');
      // The public key floe printed derives from the private key it gave (checked with wg when present).
      try {
        const pub = execFileSync('wg', ['pubkey'], { input: `${created.private_key}\n` })
          .toString()
          .trim();
        expect(pub).toBe(created.peer.public_key);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        console.log('wg not installed: the key pair is not checked against wg pubkey');
      }
      // The private key is nowhere afterwards: not in the peer, its config, the events or the tables.
      const shown = await call('GET', `/v1/vpn-peers/${created.peer.id}?project=vpa`, undefined, userToken);
      expect(JSON.stringify(shown.body)).not.toContain(created.private_key);
      const conf = await cp.app.http.inject({
        method: 'GET',
        url: `/v1/vpn-peers/${created.peer.id}/config`,
        headers: { authorization: `Bearer ${userToken}` },
      });
      expect(conf.headers['content-type']).toMatch(/^text\/plain/);
      expect(conf.body).toContain('PrivateKey = <your private key>');
      expect(conf.body).not.toContain(created.private_key!);
      const qr = await cp.app.http.inject({
        method: 'GET',
        url: `/v1/vpn-peers/${created.peer.id}/qr.png`,
        headers: { authorization: `Bearer ${userToken}` },
      });
      expect(qr.headers['content-type']).toBe('image/png');
      expect(qr.rawPayload.subarray(1, 4).toString()).toBe('PNG');
      const everything =
        JSON.stringify(await vpnRows(cp)) + JSON.stringify((await call('GET', '/v1/events?limit=1000')).body);
      expect(everything).not.toContain(created.private_key!);

      const mine = generateKeyPair();
      const own = await call(
        'POST',
        '/v1/vpn-peers',
        {
          name: 'site',
          project: 'vpa',
          vpn_network: 'office',
          public_key: mine.publicKey,
          subnets: ['192.168.77.0/24'],
          endpoint: 'site.example.org:51820',
        },
        userToken,
      );
      expect(own.status, JSON.stringify(own.body)).toBe(201);
      expect(own.body.private_key).toBeNull();
      expect(own.body.peer).toMatchObject({ ipv6: 'fd50::3/128', subnets: ['192.168.77.0/24'] });

      const body = (name: string, extra: object) => ({ name, project: 'vpa', vpn_network: 'office', ...extra });
      for (const bad of ['not-a-key', `${mine.publicKey.slice(0, 43)}`, 'A'.repeat(44), `${'A'.repeat(42)}B=`])
        await refused('vpn_key_invalid', 'POST', '/v1/vpn-peers', body('bad', { public_key: bad }), userToken);
      await refused(
        'vpn_key_conflict',
        'POST',
        '/v1/vpn-peers',
        body('dup', { public_key: mine.publicKey }),
        userToken,
      );
      await refused('vpn_key_conflict', 'POST', '/v1/vpn-peers', body('gw', { public_key: net.public_key }), userToken);
      // Another tenant cannot take the key either (one key, one peer).
      await call(
        'POST',
        '/v1/vpn-peers',
        { name: 'x', project: 'vpb', vpn_network: 'office', public_key: mine.publicKey },
        otherToken,
      ).then((r) => expectError(r, 'vpn_key_conflict'));
      for (const subnets of [
        ['192.168.77.128/25'],
        ['10.31.0.0/16'],
        ['fd50:0:5::/64'],
        ['10.40.0.0/24', '10.40.0.0/23'],
      ])
        await refused('vpn_prefix_overlap', 'POST', '/v1/vpn-peers', body('s2', { subnets }), userToken);
      await refused('validation_failed', 'POST', '/v1/vpn-peers', body('s3', { subnets: ['10.40.0.1/24'] }), userToken);

      // The gateway gets one interface per VPN network, with every peer and what its peers may reach.
      const desired = await cp.app.services.vpn.desiredForHost(gateway);
      expect(desired.map((d) => [d.project, d.listen_port, d.addresses])).toEqual([
        ['vpa', 51820, ['fd50::1/48', '10.250.0.1/24']],
        ['vpb', 51821, ['fd50:0:1::1/48', '10.250.1.1/24']],
      ]);
      expect(desired[0]!.peers.map((p) => p.allowed_ips)).toEqual([
        ['fd50::2/128', '10.250.0.2/32'],
        ['fd50::3/128', '10.250.0.3/32', '192.168.77.0/24'],
      ]);
      expect(desired[0]!.peers.map((p) => p.endpoint)).toEqual([null, 'site.example.org:51820']);
      expect(desired[0]!.reach).toContain('10.31.0.0/24');
      expect(desired[0]!.reach).toContain('192.168.77.0/24');
      expect(desired[0]!.reach).not.toContain('10.32.0.0/24');
      const pub = execFileSync('wg', ['pubkey'], { input: `${desired[0]!.private_key}\n` })
        .toString()
        .trim();
      expect(pub).toBe(net.public_key);
      // The gateway's private key is stored sealed, not in the clear.
      const rows = await vpnRows(cp);
      expect(JSON.stringify(rows)).not.toContain(desired[0]!.private_key);

      // Removing a peer frees its address for the next.
      expect((await call('DELETE', `/v1/vpn-peers/phone?project=vpa`, undefined, userToken)).status).toBe(204);
      const again = await call('POST', '/v1/vpn-peers', body('tablet', {}), userToken);
      expect(again.body.peer.ipv6).toBe('fd50::2/128');
    });

    it('refuses a VPN network when the pool has no prefix left, and counts VPN networks and peers in quotas', async () => {
      const small = await call('POST', '/v1/vpn-pools', {
        name: 'tiny',
        ipv6: 'fd70::/63',
        network_prefix: 64,
        hosts: ['gw-1'],
        listen_port: 52000,
        endpoint: '2001:db8::1',
      });
      expect(small.status, JSON.stringify(small.body)).toBe(201);
      for (const n of ['t1', 't2']) {
        const r = await call('POST', '/v1/vpn-networks', { name: n, project: 'vpb', pool: 'tiny' }, otherToken);
        expect(r.status, JSON.stringify(r.body)).toBe(201);
      }
      expect((await call('GET', '/v1/vpn-networks/t2?project=vpb', undefined, otherToken)).body.endpoint).toBe(
        '[2001:db8::1]:52001',
      );
      await refused(
        'vpn_pool_exhausted',
        'POST',
        '/v1/vpn-networks',
        { name: 't3', project: 'vpb', pool: 'tiny' },
        otherToken,
      );
      expect((await call('DELETE', '/v1/vpn-networks/t1?project=vpb', undefined, otherToken)).status).toBe(204);
      const reuse = await call('POST', '/v1/vpn-networks', { name: 't4', project: 'vpb', pool: 'tiny' }, otherToken);
      expect(reuse.body.ipv6).toBe('fd70::/64');
      expectError(await call('DELETE', '/v1/vpn-pools/tiny'), 'in_use');

      expect((await call('PUT' as 'POST', '/v1/projects/vpb/limits', { vpn_networks: 3, vpn_peers: 1 })).status).toBe(
        200,
      );
      await refused(
        'quota_exceeded',
        'POST',
        '/v1/vpn-networks',
        { name: 't5', project: 'vpb', pool: 'tiny' },
        otherToken,
      );
      expect(
        (await call('POST', '/v1/vpn-peers', { name: 'p1', project: 'vpb', vpn_network: 't4' }, otherToken)).status,
      ).toBe(201);
      await refused(
        'quota_exceeded',
        'POST',
        '/v1/vpn-peers',
        { name: 'p2', project: 'vpb', vpn_network: 't4' },
        otherToken,
      );
      const usage = await call('GET', '/v1/projects/vpb/usage', undefined, otherToken);
      expect(JSON.stringify(usage.body)).toMatch(/vpn_networks/);
    });
  });
}
