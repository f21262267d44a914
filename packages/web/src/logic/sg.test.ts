import { describe, expect, it } from 'vitest';
import { nicRequests, portText, rateForm, rateFromForm, remoteText, ruleFromForm, type RuleForm } from './sg.js';

const form = (patch: Partial<RuleForm>): RuleForm => ({
  direction: 'ingress',
  protocol: 'tcp',
  port: '',
  remote: '',
  description: '',
  ...patch,
});

describe('ruleFromForm', () => {
  it('reads a port, a range and all ports', () => {
    expect(ruleFromForm(form({ port: '22' }))).toEqual({ rule: { direction: 'ingress', protocol: 'tcp', port: '22' } });
    expect(ruleFromForm(form({ protocol: 'udp', port: ' 8000 - 8100 ' }))).toEqual({
      rule: { direction: 'ingress', protocol: 'udp', port: '8000-8100' },
    });
    expect(ruleFromForm(form({ port: '443-443' }))).toEqual({
      rule: { direction: 'ingress', protocol: 'tcp', port: '443' },
    });
    expect(ruleFromForm(form({ direction: 'egress', protocol: 'any' }))).toEqual({
      rule: { direction: 'egress', protocol: 'any' },
    });
  });
  it('refuses bad ports', () => {
    for (const port of ['0', '65536', '100-10', 'ssh', '1-2-3', '22,80'])
      expect(ruleFromForm(form({ port })), port).toHaveProperty('error');
    expect(ruleFromForm(form({ protocol: 'icmp', port: '22' }))).toEqual({ error: 'Ports only apply to tcp and udp' });
  });
  it('tells a CIDR from a group and keeps the description', () => {
    expect(ruleFromForm(form({ remote: '10.0.0.0/8', description: ' office ' }))).toEqual({
      rule: { direction: 'ingress', protocol: 'tcp', remote_cidr: '10.0.0.0/8', description: 'office' },
    });
    expect(ruleFromForm(form({ remote: '2001:db8::/32' }))).toMatchObject({ rule: { remote_cidr: '2001:db8::/32' } });
    expect(ruleFromForm(form({ remote: ' admins ' }))).toEqual({
      rule: { direction: 'ingress', protocol: 'tcp', remote_group: 'admins' },
    });
    expect(ruleFromForm(form({ remote: 'ten/8' }))).toHaveProperty('error');
  });
});

describe('rule text', () => {
  it('shows ports and peers', () => {
    expect(portText({ port_min: null, port_max: null })).toBe('all');
    expect(portText({ port_min: 22, port_max: 22 })).toBe('22');
    expect(portText({ port_min: 8000, port_max: 8100 })).toBe('8000-8100');
    const names = new Map([['g1', 'admins']]);
    expect(remoteText({ remote_cidr: '10.0.0.0/8', remote_group: null }, names)).toBe('10.0.0.0/8');
    expect(remoteText({ remote_cidr: null, remote_group: 'g1' }, names)).toBe('group admins');
    expect(remoteText({ remote_cidr: null, remote_group: 'gone' }, names)).toBe('group gone');
    expect(remoteText({ remote_cidr: null, remote_group: null }, names)).toBe('anywhere');
  });
});

describe('rate limits', () => {
  it('round-trips and clears', () => {
    expect(rateForm(null)).toEqual({ ingress_kbps: '', egress_kbps: '', ingress_pps: '', egress_pps: '' });
    const f = rateForm({ ingress_kbps: 10000, egress_pps: 500 });
    expect(f).toEqual({ ingress_kbps: '10000', egress_kbps: '', ingress_pps: '', egress_pps: '500' });
    expect(rateFromForm(f)).toEqual({ limit: { ingress_kbps: 10000, egress_pps: 500 } });
    expect(rateFromForm(rateForm(null))).toEqual({ limit: null });
  });
  it('refuses what the API refuses', () => {
    expect(rateFromForm({ ...rateForm(null), egress_kbps: '7' })).toEqual({ error: 'egress kbps is at least 8' });
    expect(rateFromForm({ ...rateForm(null), ingress_pps: '0' })).toHaveProperty('error');
    expect(rateFromForm({ ...rateForm(null), ingress_pps: '1.5' })).toHaveProperty('error');
  });
});

describe('nicRequests', () => {
  it('names the networks alone without groups and adds the groups to each NIC', () => {
    expect(nicRequests(['lan', 'dmz'], [])).toEqual(['lan', 'dmz']);
    expect(nicRequests(['lan', 'dmz'], ['web'])).toEqual([
      { network: 'lan', security_groups: ['web'] },
      { network: 'dmz', security_groups: ['web'] },
    ]);
    expect(nicRequests([], ['web'])).toEqual([]);
  });
});
