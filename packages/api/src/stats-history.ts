import { Type, type Static } from 'typebox';
import { Name, Nullable, Timestamp } from './common.js';
import { InstanceStats } from './resources.js';
import { messageDecoder } from './wire.js';

/**
 * One sample of a VM's counters as the agent keeps it in its bounded history:
 * the raw counters of `InstanceStats` and when the VM (its QEMU) started, so a
 * restart, which resets the counters, is told apart from a counter that grew.
 */
export const VmStatsSample = Type.Object({
  ...InstanceStats.properties,
  started_at: Nullable(Timestamp),
});
export type VmStatsSample = Static<typeof VmStatsSample>;

/** Query of `GET /v1/instances/{id}/stats/history`. */
export const StatsHistoryQuery = Type.Object({
  project: Type.Optional(Name),
  since: Type.Optional(
    Type.String({
      format: 'date-time',
      maxLength: 40,
      description: 'only samples taken after this time (RFC 3339); default: all the host keeps (the last hour)',
    }),
  ),
});
export type StatsHistoryQuery = Static<typeof StatsHistoryQuery>;

const rate = (what: string) =>
  Nullable(Type.Number({ minimum: 0, description: `${what}, in bytes per second since the previous sample` }));

/**
 * One point of an instance's stats history: rates over the interval that ends
 * at `at`. A rate is null where it cannot be told: the first sample, a sample
 * after the VM restarted, or a counter that went down (a NIC removed, a reset).
 */
export const InstanceStatsPoint = Type.Object({
  at: Timestamp,
  cpu_percent: Nullable(
    Type.Number({
      minimum: 0,
      description:
        "CPU used over the interval, as a share of the instance's vCPUs (100 = every vCPU busy; QEMU's own threads can push it slightly above)",
    }),
  ),
  memory_bytes: Nullable(Type.Number({ description: 'memory the VM uses on the host (resident) at `at`, in bytes' })),
  memory_assigned_bytes: Nullable(Type.Number({ description: 'memory the guest was given, in bytes' })),
  disk_read_bytes_per_second: rate('disk reads'),
  disk_write_bytes_per_second: rate('disk writes'),
  net_rx_bytes_per_second: rate('bytes the guest received over all its NICs'),
  net_tx_bytes_per_second: rate('bytes the guest sent over all its NICs'),
});
export type InstanceStatsPoint = Static<typeof InstanceStatsPoint>;

/** `GET /v1/instances/{id}/stats/history`: the samples the host keeps, oldest first. */
export const InstanceStatsHistory = Type.Object({
  instance_id: Type.String(),
  interval_seconds: Type.Number({ description: 'how often the host samples' }),
  retention_seconds: Type.Number({ description: 'how far back the host keeps samples' }),
  vcpus: Type.Integer({ description: 'the vCPUs `cpu_percent` is a share of' }),
  samples: Type.Array(InstanceStatsPoint),
});
export type InstanceStatsHistory = Static<typeof InstanceStatsHistory>;

/** The file an agent keeps its stats history in across its own restarts (`<data>/stats-history.json`). */
export const StatsHistoryFile = Type.Object({
  type: Type.Literal('stats-history'),
  saved_at: Timestamp,
  /** Samples by instance id, oldest first. */
  instances: Type.Record(Type.String({ maxLength: 100 }), Type.Array(VmStatsSample, { maxItems: 100_000 })),
});
export type StatsHistoryFile = Static<typeof StatsHistoryFile>;

/** Check a stats history file's text against its schema. */
export const decodeStatsHistoryFile = messageDecoder<StatsHistoryFile>([StatsHistoryFile]);
