import { IdOrNameParams, Image, ImageCreate, ImagePatch, ListQuery, Page, ProjectQuery } from '@floe/api';
import type { Services } from '../../wiring.js';
import { etag, ifMatch, projectOf } from '../request.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** Image records (their files: image-files.ts). */
export function imageRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/images',
    {
      schema: {
        tags: ['images'],
        summary: 'List images',
        querystring: ListQuery,
        response: { 200: Page(Image), ...errors },
      },
    },
    (req) => s.images.list(req.principal, req.query),
  );
  app.post(
    '/v1/images',
    {
      schema: {
        tags: ['images'],
        summary: 'Register an image record',
        body: strict(ImageCreate),
        response: { 201: Image, ...errors },
      },
    },
    async (req, reply) => {
      const img = await s.images.create(req.principal, req.body);
      etag(reply, img.revision);
      return reply.code(201).send(img);
    },
  );
  app.get(
    '/v1/images/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Show an image',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: Image, ...errors },
      },
    },
    async (req, reply) => {
      const img = await s.images.get(req.principal, req.params.id, projectOf(req.query));
      etag(reply, img.revision);
      return img;
    },
  );
  app.patch(
    '/v1/images/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Update an image (JSON merge patch)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        body: strict(ImagePatch),
        response: { 200: Image, ...errors },
      },
    },
    async (req, reply) => {
      const img = await s.images.update(req.principal, req.params.id, projectOf(req.query), req.body, ifMatch(req));
      etag(reply, img.revision);
      return img;
    },
  );
  app.delete(
    '/v1/images/:id',
    {
      schema: {
        tags: ['images'],
        summary: 'Delete an image no instance uses',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.images.delete(req.principal, req.params.id, projectOf(req.query), ifMatch(req));
      return reply.code(204).send(null);
    },
  );
}
