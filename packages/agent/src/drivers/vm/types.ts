import type { DesiredInstance, FirstBoot, VmStats } from '@floe/api';

/**
 * The VM driver interface of the agent: what a hypervisor driver offers the
 * reconciler. Only the stats it reads travel over the wire (`VmStats`, from
 * @floe/api); the rest stays on the host.
 */

/** Host-side inputs for creating a VM, prepared by the agent before it calls the driver. */
export interface VmCreateContext {
  /** Local path of the instance's base image (qcow2, cached by sha256), or null when the image has no file. */
  imagePath: string | null;
  /** The instance's NICs in guest order, each with the tap the agent created for it; kept across restarts. */
  nics?: VmNic[];
}

/** One NIC of a VM as the driver plugs it in: the tap the agent created for it and its stable MAC. */
export interface VmNic {
  id: string;
  /** Host tap the NIC is connected to (created by the agent beforehand). */
  tap: string;
  mac: string;
  /** The slot in the VM (0..7), which keeps the guest's PCI address stable; when absent, the position in the list. */
  index?: number;
}

/** What `setNics` did. */
export interface SetNicsResult {
  /** NICs the VM no longer has (unplugged from the running VM, or dropped from the record): their taps may go. */
  removed: string[];
  /** NICs plugged into the running VM by this call. */
  added: string[];
}

/** An interactive console (serial, or a VNC display's RFB stream): bytes both ways until either side closes. */
export interface ConsoleStream {
  /** Send keystrokes to the guest. */
  write(data: Buffer): void;
  /** Output from the guest; returns an unsubscribe function. */
  onData(listener: (data: Buffer) => void): () => void;
  /** Called once when the console closes (VM stopped, driver closed, or close()). */
  onClose(listener: (reason: string) => void): () => void;
  /** Close this console session; the VM is not affected. */
  close(): void;
}

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
  /** `first-boot`: the driver saw the guest take its first-boot data (`first_boot` says what it saw). */
  type: 'started' | 'stopped' | 'crashed' | 'log' | 'first-boot';
  message: string;
  exit_code?: number | null;
  first_boot?: Partial<FirstBoot>;
}

/**
 * The contract between the agent and a hypervisor. The agent depends on this
 * interface only; the fake driver (./fake.ts) and the QEMU driver pass the same
 * contract suite. Every method is idempotent: calling it again for a VM that
 * is already in the wanted state succeeds and changes nothing.
 */
export interface VmDriver {
  /** "fake" or "qemu". */
  readonly name: string;
  /** VMs that exist on this host (running or stopped), found again after an agent restart. */
  list(): Promise<VmInfo[]>;
  /** Create the VM's disk and runtime files; does not start it. Idempotent. */
  create(vm: DesiredInstance, ctx?: VmCreateContext): Promise<void>;
  /** Start a created VM. Idempotent. */
  start(id: string): Promise<VmInfo>;
  /** Stop a VM: graceful unless `force`, killing it after `timeoutMs`. Idempotent. */
  stop(id: string, opts?: { force?: boolean; timeoutMs?: number }): Promise<VmInfo>;
  /** Stop if needed and remove every trace of the VM. Idempotent; unknown ids succeed. */
  destroy(id: string): Promise<void>;
  /** Current state of one VM, or null when it does not exist. */
  inspect(id: string): Promise<VmInfo | null>;
  /** The console history (bounded, kept across agent restarts), oldest first; at most `tailBytes` of its end. */
  readLog(id: string, opts?: { tailBytes?: number }): Promise<Buffer>;
  /** Follow new console output of a VM; returns an unsubscribe function. */
  followLog(id: string, listener: (data: Buffer) => void): Promise<() => void>;
  /** Attach to the VM's serial console. Fails with `invalid_state` when the VM is not running. */
  openConsole(id: string): Promise<ConsoleStream>;
  /**
   * Attach to the VM's graphical console: a stream of raw RFB (VNC) bytes both
   * ways, as a VNC client speaks it. Several sessions may be open at once.
   * Fails with `invalid_state` when the VM is not running and with
   * `vnc_unavailable` when the running VM has no VNC display (started before it got one).
   */
  openVnc(id: string): Promise<ConsoleStream>;
  /** Counters of a running VM. Fails with `invalid_state` when it is not running. */
  stats(id: string): Promise<VmStats>;
  /**
   * Make the VM's NICs match `nics`: record them for later starts and, when
   * the VM runs, hot-remove the NICs no longer listed and hot-add the new
   * ones (a NIC whose tap, MAC or slot changed is removed and added again).
   * Idempotent. Fails with `instance_not_found` for an unknown VM, and with
   * `host_operation_failed` when the guest does not release a NIC in time
   * (the caller retries; the NIC stays recorded until it is gone).
   */
  setNics(id: string, nics: VmNic[], opts?: { timeoutMs?: number }): Promise<SetNicsResult>;
  /** Register a listener for unsolicited events; returns an unsubscribe function. */
  onEvent(listener: (event: VmDriverEvent) => void): () => void;
  /** Release resources (sockets, timers). VMs keep running. */
  close(): Promise<void>;
}
