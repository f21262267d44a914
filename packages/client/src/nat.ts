import type {
  FloatingIp,
  FloatingIpAttach,
  FloatingIpChanged,
  FloatingIpCreate,
  HistoryEntry,
  PageOf,
  PortForward,
  PortForwardCreate,
} from '@floe/api';
import {
  defined,
  ListApi,
  scoped,
  waitTimeout,
  type CallOptions,
  type OperationCallOptions,
  type PostOptions,
} from './calls.js';

/**
 * Floating IPs: `client.floatingIps`. An address of a public network's pool,
 * attached one to one to an instance's NIC and moved in one call.
 *
 * @example
 * const fip = await client.floatingIps.create({ name: 'web', project: 'shop', instance: 'web-1' });
 * const { operation } = await client.floatingIps.attach(fip.id, { instance: 'web-2' }, { project: 'shop' });
 * await client.operations.wait(operation.id);
 */
export class FloatingIpsApi extends ListApi<FloatingIp> {
  /** Fetches one floating IP by id, name or address. */
  get(id: string, options: CallOptions = {}): Promise<FloatingIp> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Takes an address of a public network's pool (the only one when `network` is left out). */
  create(body: FloatingIpCreate, options: PostOptions = {}): Promise<FloatingIp> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /**
   * Attaches it to an instance's NIC, moving it from where it was: the floating IP as it now is, and
   * the operation on that instance, done once its host has the change (`wait` seconds to wait for it).
   */
  attach(id: string, body: FloatingIpAttach, options: OperationCallOptions = {}): Promise<FloatingIpChanged> {
    return this.t.request(
      'POST',
      this.path(id, '/attach'),
      defined({
        query: scoped(options, { wait: options.wait }),
        body,
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
  /** Detaches it (the project keeps the address), as an operation on the instance it leaves. */
  detach(id: string, options: OperationCallOptions = {}): Promise<FloatingIpChanged> {
    return this.t.request(
      'POST',
      this.path(id, '/detach'),
      defined({
        query: scoped(options, { wait: options.wait }),
        signal: options.signal,
        timeoutMs: waitTimeout(this.t, options.wait),
      }),
    );
  }
  /** Gives the address back to the pool; `in_use` while port forwards use it. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** One page of its change history. */
  history(
    id: string,
    query: { limit?: number; cursor?: string } = {},
    options: CallOptions = {},
  ): Promise<PageOf<HistoryEntry>> {
    return this.t.request(
      'GET',
      this.path(id, '/history'),
      defined({ query: scoped(options, query), signal: options.signal }),
    );
  }
}

/**
 * Port forwards: `client.portForwards`. A TCP or UDP port of a floating IP, or
 * of the host an instance runs on, forwarded to a port of one of its NICs.
 *
 * @example
 * await client.portForwards.create({ name: 'ssh', project: 'shop', port: 2222, instance: 'web-1', target_port: 22 });
 */
export class PortForwardsApi extends ListApi<PortForward> {
  /** Fetches one port forward by id or name. */
  get(id: string, options: CallOptions = {}): Promise<PortForward> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Forwards the port; `port_in_use` when something listens there already. */
  create(body: PortForwardCreate, options: PostOptions = {}): Promise<PortForward> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Stops forwarding the port. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
}
