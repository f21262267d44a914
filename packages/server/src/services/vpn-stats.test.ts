import { describe, expect, it } from 'vitest';
import { mergeActivity } from './vpn-stats.js';

const K = (c: string) => `${c.repeat(43)}=`;
const counters = (key: string, at: number, endpoint: string | null, rx: number, tx: number) => ({
  public_key: key,
  endpoint,
  latest_handshake: at,
  rx_bytes: rx,
  tx_bytes: tx,
});

describe('VPN peer activity over gateways', () => {
  it('takes the latest handshake and its endpoint, sums transfer, and leaves out keys that are no peer', () => {
    const peers = [
      { id: 'vpeer_1', name: 'laptop', public_key: K('A') },
      { id: 'vpeer_2', name: 'phone', public_key: K('B') },
      { id: 'vpeer_3', name: 'idle', public_key: K('C') },
    ];
    const gw1 = [counters(K('A'), 1_764_000_000, '198.51.100.1:1000', 100, 200), counters(K('Z'), 1, 'x:1', 9, 9)];
    const gw2 = [
      counters(K('A'), 1_764_000_090, '198.51.100.2:2000', 10, 20),
      counters(K('B'), 0, '203.0.113.5:51820', 0, 0),
      counters(K('C'), 0, null, 0, 0),
    ];
    expect(mergeActivity(peers, [gw1, gw2], 1_764_000_100_500)).toEqual([
      {
        peer: 'vpeer_1',
        name: 'laptop',
        public_key: K('A'),
        endpoint: '198.51.100.2:2000',
        latest_handshake: '2025-11-24T16:01:30.000Z',
        handshake_age_seconds: 10,
        rx_bytes: 110,
        tx_bytes: 220,
      },
      {
        peer: 'vpeer_2',
        name: 'phone',
        public_key: K('B'),
        endpoint: '203.0.113.5:51820',
        latest_handshake: null,
        handshake_age_seconds: null,
        rx_bytes: 0,
        tx_bytes: 0,
      },
      {
        peer: 'vpeer_3',
        name: 'idle',
        public_key: K('C'),
        endpoint: null,
        latest_handshake: null,
        handshake_age_seconds: null,
        rx_bytes: 0,
        tx_bytes: 0,
      },
    ]);
    expect(mergeActivity(peers.slice(0, 1), [], 0)[0]).toMatchObject({ latest_handshake: null, rx_bytes: 0 });
  });
});
