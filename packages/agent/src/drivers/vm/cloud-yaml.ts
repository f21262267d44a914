import { Document, visit } from 'yaml';

/**
 * Characters a YAML 1.1 reader (cloud-init's PyYAML) refuses in a document or
 * takes for line breaks: DEL, the C1 controls, the line and paragraph
 * separators, and the byte order mark.
 */
const UNSAFE_RE = /[\u007f-\u009f\u2028\u2029\ufeff]/g;
/** Strings left plain: a word of letters, digits, `_`, `.` and `-` that starts with a letter or `_`... */
const PLAIN_RE = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
/** ...unless YAML 1.1 reads it as a boolean or null. */
const YAML11_WORD_RE = /^(y|yes|n|no|true|false|on|off|null)$/i;

/**
 * A YAML document for cloud-init (meta-data, cloud-config, network-config),
 * written by the `yaml` library. cloud-init reads YAML 1.1, where much more
 * than in 1.2 is not a string (`no` is a boolean, 02:11:22:33:44:55 a base-60
 * number), so a string stays plain only when it is a simple word, and is
 * double-quoted otherwise; nothing is folded, and the characters PyYAML
 * refuses are escaped. Keys are the caller's own constants. Ends with a newline.
 *
 * @example
 * cloudYaml({ 'instance-id': 'inst_01', url: 'http://x/' }) // 'instance-id: inst_01\nurl: "http://x/"\n'
 */
export function cloudYaml(value: unknown): string {
  const doc = new Document(value, { version: '1.1' });
  visit(doc, {
    Scalar(key, node) {
      if (key === 'key' || typeof node.value !== 'string') return;
      node.type = PLAIN_RE.test(node.value) && !YAML11_WORD_RE.test(node.value) ? 'PLAIN' : 'QUOTE_DOUBLE';
    },
  });
  const text = doc.toString({ lineWidth: 0 });
  // Only double-quoted scalars can hold these (plain words and keys cannot), and `\uXXXX` is an escape there.
  return text.replace(UNSAFE_RE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
