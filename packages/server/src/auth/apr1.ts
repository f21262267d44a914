import { createHash } from 'node:crypto';

// The crypt(3) alphabet, least significant 6 bits first.
const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

const md5 = (...parts: Buffer[]): Buffer => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return h.digest();
};

function to64(value: number, chars: number): string {
  let out = '';
  for (let i = 0; i < chars; i++) {
    out += ITOA64[value & 0x3f];
    value >>>= 6;
  }
  return out;
}

/**
 * MD5-crypt as Apache's `htpasswd -m` writes it (`$apr1$salt$hash`; the
 * magic `$1$` gives the glibc variant). Salt: up to 8 characters before any
 * `$`. 1,000 rounds of MD5, as the format defines; weak, accepted only to read
 * existing files.
 */
export function md5Crypt(password: string, salt: string, magic: '$apr1$' | '$1$' = '$apr1$'): string {
  const s = salt.split('$')[0]!.slice(0, 8);
  const pw = Buffer.from(password, 'utf8');
  const sb = Buffer.from(s, 'utf8');
  const alt = md5(pw, sb, pw);
  const ctx = createHash('md5');
  ctx.update(pw);
  ctx.update(magic);
  ctx.update(sb);
  for (let left = pw.length; left > 0; left -= 16) ctx.update(alt.subarray(0, Math.min(left, 16)));
  // For every bit of the length: a zero byte when set, the password's first byte when clear.
  for (let i = pw.length; i > 0; i >>>= 1) ctx.update(i & 1 ? Buffer.of(0) : pw.subarray(0, 1));
  let final: Buffer = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const parts: Buffer[] = [i & 1 ? pw : final];
    if (i % 3) parts.push(sb);
    if (i % 7) parts.push(pw);
    parts.push(i & 1 ? final : pw);
    final = md5(...parts);
  }
  const f = final;
  const encoded =
    to64((f[0]! << 16) | (f[6]! << 8) | f[12]!, 4) +
    to64((f[1]! << 16) | (f[7]! << 8) | f[13]!, 4) +
    to64((f[2]! << 16) | (f[8]! << 8) | f[14]!, 4) +
    to64((f[3]! << 16) | (f[9]! << 8) | f[15]!, 4) +
    to64((f[4]! << 16) | (f[10]! << 8) | f[5]!, 4) +
    to64(f[11]!, 2);
  return `${magic}${s}$${encoded}`;
}
