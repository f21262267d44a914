import type { Instance } from '@floe/api';
import { CliError } from '../errors.js';

/** Where a VM's first boot stands, as `--wait-boot` judges it. */
export type FirstBootVerdict =
  | { done: true; ok: true; message: string }
  | { done: true; ok: false; code: string; message: string }
  | { done: false; message: string };

/**
 * Judge one look at an instance (pure): finished, failed, or still waiting,
 * with a message that says which, and, once `timedOut`, why the wait failed:
 * the guest never fetched its data, or fetched it and never reported the end.
 */
export function firstBootVerdict(i: Instance, timedOut: boolean): FirstBootVerdict {
  const fb = i.status.first_boot;
  const seen =
    fb.source === 'metadata' ? 'fetched its first-boot data from the metadata service' : 'read its seed disk';
  if (fb.finished_at !== null) {
    if (fb.result === 'failed') {
      return {
        done: true,
        ok: false,
        code: 'first_boot_failed',
        message: `first boot of ${i.name} failed${fb.detail === null ? '' : `: ${fb.detail}`} (see "floe vm logs ${i.name}")`,
      };
    }
    return { done: true, ok: true, message: `first boot of ${i.name} finished` };
  }
  if (['error', 'stopped', 'deleting'].includes(i.status.state)) {
    return {
      done: true,
      ok: false,
      code: 'first_boot_failed',
      message: `${i.name} is ${i.status.state} before first boot finished${i.status.reason === null ? '' : `: ${i.status.reason}`}`,
    };
  }
  if (!timedOut) {
    return {
      done: false,
      message:
        fb.fetched_at === null
          ? 'waiting for the guest to fetch its first-boot data'
          : `the guest ${seen}; waiting for it to finish first boot`,
    };
  }
  if (fb.fetched_at === null) {
    const where = i.spec.config_drive
      ? 'its seed disk (label cidata) or the metadata service'
      : 'the metadata service at 169.254.169.254';
    return {
      done: true,
      ok: false,
      code: 'first_boot_not_fetched',
      message: `the guest of ${i.name} never fetched its first-boot data from ${where}: does the image run cloud-init? (see "floe vm logs ${i.name}")`,
    };
  }
  return {
    done: true,
    ok: false,
    code: 'first_boot_timeout',
    message:
      `the guest of ${i.name} ${seen} but did not report the end of first boot in time: does the image run cloud-init, ` +
      `and can the guest reach 169.254.169.254? (see "floe vm logs ${i.name}")`,
  };
}

/**
 * Poll an instance until its first boot finished or `timeoutMs` passed;
 * `onMessage` hears each new state. Throws a CliError unless it finished well.
 */
export async function waitFirstBoot(
  get: () => Promise<Instance>,
  timeoutMs: number,
  onMessage: (m: string) => void,
  pollMs = 2000,
): Promise<Instance> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const i = await get();
    const v = firstBootVerdict(i, Date.now() >= deadline);
    if (v.message !== last && !v.done) onMessage(v.message);
    last = v.message;
    if (v.done) {
      if (!v.ok) throw new CliError(v.message, v.code);
      return i;
    }
    await new Promise((r) => setTimeout(r, Math.max(0, Math.min(pollMs, deadline - Date.now()))));
  }
}
