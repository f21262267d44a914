import { randomBytes } from 'node:crypto';
import { ID_PREFIX, type Kind } from '@floe/api';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'; // Crockford base32

let lastTime = 0;
let lastRandom: Uint8Array = new Uint8Array(10);

/** Encode `time` (ms) into 10 and `random` (80 bits) into 16 base32 characters. */
function encode(time: number, random: Uint8Array): string {
  let out = '';
  let t = time;
  for (let i = 0; i < 10; i++) {
    out = ALPHABET[t % 32]! + out;
    t = Math.floor(t / 32);
  }
  // 80 random bits as 16 base32 characters, 5 bits each.
  let bits = 0;
  let value = 0;
  for (const byte of random) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31]!;
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  return out;
}

/** Increment an 80-bit big-endian counter in place (monotonic ids within one millisecond). */
function increment(random: Uint8Array): Uint8Array {
  const next = Uint8Array.from(random);
  for (let i = next.length - 1; i >= 0; i--) {
    if (next[i] === 255) {
      next[i] = 0;
    } else {
      next[i]! += 1;
      break;
    }
  }
  return next;
}

/**
 * A new prefixed, lexicographically sortable id (`inst_01J...`): a ULID, monotonic
 * within this process, so ids created later sort later and keyset pagination is stable.
 */
export function newId(kind: Kind, now = Date.now()): string {
  if (now <= lastTime) {
    lastRandom = increment(lastRandom);
  } else {
    lastTime = now;
    lastRandom = new Uint8Array(randomBytes(10));
  }
  return `${ID_PREFIX[kind]}_${encode(lastTime, lastRandom)}`;
}

/** True when `value` looks like an id of `kind` (else it is treated as a name). */
export function isIdOf(kind: Kind, value: string): boolean {
  return value.startsWith(`${ID_PREFIX[kind]}_`) && value.length === ID_PREFIX[kind].length + 27;
}
