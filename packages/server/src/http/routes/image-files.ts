import { createReadStream } from 'node:fs';
import {
  FloeError,
  IdOrNameParams,
  Image,
  ImageImport,
  ImageImported,
  ImageUploadQuery,
  OperationWaitQuery,
} from '@floe/api';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import type { FastifySchemaCompiler } from 'fastify';
import type { Services } from '../../wiring.js';
import { isTerminal } from '../../services/operations.js';
import { agentPeer, requireAgentCertificate } from '../agent-auth.js';
import { etag, projectOf } from '../request.js';
import { errors, strict, type Api } from '../routing.js';

/** Header carrying a sha256: expected on upload, of the sent file on download. */
const SHA256_HEADER = 'x-floe-sha256';

/**
 * `PUT /v1/images/{id}/file` (the upload, streamed: no JSON body limit) and
 * `GET /v1/agent/images/{id}` (agents fetch files with their client certificate).
 */
export function imageFileRoutes(app: Api, s: Services): void {
  void app.register((plain, _options, done) => {
    const scope = plain.withTypeProvider<TypeBoxTypeProvider>();
    // Leave the body unread: the handler streams request.raw to disk. A body without a
    // content type (curl -T) is taken too; JSON and anything else is refused.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('application/octet-stream', (_req, _payload, done) => done(null));
    scope.addContentTypeParser('*', (req, _payload, done) => {
      if (req.headers['content-type'] === undefined) done(null);
      else done(new FloeError('unsupported_media_type', 'send the image file as application/octet-stream'), undefined);
    });
    // The body schema only documents the upload; the stream itself is checked by the service.
    const passBody: FastifySchemaCompiler<unknown> = (def) =>
      def.httpPart === 'body' ? () => true : scope.validatorCompiler!(def);

    scope.put(
      '/v1/images/:id/file',
      {
        validatorCompiler: passBody,
        schema: {
          tags: ['images'],
          summary:
            'Upload the file of an image (raw or qcow2, streamed as application/octet-stream); it is checked with qemu-img and stored as qcow2',
          description:
            'Only an image without a file takes one. A raw upload is converted to qcow2; `status.sha256` is the sha256 of the stored qcow2. A qcow2 with a backing file or an external data file is refused.',
          params: IdOrNameParams,
          querystring: ImageUploadQuery,
          consumes: ['application/octet-stream'],
          body: Type.String({ format: 'binary', description: 'the disk image' }),
          response: { 200: Image, ...errors },
        },
      },
      async (req, reply) => {
        const q = req.query;
        const header = req.headers[SHA256_HEADER];
        const fromHeader = typeof header === 'string' ? header.trim() : undefined;
        if (q.sha256 !== undefined && fromHeader !== undefined && q.sha256.toLowerCase() !== fromHeader.toLowerCase()) {
          throw new FloeError('validation_failed', `?sha256= and the ${SHA256_HEADER} header disagree`, {
            field: 'sha256',
          });
        }
        const sha256 = q.sha256 ?? fromHeader;
        const length = req.headers['content-length'];
        let img;
        try {
          img = await s.imageFiles.upload(req.principal, req.params.id, projectOf(q), req.raw, {
            ...(sha256 === undefined ? {} : { sha256 }),
            ...(length === undefined ? {} : { contentLength: Number(length) }),
          });
        } catch (err) {
          // Refused before the whole file arrived: answer, then drop the connection instead of reading the rest.
          if (!req.raw.complete) reply.header('connection', 'close');
          throw err;
        }
        etag(reply, img.revision);
        return img;
      },
    );
    done();
  });

  app.post(
    '/v1/images/import',
    {
      schema: {
        tags: ['images'],
        summary:
          'Import an image from an http(s) URL; answers with the image (importing) and the operation that downloads it',
        description:
          'The control plane downloads the file (redirects followed up to 5 times; connect, idle and total timeouts; at most FLOE_IMAGE_MAX_UPLOAD_BYTES), ' +
          'verifies `source.checksum` or the line for the file in `source.checksum_url` (a SHA256SUMS or SHA512SUMS file), then checks it exactly like an upload. ' +
          'The operation shows bytes done and total (`transfer`) and ends `succeeded` with the image `ready`, or `failed` with a stable error code; ' +
          'then nothing is kept, not even the image record. Cancelling the operation, or deleting the image, stops the download. `min_disk_gib` becomes at least the virtual size of the file.',
        querystring: OperationWaitQuery,
        body: strict(ImageImport),
        response: { 200: ImageImported, 202: ImageImported, ...errors },
      },
    },
    async (req, reply) => {
      let { image, operation } = await s.imageImports.importFromUrl(req.principal, req.body);
      const wait = req.query.wait ?? 0;
      if (wait > 0) {
        operation = await s.operations.wait(req.principal, operation.id, wait);
        image = await s.images.get(req.principal, image.id, image.project).catch(() => image);
      }
      reply.header('location', `/v1/operations/${operation.id}`);
      return reply.code(isTerminal(operation.status) ? 200 : 202).send({ image, operation });
    },
  );

  app.get(
    '/v1/agent/images/:id',
    {
      config: { public: true },
      preValidation: requireAgentCertificate,
      schema: { hide: true, params: IdOrNameParams },
    },
    async (req, reply) => {
      const peer = agentPeer(req);
      const host = await s.hosts.forAgent(peer.hostId);
      if (!host) throw new FloeError('client_certificate_required', 'the host of this certificate was removed');
      // Only the host's current certificate counts: a reissued one replaces the old.
      if (host.cert_serial !== null && host.cert_serial.toLowerCase() !== peer.serial.toLowerCase()) {
        throw new FloeError('client_certificate_required', 'the client certificate was superseded by a newer one');
      }
      const file = await s.imageFiles.forHost(peer.hostId, req.params.id);
      reply.header('content-type', 'application/octet-stream');
      reply.header('content-length', String(file.size));
      reply.header(SHA256_HEADER, file.sha256);
      return reply.send(createReadStream(file.path));
    },
  );
}
