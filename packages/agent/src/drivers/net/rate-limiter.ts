import type { RateLimit } from '@floe/api';
import type { RateLimitDriver } from './areas.js';
import type { HostExec } from './host-exec.js';
import { ifbName, tapName } from './names.js';
import { bandwidthSteps, checkRateLimit, parsePps, parseTbfKbps, ppsScript, rateTable } from './tc.js';

/**
 * The rate limit area on Linux: tc and ip for bandwidths, one `nft -f`
 * transaction for packet rates (tc.ts says why each). It looks whether the tap
 * and the IFB device exist first, so it never creates a limit on a tap that is
 * not there.
 */
export class TcRateLimiter implements RateLimitDriver {
  constructor(private readonly exec: HostExec) {}

  private async exists(dev: string): Promise<boolean> {
    return (await this.exec(['ip', '-j', 'link', 'show', 'dev', dev], { allowFail: true })).code === 0;
  }

  async applyRateLimit(nicId: string, limit: RateLimit | null): Promise<boolean> {
    const want = checkRateLimit(limit);
    if (!(await this.exists(tapName(nicId)))) return false;
    for (const step of bandwidthSteps(nicId, want, await this.exists(ifbName(nicId))))
      await this.exec(step.argv, step.allowFail === true ? { allowFail: true } : {});
    await this.exec(['nft', '-f', '-'], { input: ppsScript(nicId, want) });
    return true;
  }

  async observeRateLimit(nicId: string): Promise<RateLimit> {
    const tap = tapName(nicId);
    const out: RateLimit = {};
    const toVm = await this.exec(['tc', '-j', 'qdisc', 'show', 'dev', tap], { allowFail: true });
    if (toVm.code !== 0) return out;
    const ingress = parseTbfKbps(toVm.stdout);
    if (ingress !== undefined) out.ingress_kbps = ingress;
    // The IFB shapes what the instance sends only while the tap's ingress is redirected to it.
    const filters = await this.exec(['tc', '-j', 'filter', 'show', 'dev', tap, 'ingress'], { allowFail: true });
    if (filters.code === 0 && filters.stdout.includes(`"to_dev":"${ifbName(nicId)}"`)) {
      const fromVm = await this.exec(['tc', '-j', 'qdisc', 'show', 'dev', ifbName(nicId)], { allowFail: true });
      const egress = fromVm.code === 0 ? parseTbfKbps(fromVm.stdout) : undefined;
      if (egress !== undefined) out.egress_kbps = egress;
    }
    const t = rateTable(nicId);
    const pps = await this.exec(['nft', '-j', 'list', 'table', t.family, t.name], { allowFail: true });
    if (pps.code === 0) Object.assign(out, parsePps(pps.stdout));
    return out;
  }

  async clearRateLimit(nicId: string): Promise<void> {
    const ifb = ifbName(nicId);
    if (await this.exists(ifb)) await this.exec(['ip', 'link', 'del', ifb]);
    await this.exec(['nft', '-f', '-'], { input: ppsScript(nicId, {}) });
  }
}
