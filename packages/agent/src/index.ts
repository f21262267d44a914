/** @floe/agent: the floe host agent (link to the control plane, reconciler, host probes). */
export { Agent, type AgentExit, type AgentOptions } from './agent.js';
export { AgentLink, agentLinkUrl, type AgentLinkOptions, type BackoffOptions } from './link.js';
export { backoffDelay } from './backoff.js';
export { ImageCache, imageDownloadUrl, type ImageCacheOptions } from './images.js';
export { InstanceReconciler, type InstanceReconcilerOptions } from './reconciler.js';
export type { ReconcilerReporter } from './instance-status.js';
export {
  ReconcilerRegistry,
  type DesiredKinds,
  type DesiredState,
  type DesiredUpdate,
  type Kind,
  type KindReconciler,
} from './kinds.js';
export { WorkQueue, type AddOptions, type WorkQueueOptions } from './work-queue.js';
export {
  AgentState,
  memoryAppliedStore,
  writeFileAtomic,
  type AgentConfig,
  type AgentCredentials,
  type AppliedInstance,
  type AppliedStore,
} from './state.js';
export { joinControlPlane, normalizeServerUrl, type JoinOptions, type JoinResult } from './join.js';
export { createCsr } from './pki.js';
export {
  AGENT_VERSION,
  probeFacts,
  probeKvm,
  runKvmProbe,
  type KvmProbe,
  type KvmProbeOptions,
  type ProbeFactsOptions,
} from './facts.js';
export {
  ExecError,
  run,
  startProcess,
  which,
  type ProcessHandle,
  type RunOptions,
  type RunResult,
} from './host/exec.js';
export {
  QemuDriver,
  KVM_FAILURE_MESSAGE,
  qemuArgv,
  QmpClient,
  QmpError,
  QmpTimeoutError,
  QmpConnectionError,
  connectWithRetry,
  type QemuDriverOptions,
  type QemuSpec,
} from './drivers/vm/qemu/index.js';
