import { EqualityFilter, FilterParser } from 'ldapts';
import { describe, expect, it } from 'vitest';
import { escapeDnValue, escapeFilterValue, fillTemplate } from './ldap-escape.js';

describe('LDAP filter escaping (RFC 4515)', () => {
  it.each([
    ['alice', 'alice'],
    ['*', '\\2a'],
    ['*)(uid=*', '\\2a\\29\\28uid=\\2a'],
    ['a\\b', 'a\\5cb'],
    ['a\u0000b', 'a\\00b'],
    ['(|(uid=x))', '\\28|\\28uid=x\\29\\29'],
    ['Lučić ✓', 'Lučić ✓'],
  ])('%j becomes %j', (raw, escaped) => {
    expect(escapeFilterValue(raw)).toBe(escaped);
  });

  it('keeps any value one literal equality match when the LDAP library parses the filter', () => {
    for (const raw of ['*', '(', ')', '\\', '\u0000', 'x*y(z)\\', '*)(uid=*', '*)(|(objectClass=*']) {
      const f = FilterParser.parseString(`(uid=${escapeFilterValue(raw)})`);
      expect(f).toBeInstanceOf(EqualityFilter);
      expect((f as EqualityFilter).value).toBe(raw);
    }
  });
});

describe('DN value escaping (RFC 4514)', () => {
  it.each([
    ['alice', 'alice'],
    ['a,b', 'a\\,b'],
    ['a+b=c', 'a\\+b\\=c'],
    ['"q";<x>', '\\"q\\"\\;\\<x\\>'],
    ['back\\slash', 'back\\\\slash'],
    ['#hash', '\\#hash'],
    [' lead', '\\ lead'],
    ['trail ', 'trail\\ '],
    ['nul\u0000', 'nul\\00'],
    ['uid=admin,dc=x', 'uid\\=admin\\,dc\\=x'],
  ])('%j becomes %j', (raw, escaped) => {
    expect(escapeDnValue(raw)).toBe(escaped);
  });
});

describe('templates', () => {
  it('fills each placeholder escaped and leaves unknown ones', () => {
    expect(fillTemplate('(&(uid={username})(x={other}))', { username: '*' }, escapeFilterValue)).toBe(
      '(&(uid=\\2a)(x={other}))',
    );
    expect(fillTemplate('uid={username},ou=people', { username: 'a,b' }, escapeDnValue)).toBe('uid=a\\,b,ou=people');
  });
});
