import { describe, expect, it } from 'vitest';
import { formatRateLimit, parseRateLimit } from './rate-limit.js';

describe('--rate-limit', () => {
  it('reads one bandwidth for both ways, or each limit on its own', () => {
    expect(parseRateLimit('10mbit')).toEqual({ ingress_kbps: 10_000, egress_kbps: 10_000 });
    expect(parseRateLimit('in=1.5Mbit,out=500kbit,in-pps=1000,egress-pps=20')).toEqual({
      ingress_kbps: 1500,
      egress_kbps: 500,
      ingress_pps: 1000,
      egress_pps: 20,
    });
    expect(parseRateLimit('1g')).toEqual({ ingress_kbps: 1_000_000, egress_kbps: 1_000_000 });
    expect(parseRateLimit('none')).toBeNull();
  });

  it('says what it expected', () => {
    expect(() => parseRateLimit('10')).toThrow(/not a bandwidth like 10mbit/);
    expect(() => parseRateLimit('10mbps')).toThrow(/not a bandwidth/);
    expect(() => parseRateLimit('up=10mbit')).toThrow(/unknown limit "up"/);
    expect(() => parseRateLimit('in-pps=1.5')).toThrow(/whole number/);
    expect(() => parseRateLimit('1kbit')).toThrow(/lowest bandwidth is 8kbit/);
    expect(() => parseRateLimit(',')).toThrow(/give a limit/);
  });

  it('prints limits as it reads them', () => {
    const limit = { ingress_kbps: 10_000, egress_kbps: 1500, egress_pps: 20 };
    expect(formatRateLimit(limit)).toBe('in=10mbit,out=1500kbit,out-pps=20');
    expect(parseRateLimit(formatRateLimit(limit))).toEqual(limit);
    expect(formatRateLimit({ ingress_kbps: 2_000_000 })).toBe('in=2gbit');
    expect(formatRateLimit(null)).toBe('-');
    expect(formatRateLimit({})).toBe('-');
  });
});
