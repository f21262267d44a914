import { Type } from 'typebox';
import {
  IdOrNameParams,
  ListQuery,
  Page,
  ProjectQuery,
  VpnNetwork,
  VpnNetworkCreate,
  VpnNetworkPatch,
  VpnNetworkStats,
  VpnPeer,
  VpnPeerCreate,
  VpnPeerCreated,
  VpnPeerListQuery,
  VpnPool,
  VpnPoolCreate,
} from '@floe/api';
import type { Services } from '../../wiring.js';
import { etag, ifMatch, projectOf } from '../request.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** How long a gateway may take to report its peers' counters. */
const GATEWAY_ANSWER_MS = 5000;

/** VPN pools (operators), VPN networks and their peers (projects). */
export function vpnRoutes(app: Api, s: Services): void {
  app.get(
    '/v1/vpn-pools',
    {
      schema: {
        tags: ['vpn'],
        summary: 'List VPN pools (their gateway hosts are shown to admins only)',
        querystring: ListQuery,
        response: { 200: Page(VpnPool), ...errors },
      },
    },
    (req) => s.vpn.pools.list(req.principal, req.query),
  );
  app.post(
    '/v1/vpn-pools',
    {
      schema: {
        tags: ['vpn'],
        summary: 'Create a VPN pool: a prefix carved into VPN networks, served by gateway hosts (admin)',
        body: strict(VpnPoolCreate),
        response: { 201: VpnPool, ...errors },
      },
    },
    async (req, reply) => {
      const pool = await s.vpn.pools.create(req.principal, req.body);
      reply.header('location', `/v1/vpn-pools/${pool.id}`);
      return reply.code(201).send(pool);
    },
  );
  app.get(
    '/v1/vpn-pools/:id',
    {
      schema: {
        tags: ['vpn'],
        summary: 'Show a VPN pool',
        params: IdOrNameParams,
        response: { 200: VpnPool, ...errors },
      },
    },
    (req) => s.vpn.pools.get(req.principal, req.params.id),
  );
  app.delete(
    '/v1/vpn-pools/:id',
    {
      schema: {
        tags: ['vpn'],
        summary: 'Delete a VPN pool without VPN networks (admin; 409 in_use otherwise)',
        params: IdOrNameParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.vpn.pools.delete(req.principal, req.params.id);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/vpn-networks',
    {
      schema: {
        tags: ['vpn'],
        summary: 'List VPN networks of the visible projects',
        querystring: ListQuery,
        response: { 200: Page(VpnNetwork), ...errors },
      },
    },
    (req) => s.vpn.networks.list(req.principal, req.query),
  );
  app.post(
    '/v1/vpn-networks',
    {
      schema: {
        tags: ['vpn'],
        summary: "Create a VPN network: the next free prefix of a pool, connected to the project's private networks",
        body: strict(VpnNetworkCreate),
        response: { 201: VpnNetwork, ...errors },
      },
    },
    async (req, reply) => {
      const n = await s.vpn.networks.create(req.principal, req.body);
      reply.header('location', `/v1/vpn-networks/${n.id}`);
      return reply.code(201).send(n);
    },
  );
  app.get(
    '/v1/vpn-networks/:id',
    {
      schema: {
        tags: ['vpn'],
        summary: 'Show a VPN network',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: VpnNetwork, ...errors },
      },
    },
    (req) => s.vpn.networks.get(req.principal, req.params.id, projectOf(req.query)),
  );
  app.patch(
    '/v1/vpn-networks/:id',
    {
      schema: {
        tags: ['vpn'],
        summary:
          'Change the labels, metadata or connected private networks of a VPN network (JSON merge patch); the gateways change it in place and its peers keep their sessions (409 vpn_prefix_overlap as at creation)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        body: strict(VpnNetworkPatch),
        response: { 200: VpnNetwork, ...errors },
      },
    },
    async (req, reply) => {
      const n = await s.vpn.networks.update(req.principal, req.params.id, projectOf(req.query), req.body, ifMatch(req));
      etag(reply, n.revision);
      return n;
    },
  );
  app.get(
    '/v1/vpn-networks/:id/stats',
    {
      schema: {
        tags: ['vpn'],
        summary:
          "Every peer's latest handshake, endpoint and transfer, read from the gateways (503 host_offline when no gateway is connected, 504 host_timeout when none answers in time)",
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: VpnNetworkStats, ...errors },
      },
    },
    (req) =>
      s.vpn.stats(req.principal, req.params.id, projectOf(req.query), (host, id) =>
        s.hub.vpnStats(host, id, GATEWAY_ANSWER_MS),
      ),
  );
  app.delete(
    '/v1/vpn-networks/:id',
    {
      schema: {
        tags: ['vpn'],
        summary: 'Delete a VPN network and its peers',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.vpn.networks.delete(req.principal, req.params.id, projectOf(req.query));
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/v1/vpn-peers',
    {
      schema: {
        tags: ['vpn'],
        summary: 'List VPN peers of the visible projects (optionally of one VPN network)',
        querystring: VpnPeerListQuery,
        response: { 200: Page(VpnPeer), ...errors },
      },
    },
    (req) => s.vpn.peers.list(req.principal, req.query),
  );
  app.post(
    '/v1/vpn-peers',
    {
      schema: {
        tags: ['vpn'],
        summary:
          'Add a peer with its public key, or with a generated key pair (the private key is in this answer only); the answer has its wg-quick file and QR code',
        body: strict(VpnPeerCreate),
        response: { 201: VpnPeerCreated, ...errors },
      },
    },
    async (req, reply) => {
      const created = await s.vpn.peers.create(req.principal, req.body);
      reply.header('location', `/v1/vpn-peers/${created.peer.id}`);
      return reply.code(201).send(created);
    },
  );
  app.get(
    '/v1/vpn-peers/:id',
    {
      schema: {
        tags: ['vpn'],
        summary: 'Show a VPN peer',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { 200: VpnPeer, ...errors },
      },
    },
    (req) => s.vpn.peers.get(req.principal, req.params.id, projectOf(req.query)),
  );
  app.delete(
    '/v1/vpn-peers/:id',
    {
      schema: {
        tags: ['vpn'],
        summary: 'Remove a VPN peer (the gateways drop it at once; other peers keep their sessions)',
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.vpn.peers.delete(req.principal, req.params.id, projectOf(req.query));
      return reply.code(204).send(null);
    },
  );
  app.get(
    '/v1/vpn-peers/:id/config',
    {
      schema: {
        tags: ['vpn'],
        summary: "The peer's wg-quick file (floe keeps no private key: a placeholder line stands for it)",
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: {
          200: { description: 'a wg-quick configuration', content: { 'text/plain': { schema: Type.String() } } },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const text = await s.vpn.peers.config(req.principal, req.params.id, projectOf(req.query));
      reply.header('content-type', 'text/plain; charset=utf-8');
      return reply.send(text);
    },
  );
  app.get(
    '/v1/vpn-peers/:id/qr.png',
    {
      schema: {
        tags: ['vpn'],
        summary: "The peer's wg-quick file as a QR code (PNG)",
        params: IdOrNameParams,
        querystring: ProjectQuery,
        response: {
          200: { description: 'PNG image', content: { 'image/png': { schema: Type.String({ format: 'binary' }) } } },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const png = await s.vpn.peers.qr(req.principal, req.params.id, projectOf(req.query));
      reply.header('content-type', 'image/png');
      return reply.send(png as never);
    },
  );
}
