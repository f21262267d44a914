import type {
  HistoryEntry,
  ListQuery,
  MeteringQuery,
  MeteringReport,
  Project,
  ProjectCreate,
  ProjectLimits,
  ProjectPatch,
  PageOf,
  ProjectUsage,
  QuotaLimitsChange,
  Token,
  TokenCreate,
  TokenCreated,
} from '@floe/api';
import { defined, ListApi, type CallOptions, type MergePatch, type PostOptions, type UpdateOptions } from './calls.js';

/**
 * Projects (tenants): `client.projects`.
 *
 * @example
 * const p = await client.projects.create({ name: 'shop', description: 'web shop' });
 * await client.projects.update('shop', { labels: { team: 'web' } });
 */
export class ProjectsApi extends ListApi<Project> {
  /** Fetches one project by id or name. */
  get(id: string, options: CallOptions = {}): Promise<Project> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a project. */
  create(body: ProjectCreate, options: PostOptions = {}): Promise<Project> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Changes labels, metadata or description (JSON merge patch). */
  update(id: string, patch: MergePatch<ProjectPatch>, options: UpdateOptions = {}): Promise<Project> {
    return this.t.request(
      'PATCH',
      this.path(id),
      defined({ body: patch, ifMatch: options.ifMatch, signal: options.signal }),
    );
  }
  /**
   * What the project's resources held over [from, to): quantity × seconds per dimension (and per
   * resource or UTC day with `group_by`), e.g. `{ from: '2026-12-01T00:00:00Z', to: '2027-01-01T00:00:00Z', group_by: 'resource' }`.
   */
  metering(id: string, query: Omit<MeteringQuery, 'format'>, options: CallOptions = {}): Promise<MeteringReport> {
    return this.t.request('GET', `${this.path(id)}/metering`, defined({ query, signal: options.signal }));
  }
  /** What the project and its sub-projects allocate against its limits, per dimension. */
  usage(id: string, options: CallOptions = {}): Promise<ProjectUsage> {
    return this.t.request('GET', `${this.path(id)}/usage`, defined({ signal: options.signal }));
  }
  /** The project's own limits. */
  limits(id: string, options: CallOptions = {}): Promise<ProjectLimits> {
    return this.t.request('GET', `${this.path(id)}/limits`, defined({ signal: options.signal }));
  }
  /** Changes the project's limits (null removes one): admins, or owners of its parent. */
  setLimits(id: string, change: QuotaLimitsChange, options: CallOptions = {}): Promise<ProjectLimits> {
    return this.t.request('PUT', `${this.path(id)}/limits`, defined({ body: change, signal: options.signal }));
  }
  /** One page of the project's change history (creation, changes, limits), oldest first. */
  history(
    id: string,
    query: Omit<ListQuery, 'label'> = {},
    options: { signal?: AbortSignal } = {},
  ): Promise<PageOf<HistoryEntry>> {
    return this.t.request('GET', `${this.path(id)}/history`, defined({ query, signal: options.signal }));
  }
  /** Deletes an empty project (`in_use` otherwise). */
  async delete(id: string, options: CallOptions = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
}

/**
 * API tokens: `client.tokens`. The secret is returned once, by `create`.
 *
 * @example
 * const { token, secret } = await client.tokens.create({ name: 'ci', projects: ['shop'], expires_in_days: 30 });
 * const expired = (await client.tokens.listAll()).filter((t) => t.state === 'expired');
 */
export class TokensApi extends ListApi<Token> {
  /** Fetches one token by id, revoked or not; `state` says whether it is `active`, `expired` or `revoked`. */
  get(id: string, options: CallOptions = {}): Promise<Token> {
    return this.t.request('GET', this.path(id), defined({ signal: options.signal }));
  }
  /** Creates a token; the answer holds its secret, which is never shown again. */
  create(body: TokenCreate, options: PostOptions = {}): Promise<TokenCreated> {
    return this.t.request('POST', this.base, defined({ body, ...options }));
  }
  /** Revokes a token. */
  async delete(id: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.t.request('DELETE', this.path(id), defined({ signal: options.signal }));
  }
}
