/**
 * @floe/client: the typed HTTP and events client for the floe API.
 *
 * @example
 * import { FloeClient, FloeApiError } from '@floe/client';
 * const client = new FloeClient({ url: 'https://floe.example:8443', token: process.env.FLOE_TOKEN, ca });
 * const { instance, operation } = await client.instances.create({ name: 'web', image: 'debian-12', machine_type: 'small' });
 * const done = await client.operations.wait(operation);
 */
export {
  ListApi,
  type CallOptions,
  type MergePatch,
  type OperationCallOptions,
  type PostOptions,
  type UpdateOptions,
} from './calls.js';
export * from './audit.js';
export * from './client.js';
export * from './errors.js';
export * from './events.js';
export * from './hosts.js';
export * from './images.js';
export * from './images-upload.js';
export * from './instances.js';
export * from './io.js';
export * from './networks.js';
export * from './security-groups.js';
export * from './vpn.js';
export * from './nat.js';
export * from './oidc.js';
export * from './operations.js';
export * from './projects.js';
export * from './users.js';
export * from './query.js';
export * from './sse.js';
export * from './transport.js';
export * from './auth.js';
