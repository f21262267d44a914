import { join } from 'node:path';
import type { NatDriver } from './areas.js';
import type { HostExec } from './host-exec.js';
import { readJsonFile, writeJsonAtomic } from '../../host/files.js';
import { natAddresses, natScript, type NatNic } from './nat-rules.js';

/**
 * The NAT area on Linux: the table of nat-rules.ts in one `nft -f`
 * transaction, then the public addresses (/32 on the NAT interface) the host
 * must answer for. The addresses it holds are kept in a file of the state
 * directory, so that after a restart it still gives back those no longer
 * wanted and touches no other address of the host.
 */
export class NftNat implements NatDriver {
  constructor(
    private readonly exec: HostExec,
    private readonly stateDir: string,
  ) {}

  private get file(): string {
    return join(this.stateDir, 'nat-addresses.json');
  }

  async applyNat(nics: readonly NatNic[]): Promise<void> {
    const want = natAddresses(nics);
    await this.exec(['nft', '-f', '-'], { input: natScript(nics) });
    const held = ((await readJsonFile<string[]>(this.file)) ?? []).filter((a) => typeof a === 'string');
    // Recorded before they are added: an address added and then forgotten by a crash is still given back later.
    await writeJsonAtomic(this.file, [...new Set([...held, ...want])].sort());
    for (const a of want) {
      const [address, dev] = a.split('@') as [string, string];
      await this.exec(['ip', 'addr', 'replace', `${address}/32`, 'dev', dev]);
    }
    for (const a of held.filter((h) => !want.includes(h))) {
      const [address, dev] = a.split('@') as [string, string];
      if (address === undefined || dev === undefined) continue;
      await this.exec(['ip', 'addr', 'del', `${address}/32`, 'dev', dev], { allowFail: true });
    }
    await writeJsonAtomic(this.file, want);
  }

  async heldAddresses(): Promise<string[]> {
    return (await readJsonFile<string[]>(this.file)) ?? [];
  }
}
