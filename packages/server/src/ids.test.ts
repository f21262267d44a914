import { describe, expect, it } from 'vitest';
import { isIdOf, newId } from './ids.js';

describe('newId', () => {
  it('makes prefixed ids that match the API pattern', () => {
    const id = newId('instance');
    expect(id).toMatch(/^inst_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(isIdOf('instance', id)).toBe(true);
    expect(isIdOf('image', id)).toBe(false);
    expect(isIdOf('instance', 'web-1')).toBe(false);
  });

  it('sorts ids in creation order, also within one millisecond', () => {
    const ids = Array.from({ length: 2000 }, () => newId('operation', 1_700_000_000_000));
    const later = newId('operation', 1_700_000_000_001);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(later > ids[ids.length - 1]!).toBe(true);
  });
});
