/**
 * @floe/api: the schemas, types, error codes and event types shared by the
 * floe server, agent, client, CLI and web UI.
 *
 * @example
 * import { InstanceCreate, FloeError } from '@floe/api';
 */
export * from './common.js';
export * from './errors.js';
export * from './resources.js';
export * from './stats-history.js';
export * from './networks.js';
export * from './operations.js';
export * from './images.js';
export * from './agent-protocol.js';
export * from './wire.js';
export * from './first-boot.js';
export * from './audit.js';
export * from './users.js';
export * from './logins.js';
export * from './oidc-login.js';
export * from './metering.js';
export * from './quotas.js';
