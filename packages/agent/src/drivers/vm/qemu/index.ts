/** The QEMU VM driver: detached QEMU processes, QMP, qcow2 overlays, console logs. */
export { QemuDriver, type QemuDriverOptions } from './driver.js';
export { KVM_FAILURE_MESSAGE } from './monitor.js';
export { qemuArgv, type QemuSpec, type QemuRuntimePaths, type QemuAccelerator, type QemuDiskCache } from './argv.js';
export { type QemuImageInfo, type OverlayResult, type DiskOptions } from './disk.js';
export {
  QmpClient,
  QmpError,
  QmpTimeoutError,
  QmpConnectionError,
  connectWithRetry,
  type QmpCommands,
  type QmpCommandName,
  type QmpEvent,
  type QmpGreeting,
  type QmpStatusInfo,
  type QmpBlockStats,
  type QmpConnectOptions,
  type QmpExecuteOptions,
  type QmpRetryOptions,
} from './qmp.js';
