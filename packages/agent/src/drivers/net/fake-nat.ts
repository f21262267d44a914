import type { NatDriver } from './areas.js';
import { natAddresses, natScript, type NatNic } from './nat-rules.js';

/** The NAT area without a host: the script is built (and refused) as on Linux, then kept with the addresses. */
export class FakeNat implements NatDriver {
  /** The last script applied; null before the first. */
  script: string | null = null;
  private held: string[] = [];

  applyNat(nics: readonly NatNic[]): Promise<void> {
    const script = natScript(nics);
    this.held = natAddresses(nics);
    this.script = script;
    return Promise.resolve();
  }

  heldAddresses(): Promise<string[]> {
    return Promise.resolve([...this.held]);
  }
}
