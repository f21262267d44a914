/** @floe/testkit: fakes, factories and contract suites shared by floe's tests. */
export { FakeVmDriver, type FakeVmDriverOptions, type FakeDriverOp } from './fake-driver.js';
export { vmDriverContract, type VmDriverContractSetup } from './vm-driver-contract.js';
export { desiredInstance, testId, type DesiredInstanceOverrides } from './factories.js';
export { freePort, until, waitFor, type WaitOptions } from './wait.js';
