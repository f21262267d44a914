import type {
  VpnNetworkCreate,
  VpnNetworkPatch,
  VpnNetworkStats,
  VpnPeerCreate,
  VpnPeerCreated,
  VpnPoolCreate,
} from '@floe/api';
import type { FloeClient } from '@floe/client';
import { describe, expect, it } from 'vitest';
import { runWithClient } from '../testing.js';

const CONFIG =
  '[Interface]\nPrivateKey = k\nAddress = fd50::2/128\n\n[Peer]\nPublicKey = g\nEndpoint = vpn.example.org:51820\nAllowedIPs = fd50::/48\nPersistentKeepalive = 25\n';
const T = '2026-01-01T00:00:00.000Z';
const PEER = {
  id: 'vpeer_1',
  name: 'laptop',
  project: 'shop',
  labels: {},
  metadata: {},
  revision: 1,
  created_at: T,
  updated_at: T,
  vpn_network: 'vnet_1',
  public_key: 'p'.repeat(43) + '=',
  ipv6: 'fd50::2/128',
  ipv4: '10.250.0.2/32',
  subnets: [],
  endpoint: null,
};

const NOW = Date.parse('2026-01-01T12:00:00.000Z');
const STATS: VpnNetworkStats = {
  vpn_network: 'vnet_1',
  time: '2026-01-01T12:00:00.000Z',
  gateways: { total: 2, answered: 1 },
  peers: [
    {
      peer: 'vpeer_1',
      name: 'laptop',
      public_key: PEER.public_key,
      endpoint: '198.51.100.7:40001',
      latest_handshake: '2026-01-01T11:59:18.000Z',
      handshake_age_seconds: 42,
      rx_bytes: 1_288_490,
      tx_bytes: 980,
    },
    {
      peer: 'vpeer_2',
      name: 'phone',
      public_key: 'q'.repeat(43) + '=',
      endpoint: null,
      latest_handshake: null,
      handshake_age_seconds: null,
      rx_bytes: 0,
      tx_bytes: 0,
    },
  ],
};

function fake() {
  const sent: {
    pools: VpnPoolCreate[];
    networks: VpnNetworkCreate[];
    peers: VpnPeerCreate[];
    deleted: string[];
    updates: [string, VpnNetworkPatch, unknown][];
    stats: [string, unknown][];
  } = {
    pools: [],
    networks: [],
    peers: [],
    deleted: [],
    updates: [],
    stats: [],
  };
  const client = {
    close: () => undefined,
    vpnPools: {
      create: (b: VpnPoolCreate) => {
        sent.pools.push(b);
        return Promise.resolve({ id: 'vpool_1', name: b.name, status: { networks: 0, capacity: 256 } });
      },
    },
    vpnNetworks: {
      create: (b: VpnNetworkCreate) => {
        sent.networks.push(b);
        return Promise.resolve({
          id: 'vnet_1',
          name: b.name,
          ipv6: 'fd50::/48',
          ipv4: null,
          endpoint: 'vpn.example.org:51820',
        });
      },
      list: () =>
        Promise.resolve({
          items: [
            {
              name: 'office',
              ipv6: 'fd50::/48',
              ipv4: '10.250.0.0/24',
              endpoint: 'vpn.example.org:51820',
              status: { peers: 2 },
              created_at: T,
            },
          ],
          next_cursor: null,
        }),
      delete: (id: string) => {
        sent.deleted.push(id);
        return Promise.resolve();
      },
      update: (id: string, patch: VpnNetworkPatch, options: unknown) => {
        sent.updates.push([id, patch, options]);
        return Promise.resolve({
          name: 'office',
          revision: 3,
          spec: { pool: 'vpool_1', networks: patch.spec?.networks ?? ['net_1'] },
        });
      },
      stats: (id: string, options: unknown): Promise<VpnNetworkStats> => {
        sent.stats.push([id, options]);
        return Promise.resolve(STATS);
      },
    },
    vpnPeers: {
      create: (b: VpnPeerCreate): Promise<VpnPeerCreated> => {
        sent.peers.push(b);
        return Promise.resolve({
          peer: PEER,
          private_key: b.public_key === undefined ? 'k' : null,
          config: CONFIG,
          qr_png: '',
        });
      },
      config: () => Promise.resolve(CONFIG.replace('PrivateKey = k', 'PrivateKey = <your private key>')),
      list: () => Promise.resolve({ items: [PEER], next_cursor: null }),
    },
  } as unknown as FloeClient;
  return { client, sent };
}

describe('floe vpn', () => {
  it('creates a VPN network from a pool, connected to networks, and lists them', async () => {
    const { client, sent } = fake();
    const run = await runWithClient(
      ['vpn', 'create', 'office', '--pool', 'edge', '--network', 'lan', '--project', 'shop'],
      client,
    );
    expect(run.code, run.err).toBe(0);
    expect(sent.networks).toEqual([{ name: 'office', pool: 'edge', project: 'shop', networks: ['lan'] }]);
    expect(run.out).toContain('VPN network office created (vnet_1, fd50::/48, endpoint vpn.example.org:51820)');
    const ls = await runWithClient(['vpn', 'ls'], client);
    expect(ls.out).toMatch(/office\s+fd50::\/48\s+10\.250\.0\.0\/24\s+vpn\.example\.org:51820\s+2/);
    expect((await runWithClient(['vpn', 'create', 'office'], client)).code).toBe(2);
  });

  it('adds a peer and prints its file once with the generated key and a terminal QR code', async () => {
    const { client, sent } = fake();
    const run = await runWithClient(['vpn', 'peer', 'add', 'office', 'laptop'], client);
    expect(run.code, run.err).toBe(0);
    expect(sent.peers).toEqual([{ name: 'laptop', vpn_network: 'office' }]);
    expect(run.err).toContain('shown this once');
    expect(run.out).toContain(CONFIG);
    expect(run.out).toMatch(/[▀▄█]/);
    const own = await runWithClient(
      [
        'vpn',
        'peer',
        'add',
        'office',
        'site',
        '--public-key',
        'x'.repeat(43) + '=',
        '--subnet',
        '192.168.20.0/24',
        '--no-qr',
      ],
      client,
    );
    expect(own.code, own.err).toBe(0);
    expect(sent.peers[1]).toEqual({
      name: 'site',
      vpn_network: 'office',
      public_key: 'x'.repeat(43) + '=',
      subnets: ['192.168.20.0/24'],
    });
    expect(own.err).toContain('put your private key in the PrivateKey line');
    expect(own.out).toBe(CONFIG);
    expect(own.out).not.toMatch(/[▀▄█]/);
  });

  it('prints the config again, lists peers, removes a VPN network with --yes and creates pools', async () => {
    const { client, sent } = fake();
    const conf = await runWithClient(['vpn', 'peer', 'config', 'laptop', '--no-qr'], client);
    expect(conf.out).toContain('PrivateKey = <your private key>');
    const ls = await runWithClient(['vpn', 'peer', 'ls'], client);
    expect(ls.out).toMatch(/laptop\s+fd50::2\/128\s+10\.250\.0\.2\/32\s+-/);
    expect((await runWithClient(['vpn', 'rm', 'office'], client)).code).not.toBe(0);
    expect((await runWithClient(['vpn', 'rm', 'office', '--yes'], client)).code).toBe(0);
    expect(sent.deleted).toEqual(['office']);
    const pool = await runWithClient(
      [
        'vpn',
        'pool',
        'create',
        'edge',
        '--ipv6',
        'fd50::/40',
        '--network-prefix',
        '48',
        '--host',
        'gw-1',
        '--endpoint',
        'vpn.example.org',
      ],
      client,
    );
    expect(pool.code, pool.err).toBe(0);
    expect(sent.pools).toEqual([
      { name: 'edge', ipv6: 'fd50::/40', network_prefix: 48, hosts: ['gw-1'], endpoint: 'vpn.example.org' },
    ]);
    expect(pool.out).toContain('room for 256 VPN networks');
  });

  it("shows each peer's last handshake age and transfer, and says when a gateway did not answer", async () => {
    const { client, sent } = fake();
    const run = await runWithClient(['vpn', 'stats', 'office', '--project', 'shop'], client, { now: NOW });
    expect(run.code, run.err).toBe(0);
    expect(sent.stats).toEqual([['office', { project: 'shop' }]]);
    const lines = run.out.split('\n');
    expect(lines[0]).toMatch(/^PEER\s+ENDPOINT\s+HANDSHAKE\s+RX\s+TX$/);
    expect(lines[1]).toMatch(/^laptop\s+198\.51\.100\.7:40001\s+42s ago\s+1\.2 MiB\s+980 B$/);
    expect(lines[2]).toMatch(/^phone\s+-\s+never\s+0 B\s+0 B$/);
    expect(run.out).toContain('(1 of 2 gateways answered)');
    const json = await runWithClient(['vpn', 'stats', 'office', '-o', 'json'], client, { now: NOW });
    expect(JSON.parse(json.out)).toEqual(STATS);
  });

  it('changes the connected networks and labels, and refuses an update that says nothing', async () => {
    const { client, sent } = fake();
    const run = await runWithClient(
      ['vpn', 'update', 'office', '--network', 'lan', '--network', 'lab', '--label', 'team=ops', '--label', 'old-'],
      client,
    );
    expect(run.code, run.err).toBe(0);
    expect(sent.updates[0]!.slice(0, 2)).toEqual([
      'office',
      { spec: { networks: ['lan', 'lab'] }, labels: { team: 'ops', old: null } },
    ]);
    expect(run.out).toContain('VPN network office updated (revision 3, 2 connected networks)');
    expect(run.err).toContain('floe vpn peer config');
    const none = await runWithClient(['vpn', 'update', 'office', '--disconnect'], client);
    expect(none.code, none.err).toBe(0);
    expect(sent.updates[1]![1]).toEqual({ spec: { networks: [] } });
    expect((await runWithClient(['vpn', 'update', 'office'], client)).code).toBe(2);
    expect((await runWithClient(['vpn', 'update', 'office', '--disconnect', '--network', 'lan'], client)).code).toBe(2);
    expect(sent.updates).toHaveLength(2);
  });
});
