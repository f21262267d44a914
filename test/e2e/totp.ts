import { createHmac } from 'node:crypto';

/** RFC 6238 (SHA-1, 6 digits, 30 s), as an authenticator app computes it, from a base32 secret. */
export function totpAt(secret: string, ms: number): string {
  let bits = '';
  for (const c of secret.replace(/=+$/, ''))
    bits += 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g)!.map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(ms / 30_000)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1]! & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1_000_000).padStart(6, '0');
}

/** Wait until at least 4 s of the current 30 s TOTP step are left, so a code made now is still current when it arrives. */
export async function awayFromStepEnd(): Promise<void> {
  const into = Date.now() % 30_000;
  if (into > 26_000) await new Promise((r) => setTimeout(r, 30_000 - into + 200));
}
