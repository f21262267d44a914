import { join } from 'node:path';
import type { Logger } from 'pino';
import type { NatDriver } from './areas.js';
import type { HostExec } from './host-exec.js';
import { readJsonFile, writeJsonAtomic } from '../../host/files.js';
import {
  checkedTranslation,
  conntrackFlushes,
  natTranslations,
  nothingToDrop,
  type NatTranslation,
} from './nat-conntrack.js';
import { natAddresses, natScript, type NatNic } from './nat-rules.js';

/**
 * The NAT area on Linux: the table of nat-rules.ts in one `nft -f`
 * transaction, then the public addresses (/32 on the NAT interface) the host
 * must answer for. The addresses it holds are kept in a file of the state
 * directory, so that after a restart it still gives back those no longer
 * wanted and touches no other address of the host. Then the tracked flows
 * whose translation changed are dropped (nat-conntrack.ts), so that open flows
 * follow a floating IP that moved; the translations last applied are kept in
 * the state directory too, so that a change made across a restart is seen.
 * Dropping is best effort: without the `conntrack` tool the NAT still changes,
 * and a warning says open flows keep their old translation until they idle out.
 */
export class NftNat implements NatDriver {
  constructor(
    private readonly exec: HostExec,
    private readonly stateDir: string,
    private readonly logger?: Logger,
  ) {}

  private get file(): string {
    return join(this.stateDir, 'nat-addresses.json');
  }

  private get translationsFile(): string {
    return join(this.stateDir, 'nat-translations.json');
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
    await this.dropChangedFlows(natTranslations(nics));
  }

  /** Drop the tracked flows of the translations that changed since the last apply, then remember these. */
  private async dropChangedFlows(after: NatTranslation[]): Promise<void> {
    let before: NatTranslation[] = [];
    try {
      const read = await readJsonFile<NatTranslation[]>(this.translationsFile);
      before = Array.isArray(read) ? read.map((t, i) => checkedTranslation(t, i)) : [];
    } catch (err) {
      this.logger?.warn(
        { err },
        'the NAT translations last applied are unreadable: only flows to new addresses are dropped',
      );
    }
    for (const argv of conntrackFlushes(before, after)) {
      let r: { code: number; stderr: string };
      try {
        r = await this.exec(argv, { allowFail: true });
      } catch (err) {
        r = { code: -1, stderr: err instanceof Error ? err.message : String(err) };
      }
      if (r.code !== 0 && !nothingToDrop(r.stderr))
        this.logger?.warn(
          { command: argv.join(' '), error: r.stderr.trim() },
          'cannot drop tracked flows (is conntrack installed?): open flows keep their old translation until they idle out',
        );
    }
    await writeJsonAtomic(this.translationsFile, after);
  }

  async heldAddresses(): Promise<string[]> {
    return (await readJsonFile<string[]>(this.file)) ?? [];
  }
}
