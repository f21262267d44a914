import type { AuditQuery, AuditRecord } from '@floe/api';
import { ListApi } from './calls.js';

/**
 * The audit log (admin tokens): `client.audit`. Records come newest first; every filter narrows.
 *
 * @example
 * const { items } = await client.audit.list({ action: 'instance.', outcome: 'error', since: '2026-12-01T00:00:00Z' });
 * for await (const r of client.audit.iterate({ token: 'tok_01JB8X0Q3E6M2T9K4V7W5YB1C3' })) console.log(r.action, r.status);
 */
export class AuditApi extends ListApi<AuditRecord, AuditQuery> {}
