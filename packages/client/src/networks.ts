import type { Network, NetworkCreate, NetworkPatch } from '@floe/api';
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
 * Networks: `client.networks`.
 *
 * @example
 * await client.networks.create({ name: 'lan', project: 'shop', ipv4: '10.10.0.0/24', ipv6: 'auto', gateway: 'host' });
 */
export class NetworksApi extends ListApi<Network> {
  /** Fetches one network by id or name (names resolve in the project, then among public networks). */
  get(id: string, options: CallOptions = {}): Promise<Network> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Creates a network (`kind: 'public'` needs an admin token). */
  create(body: NetworkCreate, options: PostOptions = {}): Promise<Network> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata, `spec.dns` or `spec.reserved`. */
  update(id: string, patch: MergePatch<NetworkPatch>, options: UpdateOptions = {}): Promise<Network> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ query: scoped(options), body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Deletes a network; `in_use` while NICs are attached to it. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
}
