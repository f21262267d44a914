import { describe, expect, it } from 'vitest';
import { choose, type Candidate } from './scheduler.js';

const host = (id: string, used: [number, number, number], capacity: [number, number] = [8, 8192]): Candidate => ({
  id,
  name: id,
  capacity: { vcpus: capacity[0], memory_mib: capacity[1] },
  used: { vcpus: used[0], memory_mib: used[1], instances: used[2] },
});

const demand = { vcpus: 1, memory_mib: 1024 };

describe('choose', () => {
  const hosts = [
    host('h-full', [8, 1024, 4]),
    host('h-half', [4, 4096, 4]),
    host('h-light', [1, 1024, 1]),
    host('h-big', [4, 4096, 3], [16, 16384]),
  ];

  it('spreads to the host least full after placement, and packs onto the fullest that fits', () => {
    expect(choose(hosts, demand, 'spread')?.id).toBe('h-light');
    expect(choose(hosts, demand, 'pack')?.id).toBe('h-half');
  });

  it('breaks ties by fewer instances, then by id, whatever the order of the candidates', () => {
    const tied = [host('h-b', [2, 2048, 2]), host('h-c', [2, 2048, 1]), host('h-a', [2, 2048, 1])];
    for (const order of [tied, [...tied].reverse(), [tied[1]!, tied[0]!, tied[2]!]]) {
      expect(choose(order, demand, 'spread')?.id).toBe('h-a');
      expect(choose(order, demand, 'pack')?.id).toBe('h-a');
    }
  });

  it('returns null when no host has room for both vCPUs and memory', () => {
    expect(choose([host('h-full', [8, 1024, 4]), host('h-mem', [1, 8192, 1])], demand, 'spread')).toBeNull();
    expect(choose([], demand, 'pack')).toBeNull();
  });
});
