import { readFile } from 'node:fs/promises';
import type { VmStats } from '@floe/api';
import { isIfName } from '../../../host/validate.js';
import type { QmpBlockStats } from './qmp.js';

const MIB = 1024 ** 2;
/** Linux reports process CPU times in clock ticks of 1/100 s (USER_HZ) on every architecture floe runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time (user + system) in nanoseconds from the text of `/proc/<pid>/stat`, or null. Pure. */
export function cpuTimeNs(procStat: string): number | null {
  // Fields after the command name, which is in parentheses and may contain spaces.
  const fields = procStat.slice(procStat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  return Number.isFinite(ticks) ? Math.round((ticks * 1e9) / CLOCK_TICKS_PER_SECOND) : null;
}

/** Resident memory in bytes from the text of `/proc/<pid>/status`, or null. Pure. */
export function residentBytes(procStatus: string): number | null {
  const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(procStatus)?.[1];
  return kb === undefined ? null : Number(kb) * 1024;
}

/** The CPU time and resident memory of process `pid`; what cannot be read (it ended meanwhile) is null. */
export async function processCounters(pid: number): Promise<{ cpu: number | null; rss: number | null }> {
  let cpu: number | null = null;
  let rss: number | null = null;
  try {
    cpu = cpuTimeNs(await readFile(`/proc/${pid}/stat`, 'utf8'));
    rss = residentBytes(await readFile(`/proc/${pid}/status`, 'utf8'));
  } catch {
    // The process ended meanwhile: what could not be read stays null.
  }
  return { cpu, rss };
}

/** Bytes through one tap, as the host counts them (`rx`: from the guest; `tx`: to the guest). */
export interface TapCounters {
  rx: number;
  tx: number;
}

/**
 * The guest's network counters from its taps' host counters: what the host
 * receives on a tap the guest sent, and the other way round. Null when a
 * tap could not be read (it is being replaced); zero for a VM without NICs. Pure.
 */
export function guestNetCounters(taps: ReadonlyArray<TapCounters | null>): { rx: number; tx: number } | null {
  if (taps.some((t) => t === null)) return null;
  return (taps as TapCounters[]).reduce((sum, t) => ({ rx: sum.rx + t.tx, tx: sum.tx + t.rx }), { rx: 0, tx: 0 });
}

/** The host counters of one tap from `/sys/class/net/<tap>/statistics`; null when it is not there (or the name is not an interface name). */
export async function readTapCounters(tap: string): Promise<TapCounters | null> {
  if (!isIfName(tap)) return null;
  try {
    const dir = `/sys/class/net/${tap}/statistics`;
    const [rx, tx] = await Promise.all([readFile(`${dir}/rx_bytes`, 'utf8'), readFile(`${dir}/tx_bytes`, 'utf8')]);
    const counters = { rx: Number(rx.trim()), tx: Number(tx.trim()) };
    return Number.isSafeInteger(counters.rx) && Number.isSafeInteger(counters.tx) ? counters : null;
  } catch {
    return null;
  }
}

/**
 * A VM's counters from its QEMU's process counters, QMP block stats (null
 * when QMP did not answer) and its guest network counters (null when unknown). Pure.
 */
export function vmStats(
  at: Date,
  proc: { cpu: number | null; rss: number | null },
  memoryMib: number,
  blocks: readonly QmpBlockStats[] | null,
  net: { rx: number; tx: number } | null = null,
): VmStats {
  return {
    at: at.toISOString(),
    cpu_time_ns: proc.cpu,
    memory_bytes: proc.rss,
    memory_assigned_bytes: memoryMib * MIB,
    disk_read_bytes: blocks === null ? null : blocks.reduce((sum, d) => sum + (d.stats.rd_bytes ?? 0), 0),
    disk_write_bytes: blocks === null ? null : blocks.reduce((sum, d) => sum + (d.stats.wr_bytes ?? 0), 0),
    net_rx_bytes: net?.rx ?? null,
    net_tx_bytes: net?.tx ?? null,
  };
}
