import type { Host, HostPatch, JoinTokenCreate, JoinTokenCreated, MachineType, MachineTypeCreate } from '@floe/api';
import { defined, ListApi, type MergePatch, type PostOptions, type UpdateOptions } from './calls.js';

/**
 * Hosts (admin only): `client.hosts`.
 *
 * @example
 * await client.hosts.update('node-2', { spec: { schedulable: false } }); // drain
 * const { token } = await client.hosts.joinToken({ expires_in_minutes: 30 });
 */
export class HostsApi extends ListApi<Host> {
  /** Fetches one host by id or name. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<Host> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Changes labels, metadata or `spec.schedulable`. */
  update(id: string, patch: MergePatch<HostPatch>, options: UpdateOptions = {}): Promise<Host> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Removes a host record. */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a one-time token a new host's agent joins with. */
  joinToken(body: JoinTokenCreate = {}, options: PostOptions = {}): Promise<JoinTokenCreated> {
    return this.t.request('POST', `${this.base}/join-tokens`, defined({ body, ...options }));
  }
}

/**
 * Machine types (sizes): `client.machineTypes`.
 *
 * @example
 * await client.machineTypes.create({ name: 'db-16g', vcpus: 4, memory_mib: 16384, disk_gib: 100 });
 */
export class MachineTypesApi extends ListApi<MachineType> {
  /** Fetches one machine type by id or name. */
  get(id: string, options: { signal?: AbortSignal } = {}): Promise<MachineType> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a machine type (admin). */
  create(body: MachineTypeCreate, options: PostOptions = {}): Promise<MachineType> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Deletes a machine type (admin). */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
}
