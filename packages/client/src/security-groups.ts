import type { SecurityGroup, SecurityGroupCreate, SecurityGroupPatch, SgRuleCreate } from '@floe/api';
import {
  defined,
  ListApi,
  scoped,
  type CallOptions,
  type MergePatch,
  type PostOptions,
  type UpdateOptions,
} from './calls.js';
import { segment } from './query.js';

/**
 * Security groups: `client.securityGroups`. Changes reach the hosts at once; running VMs keep
 * their open connections that the new rules still allow.
 *
 * @example
 * const web = await client.securityGroups.create({ name: 'web', project: 'shop' });
 * await client.securityGroups.addRule('web', { direction: 'ingress', protocol: 'tcp', port: '443' }, { project: 'shop' });
 */
export class SecurityGroupsApi extends ListApi<SecurityGroup> {
  /** Fetches one group by id or name. */
  get(id: string, options: CallOptions = {}): Promise<SecurityGroup> {
    return this.t.request('GET', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Creates a group, with its first rules. */
  create(body: SecurityGroupCreate, options: PostOptions = {}): Promise<SecurityGroup> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata, the description or the default verdicts. */
  update(id: string, patch: MergePatch<SecurityGroupPatch>, options: UpdateOptions = {}): Promise<SecurityGroup> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ query: scoped(options), body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /** Deletes a group; `in_use` while a NIC uses it or a rule names it. */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ query: scoped(options), signal: options.signal }));
  }
  /** Adds an allow rule; the group after. */
  addRule(id: string, rule: SgRuleCreate, options: CallOptions = {}): Promise<SecurityGroup> {
    return this.t.request(
      'POST',
      this.path(id, '/rules'),
      defined({ query: scoped(options), body: rule, signal: options.signal }),
    );
  }
  /** Removes a rule by its id; the group after. */
  removeRule(id: string, rule: string, options: CallOptions = {}): Promise<SecurityGroup> {
    return this.t.request(
      'DELETE',
      this.path(id, `/rules/${segment(rule)}`),
      defined({ query: scoped(options), signal: options.signal }),
    );
  }
}
