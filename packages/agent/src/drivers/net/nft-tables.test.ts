import { describe, expect, it } from 'vitest';
import { METADATA_NFT_REMOVE } from '../../metadata/nft.js';
import { removeTablesScript, renderTables } from './nft-tables.js';
import { fieldOf } from './testing.js';

describe('renderTables', () => {
  it('declares, deletes and redefines each table with its sets and chains', () => {
    expect(
      renderTables([
        {
          family: 'bridge',
          name: 'floe',
          sets: [{ name: 'allowed_v4', type: 'ipv4_addr', flags: ['interval'], elements: ['10.0.0.0/24', '10.1.0.5'] }],
          chains: [
            {
              name: 'prerouting',
              hook: 'type filter hook prerouting priority -200; policy accept;',
              rules: ['ip saddr @allowed_v4 accept'],
            },
            { name: 'empty', rules: [] },
          ],
        },
      ]),
    ).toBe(`table bridge floe
delete table bridge floe
table bridge floe {
	set allowed_v4 {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/24, 10.1.0.5 }
	}
	chain prerouting {
		type filter hook prerouting priority -200; policy accept;
		ip saddr @allowed_v4 accept
	}
	chain empty {
	}
}
`);
  });

  it('removes tables that may be absent', () => {
    expect(METADATA_NFT_REMOVE).toBe(
      'table bridge floe_meta\ndelete table bridge floe_meta\ntable inet floe_meta\ndelete table inet floe_meta\n',
    );
    expect(removeTablesScript([{ family: 'inet', name: 'x' }])).toBe('table inet x\ndelete table inet x\n');
  });

  it('refuses names that would change the script', () => {
    expect(fieldOf(() => renderTables([{ family: 'inet', name: 'a b', chains: [] }]))).toBe('table');
    expect(fieldOf(() => renderTables([{ family: 'inet', name: 'a', chains: [{ name: 'x}', rules: [] }] }]))).toBe(
      'chain',
    );
    expect(
      fieldOf(() =>
        renderTables([
          { family: 'inet', name: 'a', sets: [{ name: '1', type: 'ipv4_addr', elements: [] }], chains: [] },
        ]),
      ),
    ).toBe('set');
  });
});
