import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { cloudYaml } from './cloud-yaml.js';

describe('cloudYaml', () => {
  it('quotes YAML strings so that control and separator characters survive', () => {
    expect(cloudYaml(['a"b\\c\nd'])).toBe('- "a\\"b\\\\c\\nd"\n');
    const odd = 'x\u007fy\u2028z\u0085w\ufeff';
    const text = cloudYaml([odd]);
    expect(text).toBe('- "x\\u007fy\\u2028z\\u0085w\\ufeff"\n');
    expect(parse(text, { version: '1.1' })).toEqual([odd]);
  });

  it('keeps strings that YAML 1.1 would read as numbers or booleans strings', () => {
    const value = { mac: '02:11:22:33:44:55', name: 'no', other: 'on', num: '0x10', mtu: 1500, dhcp4: false };
    const text = cloudYaml(value);
    expect(text).toBe('mac: "02:11:22:33:44:55"\nname: "no"\nother: "on"\nnum: "0x10"\nmtu: 1500\ndhcp4: false\n');
    expect(parse(text, { version: '1.1' })).toEqual(value);
  });

  it('never folds long lines (an ssh key stays on one line)', () => {
    const key = `ssh-rsa ${'A'.repeat(700)} someone@somewhere`;
    expect(cloudYaml({ keys: [key] })).toBe(`keys:\n  - "${key}"\n`);
  });
});
