import type {
  VpnNetwork,
  VpnNetworkCreate,
  VpnNetworkPatch,
  VpnNetworkStats,
  VpnPeer,
  VpnPeerCreate,
  VpnPeerCreated,
  VpnPeerListQuery,
  VpnPool,
  VpnPoolCreate,
} from '@floe/api';
import {
  defined,
  ListApi,
  scoped,
  type CallOptions,
  type MergePatch,
  type PostOptions,
  type UpdateOptions,
} from './calls.js';

/**
 * VPN pools (operators create them; every user may list them): `client.vpnPools`.
 *
 * @example
 * await client.vpnPools.create({ name: 'edge', ipv6: 'fd50::/40', network_prefix: 48, hosts: ['gw-1'], endpoint: 'vpn.example.org' });
 */
export class VpnPoolsApi extends ListApi<VpnPool> {
  /** Fetches one pool by id or name. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<VpnPool> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a pool (admin). */
  create(body: VpnPoolCreate, options: PostOptions = {}): Promise<VpnPool> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Deletes a pool without VPN networks (admin). */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
}

/**
 * VPN networks of projects: `client.vpnNetworks`.
 *
 * @example
 * await client.vpnNetworks.create({ name: 'office', project: 'shop', pool: 'edge', networks: ['lan'] });
 */
export class VpnNetworksApi extends ListApi<VpnNetwork> {
  /** Fetches one VPN network by id or name. */
  get(id: string, options: CallOptions = {}): Promise<VpnNetwork> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Takes the next free prefix of a pool. */
  create(body: VpnNetworkCreate, options: PostOptions = {}): Promise<VpnNetwork> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata or the connected networks (`spec.networks`, the whole list); peers keep their sessions. */
  update(id: string, patch: MergePatch<VpnNetworkPatch>, options: UpdateOptions = {}): Promise<VpnNetwork> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ query: scoped(options), body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Every peer's latest handshake and transfer, read from the gateways (`host_offline` when none is connected). */
  stats(id: string, options: CallOptions = {}): Promise<VpnNetworkStats> {
    return this.t.request('GET', this.path(id, '/stats'), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Deletes a VPN network and its peers. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
}

/**
 * Peers of VPN networks: `client.vpnPeers`.
 *
 * @example
 * const { config, private_key } = await client.vpnPeers.create({ name: 'laptop', project: 'shop', vpn_network: 'office' });
 */
export class VpnPeersApi extends ListApi<VpnPeer, VpnPeerListQuery> {
  /** Fetches one peer by id or name. */
  get(id: string, options: CallOptions = {}): Promise<VpnPeer> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Adds a peer; without `public_key` the answer holds its generated private key, this once. */
  create(body: VpnPeerCreate, options: PostOptions = {}): Promise<VpnPeerCreated> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Removes a peer. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** The peer's wg-quick file (with a placeholder for the private key floe does not keep). */
  async config(id: string, options: CallOptions = {}): Promise<string> {
    const s = await this.t.openStream(
      `${this.path(id)}/config`,
      defined({ query: scoped(options), signal: options.signal }),
    );
    const chunks: Buffer[] = [];
    for await (const c of s.body) chunks.push(Buffer.from(c as Buffer));
    return Buffer.concat(chunks).toString('utf8');
  }
}
