/** An output stream for CLI tests: keeps what the command wrote; `isTTY` as asked. */
export class OutputBuffer {
  text = '';
  constructor(readonly isTTY = false) {}
  write(s: string | Uint8Array): boolean {
    this.text += typeof s === 'string' ? s : Buffer.from(s).toString('utf8');
    return true;
  }
}
