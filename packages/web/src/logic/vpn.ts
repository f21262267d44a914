/** VPN pages: names of downloaded files and lists typed in forms. */

/**
 * The file name of a peer's wg-quick config. wg-quick names the interface after the file, and interface
 * names are at most 15 characters of `[A-Za-z0-9_=+.-]`, so the name is cut and cleaned to fit.
 *
 * @example
 * configFileName('office', 'laptop') // 'office-laptop.conf'
 */
export function configFileName(vpnNetwork: string, peer: string): string {
  const clean = (s: string) => s.replace(/[^A-Za-z0-9_=+.-]/g, '-');
  let base = clean(`${vpnNetwork}-${peer}`);
  if (base.length > 15) base = clean(vpnNetwork).slice(0, 15);
  base = base.replace(/^[.-]+/, '');
  return `${base === '' ? 'wg0' : base}.conf`;
}

/**
 * The items of a comma or whitespace separated list, without blanks and duplicates.
 *
 * @example
 * splitList('gw-1, gw-2 gw-1') // ['gw-1', 'gw-2']
 */
export function splitList(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter((s) => s !== ''))];
}
