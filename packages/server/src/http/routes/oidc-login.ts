import {
  FloeError,
  LoginSession,
  OidcCallbackQuery,
  OidcConfirm,
  OidcLoginStarted,
  OidcPoll,
  OidcPollPending,
  OidcStart,
  OidcStartParams,
} from '@floe/api';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Store } from '../../db/index.js';
import { OidcLoginService, type CallbackOutcome, type OidcLoginDeps } from '../../services/oidc-logins.js';
import { bodyOptional, errors, strict, type Api } from '../routing.js';

/** The callback's page: plain, self-contained, no script; it holds neither a token nor a code. */
function page(outcome: CallbackOutcome): string {
  const escape = (s: string) =>
    s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
  const title =
    outcome.confirm !== undefined && outcome.ok
      ? 'floe: confirm the login'
      : outcome.ok
        ? 'floe: login complete'
        : 'floe: login failed';
  // The form posts to `confirm` beside this page: /v1/auth/oidc/confirm from the callback and from itself.
  const form =
    outcome.confirm === undefined
      ? ''
      : '<form method="post" action="confirm">' +
        `<input type="hidden" name="confirm" value="${escape(outcome.confirm)}">` +
        '<label>Code: <input name="code" autocomplete="off" autofocus required maxlength="64"></label> ' +
        '<button type="submit">Confirm</button></form>' +
        '<p>If you did not start a login to floe in a terminal, close this window: someone else did.</p>';
  return (
    `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${title}</title>` +
    '<meta name="viewport" content="width=device-width"><meta name="referrer" content="no-referrer"></head>' +
    `<body><h1>${title}</h1><p>${escape(outcome.message)}</p>${form}` +
    (outcome.ok && outcome.confirm === undefined ? '<p>You may close this window.</p>' : '') +
    '</body></html>\n'
  );
}

/** An HTML page as the answer of every status (routes a browser visits). */
const htmlPages = {
  200: { description: 'the next step, or the login complete', content: { 'text/html': { schema: Type.String() } } },
  '4xx': { description: 'login refused', content: { 'text/html': { schema: Type.String() } } },
  '5xx': { description: 'provider unavailable', content: { 'text/html': { schema: Type.String() } } },
};

const invalidForm: CallbackOutcome = {
  status: 400,
  ok: false,
  message: 'The form is not one floe accepts: go back and type the code again.',
  reason: 'invalid',
  authenticator: null,
  user: null,
};

/** Answer a browser with the page for `outcome`, and record it in the audit log as `action`. */
function answerPage(req: FastifyRequest, reply: FastifyReply, action: string, outcome: CallbackOutcome): FastifyReply {
  req.auditOverride = {
    action,
    outcome: outcome.ok ? 'ok' : 'error',
    reason: outcome.reason,
    error_code: outcome.ok ? null : 'login_failed',
    authenticator: outcome.authenticator,
    user_name: outcome.user,
    resource_kind: 'login',
  };
  return reply
    .code(outcome.status)
    .header('cache-control', 'no-store')
    .header('content-security-policy', "default-src 'none'; form-action 'self'")
    .header('referrer-policy', 'no-referrer')
    .type('text/html; charset=utf-8')
    .send(page(outcome));
}

const NO_LOGINS: OidcLoginDeps = {
  authenticators: new Map(),
  completeLogin: () => Promise.reject(new Error('no OpenID login is configured')),
};

/**
 * OpenID Connect login over HTTP, for the CLI and the browser: start (the provider's URL, a poll
 * secret and a code), the provider's return to floe (the configured `redirectUri` points at the
 * callback), the returning browser's confirmation with the code, and the client's poll for its
 * session. All four are public; without `deps` (no OpenID authenticator configured) a start answers
 * `authenticator_not_found`.
 */
export function installOidcLogin(app: Api, store: Store, deps: OidcLoginDeps | undefined): void {
  const logins = new OidcLoginService(store, deps ?? NO_LOGINS);

  app.post(
    '/v1/auth/oidc/:name/start',
    {
      config: { public: true },
      preValidation: bodyOptional,
      schema: {
        tags: ['auth'],
        summary:
          'Start a login with an OpenID provider: open `authorization_url` in a browser, then poll with `login_id` and `poll_secret`',
        security: [],
        params: OidcStartParams,
        body: strict(OidcStart),
        response: { 201: OidcLoginStarted, ...errors },
      },
    },
    async (req, reply) => {
      req.auditOverride = { action: 'auth.oidc_start', authenticator: req.params.name, resource_kind: 'login' };
      const started = await logins.start(req.params.name, { sessionName: req.body.session_name });
      req.auditOverride = { ...req.auditOverride, resource_id: started.login_id };
      return reply.code(201).send(started);
    },
  );

  app.get(
    '/v1/auth/oidc/callback',
    {
      config: { public: true },
      // A malformed query gets the same page as any other failure, not a JSON error in the browser.
      attachValidation: true,
      schema: {
        tags: ['auth'],
        summary:
          "Where the OpenID provider sends the browser back (the authenticator's `redirectUri`); answers a small HTML page",
        security: [],
        querystring: OidcCallbackQuery,
        response: htmlPages,
      },
    },
    async (req, reply) => {
      const outcome = await logins.callback(req.validationError === undefined ? req.query : 'invalid');
      return answerPage(req, reply, 'auth.oidc_callback', outcome);
    },
  );

  // The page's form is the one body floe takes form-encoded: the parser is registered for this route alone.
  void app.register((scope, _opts, registered) => {
    scope.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 4096 },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
    );
    scope.withTypeProvider<TypeBoxTypeProvider>().post(
      '/v1/auth/oidc/confirm',
      {
        config: { public: true },
        attachValidation: true,
        schema: {
          tags: ['auth'],
          summary:
            'The form of the page after the provider: the code the terminal shows confirms the login (answers a small HTML page)',
          security: [],
          consumes: ['application/x-www-form-urlencoded'],
          body: OidcConfirm,
          response: htmlPages,
        },
      },
      async (req, reply) => {
        const outcome =
          req.validationError === undefined ? await logins.confirm(req.body.confirm, req.body.code) : invalidForm;
        return answerPage(req, reply, 'auth.oidc_confirm', outcome);
      },
    );
    registered();
  });

  app.post(
    '/v1/auth/oidc/poll',
    {
      config: { public: true },
      schema: {
        tags: ['auth'],
        summary:
          'Collect the session of an OpenID login: 202 while the browser has not come back, 200 with the token exactly once, 410 once expired or collected',
        security: [],
        body: strict(OidcPoll),
        response: { 200: LoginSession, 202: OidcPollPending, ...errors },
      },
    },
    async (req, reply) => {
      req.auditOverride = { action: 'auth.oidc_poll', resource_kind: 'login', resource_id: req.body.login_id };
      let answer: Awaited<ReturnType<OidcLoginService['poll']>>;
      try {
        answer = await logins.poll(req.body.login_id, req.body.poll_secret, { remoteAddress: req.ip });
      } catch (err) {
        if (err instanceof FloeError && err.code === 'login_failed')
          req.auditOverride = { action: 'auth.login', resource_kind: 'login', resource_id: req.body.login_id };
        throw err;
      }
      if ('pending' in answer) {
        // A client polls every few seconds: waiting is not an event worth a record.
        req.auditOverride = null;
        return reply.code(202).send(answer.pending);
      }
      // The login proper: who logged in, through which authenticator.
      req.auditOverride = {
        ...req.auditOverride,
        action: 'auth.login',
        user_id: answer.user.id,
        user_name: answer.user.name,
        authenticator: answer.authenticator,
      };
      return reply.code(200).header('cache-control', 'no-store').send(answer.session);
    },
  );
}
