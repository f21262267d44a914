import { createCipheriv, createDecipheriv, generateKeyPairSync, randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { FloeError } from '@floe/api';

/*
 * WireGuard keys: X25519 pairs made by node:crypto, public keys checked, and the gateways' private keys
 * sealed with AES-256-GCM under a secret of the control plane before they are stored.
 */

/** A WireGuard key pair, both halves as the 44-character base64 WireGuard uses. */
export interface KeyPair {
  readonly privateKey: string;
  readonly publicKey: string;
}

const b64 = (base64url: string) => Buffer.from(base64url, 'base64url').toString('base64');

/** A fresh X25519 key pair. */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const priv = privateKey.export({ format: 'jwk' });
  const pub = publicKey.export({ format: 'jwk' });
  return { privateKey: b64(priv.d!), publicKey: b64(pub.x!) };
}

/** A public key as WireGuard writes one: 32 bytes of canonical base64; vpn_key_invalid otherwise. */
export function checkPublicKey(key: string, field = 'public_key'): string {
  const ok = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/.test(key) && Buffer.from(key, 'base64').length === 32;
  if (!ok)
    throw new FloeError(
      'vpn_key_invalid',
      'a WireGuard public key is 32 bytes in base64: 44 characters ending in "=" (as `wg pubkey` prints)',
      { field },
    );
  return key;
}

/** Seals and opens secrets with a 32-byte key (`v1:` iv, tag and ciphertext in base64). */
export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error('a secret box key has 32 bytes');
  }

  /** The key in `file`, made (mode 0600) when it does not exist yet. */
  static fromFile(file: string): SecretBox {
    let key: Buffer;
    try {
      key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      key = randomBytes(32);
      mkdirSync(dirname(file), { recursive: true });
      try {
        writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
      } catch (raced) {
        // Another control plane on this data directory made it first: use theirs.
        if ((raced as NodeJS.ErrnoException).code !== 'EEXIST') throw raced;
        key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
      }
      chmodSync(file, 0o600);
    }
    return new SecretBox(key);
  }

  /** Encrypt. */
  seal(plain: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    const body = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return `v1:${Buffer.concat([iv, c.getAuthTag(), body]).toString('base64')}`;
  }

  /** Decrypt what `seal` made (throws when it was sealed with another key or changed). */
  open(sealed: string): string {
    if (!sealed.startsWith('v1:')) throw new Error('not a sealed secret');
    const raw = Buffer.from(sealed.slice(3), 'base64');
    const d = createDecipheriv('aes-256-gcm', this.key, raw.subarray(0, 12));
    d.setAuthTag(raw.subarray(12, 28));
    return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
  }
}
