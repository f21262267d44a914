/**
 * One Server-Sent Events message, as dispatched by {@link SseParser}.
 *
 * @example
 * const msg: SseMessage = { event: 'log', data: '{"seq":7}', id: '7' };
 */
export interface SseMessage {
  /** The `event:` field, or `message` when there was none. */
  event: string;
  /** The `data:` lines joined with `\n`. */
  data: string;
  /** The last `id:` seen on the stream so far (ids persist across messages), or '' if none. */
  id: string;
}

/**
 * An incremental Server-Sent Events parser (the WHATWG event-stream format):
 * feed it chunks as they arrive, split anywhere (inside a line, between CR
 * and LF, inside a UTF-8 character), and it returns the complete messages.
 * Comments (`: keepalive`) are skipped; multi-line `data:` is joined with `\n`.
 *
 * @example
 * const parser = new SseParser();
 * parser.push('id: 7\nevent: log\ndata: {"a"');   // → []
 * parser.push(':1}\n\n');                         // → [{ event: 'log', data: '{"a":1}', id: '7' }]
 */
export class SseParser {
  #decoder = new TextDecoder('utf-8');
  #buffer = '';
  #sawCR = false;
  #started = false;
  #data: string[] = [];
  #event = '';
  #retry: number | undefined;
  #lastId = '';

  /** The last event id seen, for `Last-Event-ID` on reconnect. */
  get lastEventId(): string {
    return this.#lastId;
  }

  /** The reconnection delay the server asked for with `retry:`, in milliseconds, if it did. */
  get retryMs(): number | undefined {
    return this.#retry;
  }

  /** Feeds one chunk (text or raw bytes) and returns the messages it completed. */
  push(chunk: string | Uint8Array): SseMessage[] {
    let text = typeof chunk === 'string' ? chunk : this.#decoder.decode(chunk, { stream: true });
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    // A CR ending the previous chunk already ended its line; a LF starting this one belongs to it.
    if (this.#sawCR && text.startsWith('\n')) text = text.slice(1);
    this.#sawCR = false;

    const out: SseMessage[] = [];
    let buf = this.#buffer + text;
    for (;;) {
      const m = /\r\n|\r|\n/.exec(buf);
      if (m === null) break;
      // A trailing lone CR may be the first half of CRLF: end the line now and remember it.
      if (m[0] === '\r' && m.index === buf.length - 1) this.#sawCR = true;
      const line = buf.slice(0, m.index);
      buf = buf.slice(m.index + m[0].length);
      const msg = this.#line(line);
      if (msg !== undefined) out.push(msg);
    }
    this.#buffer = buf;
    return out;
  }

  #line(line: string): SseMessage | undefined {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#data.push(value);
        break;
      case 'event':
        this.#event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.#lastId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored, as the format requires
    }
    return undefined;
  }

  #dispatch(): SseMessage | undefined {
    const data = this.#data;
    const event = this.#event;
    this.#data = [];
    this.#event = '';
    if (data.length === 0) return undefined;
    return { event: event === '' ? 'message' : event, data: data.join('\n'), id: this.#lastId };
  }
}
