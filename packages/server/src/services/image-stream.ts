import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FloeError } from '@floe/api';

/** sha256 (hex) of a file. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** True when `path` exists. */
export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

// Stream `body` into a new file, hashing and counting; more than `maxBytes` fails with payload_too_large.
// The body is piped, not owned: on failure it is left paused (the caller answers, then closes the
// connection) instead of destroyed, which would also destroy the socket the answer must go out on.
export async function receive(
  body: Readable,
  file: string,
  maxBytes: number,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      size += chunk.length;
      if (size > maxBytes) {
        done(
          new FloeError('payload_too_large', `the image file is larger than ${maxBytes} bytes`, {
            limit_bytes: maxBytes,
          }),
        );
        return;
      }
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const written = pipeline(meter, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  // The client went away: a failed request, not a server fault.
  const interrupted = () =>
    new FloeError('validation_failed', 'the upload was interrupted before the file was complete', { field: 'body' });
  const onError = () => meter.destroy(interrupted());
  const onClose = () => {
    if (!body.readableEnded) meter.destroy(interrupted());
  };
  body.on('error', onError);
  body.on('close', onClose);
  body.pipe(meter);
  try {
    await written;
  } finally {
    body.off('error', onError);
    body.off('close', onClose);
    body.unpipe(meter);
  }
  return { sha256: hash.digest('hex'), size };
}
