/** @floe/testkit: factories, contract suites and helpers shared by floe's tests (fakes live next to the real drivers). */
export { vmDriverContract, type VmDriverContractSetup } from './vm-driver-contract.js';
export { desiredInstance, testId, type DesiredInstanceOverrides } from './factories.js';
export { freePort, until, waitFor, type WaitOptions } from './wait.js';
export { seededRandom } from './random.js';
export { startPgProxy, type PgProxy, type PgProxyMode } from './pg-proxy.js';
export {
  CTRL_ALT_DEL,
  distinctColours,
  foregroundShare,
  RfbClient,
  type RfbFramebuffer,
  type RfbTransport,
} from './rfb.js';
