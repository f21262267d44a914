import type { RateLimit } from '@floe/api';
import type { RateLimitDriver } from './areas.js';
import type { FakeHost, FakeLink } from './fake.js';
import { ifbName, tapName } from './names.js';
import { checkRateLimit } from './tc.js';

/**
 * The rate limit area over a FakeHost: limits kept per tap, an IFB link while
 * what the instance sends is shaped, nothing done for a tap that is not there;
 * a tap deleted takes its limits with it, as the kernel drops its qdiscs.
 */
export class FakeRateLimiter implements RateLimitDriver {
  /** Limits by tap name, with the link they were put on (a tap made again has none). */
  private readonly limits = new Map<string, { link: FakeLink; limit: RateLimit }>();

  constructor(private readonly host: FakeHost) {}

  applyRateLimit(nicId: string, limit: RateLimit | null): Promise<boolean> {
    const want = checkRateLimit(limit);
    const tap = tapName(nicId);
    const link = this.host.links.get(tap);
    if (link === undefined) return Promise.resolve(false);
    this.limits.set(tap, { link, limit: want });
    const ifb = ifbName(nicId);
    if (want.egress_kbps !== undefined && !this.host.links.has(ifb))
      this.host.run(['ip', 'link', 'add', ifb, 'type', 'ifb']);
    if (want.egress_kbps === undefined) this.host.deleteLink(ifb);
    return Promise.resolve(true);
  }

  observeRateLimit(nicId: string): Promise<RateLimit> {
    const tap = tapName(nicId);
    const got = this.limits.get(tap);
    return Promise.resolve(got !== undefined && this.host.links.get(tap) === got.link ? { ...got.limit } : {});
  }

  clearRateLimit(nicId: string): Promise<void> {
    this.limits.delete(tapName(nicId));
    this.host.deleteLink(ifbName(nicId));
    return Promise.resolve();
  }
}
