/**
 * An absolute file path as tools and Node's fs errors print it ("open '/srv/floe/images/tmp/x'"): a "/" that
 * does not follow a letter, digit, ":", "/" or "." (so URLs and "1/2" stay), then anything up to a space,
 * quote, colon or bracket.
 */
const ABSOLUTE_PATH = /(?<![\w:/.~-])\/[^\s'"`:,;()<>[\]{}]+/g;

/**
 * `text` (a tool's stderr, an fs error's message) with every absolute path replaced by `<file>`, so a message
 * the API shows never names a file of the server. The server log keeps the original.
 */
export function hidePaths(text: string): string {
  return text.replace(ABSOLUTE_PATH, '<file>');
}
