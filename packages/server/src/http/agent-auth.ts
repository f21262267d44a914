import type { TLSSocket } from 'node:tls';
import { FloeError } from '@floe/api';
import type { FastifyRequest } from 'fastify';

/** Who an agent request comes from, by its client certificate. */
export interface AgentPeer {
  /** The host id: the certificate's common name. */
  hostId: string;
  /** Serial number of the certificate, to refuse superseded ones. */
  serial: string;
}

/**
 * The host behind a request on an agent endpoint (`/v1/agent...`): the TLS
 * client certificate must be signed by floe's CA and name a host. Used as a
 * preValidation hook on routes marked `config.public` (no bearer token).
 */
export function agentPeer(req: FastifyRequest): AgentPeer {
  const socket = req.raw.socket as TLSSocket;
  if (typeof socket.getPeerCertificate !== 'function' || !socket.authorized) {
    throw new FloeError(
      'client_certificate_required',
      "the agent endpoints need a client certificate signed by floe's CA",
    );
  }
  const cert = socket.getPeerCertificate();
  const cn = cert.subject?.CN;
  if (typeof cn !== 'string' || !cn.startsWith('host_')) {
    throw new FloeError('client_certificate_required', 'the client certificate is not a host certificate');
  }
  return { hostId: cn, serial: String(cert.serialNumber ?? '') };
}

/** preValidation hook form of `agentPeer`. */
export function requireAgentCertificate(req: FastifyRequest): Promise<void> {
  // The executor's throw becomes the rejection fastify answers with.
  return new Promise<void>((resolve) => {
    agentPeer(req);
    resolve();
  });
}
