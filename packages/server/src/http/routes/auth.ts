import {
  FloeError,
  IdOrNameParams,
  LoginRequest,
  LoginResponse,
  SessionLogin,
  TotpCode,
  TotpEnrolment,
} from '@floe/api';
import type { FastifyRequest } from 'fastify';
import { clearedCookies, csrfTokenFor, parseCookies, SESSION_COOKIE, sessionCookies } from '../cookie-session.js';
import type { Services } from '../../wiring.js';
import { errors, noContent, strict, type Api } from '../routing.js';

/** Password logins (bearer or browser cookie), logout, and the TOTP second factor of users. */
export function authRoutes(app: Api, s: Services): void {
  const login = async (req: FastifyRequest, reply: { header(k: string, v: string): unknown }) => {
    const body = req.body as LoginRequest;
    const remoteAddress = req.socket?.remoteAddress ?? req.ip;
    try {
      return await s.logins.login(
        body,
        { remoteAddress, ...(body.session_name !== undefined ? { sessionName: body.session_name } : {}) },
        (login) => (req.auditAuth = { ...req.auditAuth, login }),
      );
    } catch (err) {
      if (err instanceof FloeError && err.code === 'rate_limited')
        void reply.header('retry-after', String(Number(err.details?.retry_after_s ?? 60)));
      throw err;
    }
  };
  app.post(
    '/v1/auth/login',
    {
      config: { public: true },
      schema: {
        tags: ['auth'],
        summary:
          'Log in with a username and password (and a TOTP code when the user has one); answers a session token, shown once',
        security: [],
        body: strict(LoginRequest),
        response: { 200: LoginResponse, ...errors },
      },
    },
    async (req, reply) => {
      const done = await login(req, reply);
      return { token: done.token, token_id: done.session.id, expires_at: done.session.expires_at!, user: done.user };
    },
  );
  app.post(
    '/v1/auth/session',
    {
      config: { public: true },
      schema: {
        tags: ['auth'],
        summary:
          'Log in from a browser: like /v1/auth/login, but the session token is kept in an HttpOnly cookie; changes then need the answered `csrf_token` as `X-CSRF-Token`',
        security: [],
        body: strict(LoginRequest),
        response: { 200: SessionLogin, ...errors },
      },
    },
    async (req, reply) => {
      const done = await login(req, reply);
      const expiresAt = done.session.expires_at!;
      const maxAgeS = (Date.parse(expiresAt) - Date.now()) / 1000;
      void reply.header('set-cookie', sessionCookies(done.token, maxAgeS, req.protocol === 'https'));
      void reply.header('cache-control', 'no-store');
      return {
        token_id: done.session.id,
        expires_at: expiresAt,
        csrf_token: csrfTokenFor(done.token),
        user: done.user,
      };
    },
  );
  app.post(
    '/v1/auth/logout',
    {
      schema: {
        tags: ['auth'],
        summary: 'Revoke the session token of this request (API tokens are revoked with DELETE /v1/tokens/{id})',
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      // A browser's cookies go whatever happens next: the session they hold ends here.
      if (parseCookies(req.headers.cookie)[SESSION_COOKIE] !== undefined)
        void reply.header('set-cookie', clearedCookies(req.protocol === 'https'));
      await s.logins.logout(req.principal);
      req.auditAuth = { ...req.auditAuth, login: { action: 'auth.logout', tokenId: req.principal.actor } };
      return reply.code(204).send(null);
    },
  );
  app.post(
    '/v1/users/me/totp',
    {
      schema: {
        tags: ['users'],
        summary:
          'Start TOTP for the token’s user: a new secret (URI, QR codes) and recovery codes, pending until confirmed',
        response: { 201: TotpEnrolment, ...errors },
      },
    },
    async (req, reply) => reply.code(201).send(await s.userTotp.enrol(req.principal)),
  );
  app.post(
    '/v1/users/me/totp/confirm',
    {
      schema: {
        tags: ['users'],
        summary: 'Confirm a pending TOTP enrolment with a code from the app; logins then ask for a code',
        body: strict(TotpCode),
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.userTotp.confirm(req.principal, req.body.code);
      return reply.code(204).send(null);
    },
  );
  app.delete(
    '/v1/users/me/totp',
    {
      schema: {
        tags: ['users'],
        summary: 'Turn TOTP off for the token’s user; needs a current code or an unused recovery code',
        body: strict(TotpCode),
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.userTotp.disable(req.principal, req.body.code);
      return reply.code(204).send(null);
    },
  );
  app.delete(
    '/v1/users/:id/totp',
    {
      schema: {
        tags: ['users'],
        summary: 'Remove a user’s TOTP (operators), for a user who lost the device and its recovery codes',
        params: IdOrNameParams,
        response: { ...noContent, ...errors },
      },
    },
    async (req, reply) => {
      await s.userTotp.reset(req.principal, req.params.id);
      return reply.code(204).send(null);
    },
  );
}
