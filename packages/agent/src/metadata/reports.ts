/**
 * What the metadata service tells the agent about a VM's first boot:
 * `fetched` when the VM first read its meta-data or user-data from the
 * service (once per instance while the agent runs), `finished` when the guest
 * reported the end of its first boot: cloud-init's phone_home (always `ok`,
 * detail `phone_home`) or the webhook reporter's `finish` event of
 * `modules-final` (`ok` for SUCCESS and WARN, `failed` for FAIL; detail is the
 * result and description). A guest may send both; the last one wins.
 */
export type FirstBootEvent =
  | { type: 'fetched'; source: 'metadata'; at: string }
  | { type: 'finished'; result: 'ok' | 'failed'; at: string; detail?: string };

/**
 * The first-boot event in one report a guest posted, or null when it carries
 * none (another webhook event, or a malformed body). Pure; `body` is whatever
 * the guest sent and is only read, never trusted beyond the fields it names.
 */
export function firstBootReport(
  kind: 'phone-home' | 'webhook',
  contentType: string,
  body: string,
  now: Date,
): FirstBootEvent | null {
  const at = now.toISOString();
  if (kind === 'phone-home') {
    // cloud-init posts a form (instance_id, hostname, keys); the instance is already known from the tap.
    return { type: 'finished', result: 'ok', at, detail: 'phone_home' };
  }
  let ev: unknown;
  try {
    ev = JSON.parse(body);
  } catch {
    // cloud-init before 16.x posted url-encoded events; nothing that old is supported.
    void contentType;
    return null;
  }
  if (typeof ev !== 'object' || ev === null) return null;
  const { name, event_type: type, result, description } = ev as Record<string, unknown>;
  if (name !== 'modules-final' || type !== 'finish' || typeof result !== 'string') return null;
  if (result !== 'SUCCESS' && result !== 'WARN' && result !== 'FAIL') return null;
  const desc = typeof description === 'string' ? `: ${description.slice(0, 200)}` : '';
  return { type: 'finished', result: result === 'FAIL' ? 'failed' : 'ok', at, detail: `${result}${desc}` };
}
