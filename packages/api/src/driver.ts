import type { DesiredInstance, ObservedInstance } from './agent-protocol.js';

/** One VM as a driver sees it on its host. */
export interface VmInfo {
  id: string;
  state: 'running' | 'stopped' | 'error';
  reason: string | null;
  accelerator: 'kvm' | 'tcg' | 'fake';
  started_at: string | null;
  /** Process id on the host, when there is one. */
  pid: number | null;
}

/** Something a driver tells the agent without being asked (a VM died, a boot finished). */
export interface VmDriverEvent {
  id: string;
  type: 'started' | 'stopped' | 'crashed' | 'log';
  message: string;
  exit_code?: number | null;
}

/**
 * The contract between the agent and a hypervisor. The agent depends on this
 * interface only; the fake driver (testkit) and the QEMU driver pass the same
 * contract suite. Every method is idempotent: calling it again for a VM that
 * is already in the wanted state succeeds and changes nothing.
 */
export interface VmDriver {
  /** "fake" or "qemu". */
  readonly name: string;
  /** VMs that exist on this host (running or stopped), found again after an agent restart. */
  list(): Promise<VmInfo[]>;
  /** Create the VM's disk and runtime files; does not start it. Idempotent. */
  create(vm: DesiredInstance): Promise<void>;
  /** Start a created VM. Idempotent. */
  start(id: string): Promise<VmInfo>;
  /** Stop a VM: graceful unless `force`, killing it after `timeoutMs`. Idempotent. */
  stop(id: string, opts?: { force?: boolean; timeoutMs?: number }): Promise<VmInfo>;
  /** Stop if needed and remove every trace of the VM. Idempotent; unknown ids succeed. */
  destroy(id: string): Promise<void>;
  /** Current state of one VM, or null when it does not exist. */
  inspect(id: string): Promise<VmInfo | null>;
  /** Register a listener for unsolicited events; returns an unsubscribe function. */
  onEvent(listener: (event: VmDriverEvent) => void): () => void;
  /** Release resources (sockets, timers). VMs keep running. */
  close(): Promise<void>;
}

/** Helper type for a reconciler's report of one instance. */
export type ObservedFromDriver = Omit<ObservedInstance, 'observed_revision' | 'observed_generation' | 'observed_restart_generation'>;
