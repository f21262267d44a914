import { invalid } from '../../host/validate.js';

/*
 * nftables tables as data, rendered into one `nft -f` script that declares,
 * deletes and redefines each table: applying it replaces the tables whole, in
 * one transaction, whatever was there. The firewall (ruleset.ts) and the
 * metadata service's redirections are both written this way.
 */

/** A named set of a table (addresses, MACs), for rules to match with `@name`. */
export interface NftSet {
  name: string;
  /** e.g. `ipv4_addr`, `ipv6_addr`, `ether_addr`. */
  type: string;
  /** Optional flags (`interval` for prefixes). */
  flags?: readonly string[];
  /** Elements as nft spells them; the caller has checked every one. */
  elements: readonly string[];
}

/** A chain: a base chain when `hook` is given (`type filter hook prerouting priority -200; policy accept;`). */
export interface NftChain {
  name: string;
  hook?: string;
  /** One rule per line, as nft spells them; every value in them was checked. */
  rules: readonly string[];
}

/** One table of floe's. */
export interface NftTable {
  family: 'bridge' | 'inet' | 'ip' | 'ip6' | 'netdev';
  name: string;
  sets?: readonly NftSet[];
  chains: readonly NftChain[];
}

const NAME_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

function checkName(what: string, name: string): string {
  if (!NAME_RE.test(name)) throw invalid(what, `${JSON.stringify(name)} is not an nftables ${what} name`);
  return name;
}

/** `table <family> <name>`, the name checked. */
const tableId = (t: Pick<NftTable, 'family' | 'name'>): string => `table ${t.family} ${checkName('table', t.name)}`;

/**
 * The `nft -f` script that replaces `tables` whole: each table declared (so
 * deleting it works when it is absent), deleted, and defined again with its
 * sets and chains.
 */
export function renderTables(tables: readonly NftTable[]): string {
  const out: string[] = [];
  for (const t of tables) {
    const id = tableId(t);
    out.push(id, `delete ${id}`, `${id} {`);
    for (const s of t.sets ?? []) {
      out.push(`\tset ${checkName('set', s.name)} {`, `\t\ttype ${s.type}`);
      if (s.flags !== undefined && s.flags.length > 0) out.push(`\t\tflags ${s.flags.join(', ')}`);
      if (s.elements.length > 0) out.push(`\t\telements = { ${s.elements.join(', ')} }`);
      out.push('\t}');
    }
    for (const c of t.chains) {
      out.push(`\tchain ${checkName('chain', c.name)} {`);
      if (c.hook !== undefined) out.push(`\t\t${c.hook}`);
      out.push(...c.rules.map((r) => `\t\t${r}`), '\t}');
    }
    out.push('}');
  }
  return `${out.join('\n')}\n`;
}

/** The `nft -f` script that removes `tables` (declared first, so it works when they are absent). */
export function removeTablesScript(tables: readonly Pick<NftTable, 'family' | 'name'>[]): string {
  return tables.map((t) => `${tableId(t)}\ndelete ${tableId(t)}\n`).join('');
}

/**
 * The `nft -f` script that replaces the elements of `sets` of a table in place, in one transaction:
 * each set flushed, then given its elements. The sets must exist (with the same type): otherwise
 * nftables refuses the whole script and nothing changes.
 */
export function setElementsScript(table: Pick<NftTable, 'family' | 'name'>, sets: readonly NftSet[]): string {
  const out: string[] = [];
  for (const s of sets) {
    const set = `${table.family} ${checkName('table', table.name)} ${checkName('set', s.name)}`;
    out.push(`flush set ${set}`);
    if (s.elements.length > 0) out.push(`add element ${set} { ${s.elements.join(', ')} }`);
  }
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}
