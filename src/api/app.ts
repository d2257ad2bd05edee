/**
 * Builds the REST API (fastify) without listening: the agent's server.ts
 * listens, tests call app.inject(). One encapsulated plugin per resource;
 * every route has TypeBox schemas, which also make /openapi.json.
 */
import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { ShaperService } from './service.js';
import { CODE, ERRORS, formatDiagnostic, PersistError, PolicyChangeError, PolicyError, PolicyFileInvalidError, PortshaperError, type Diagnostic } from '../errors.js';
import type { TokenCheck } from './auth.js';
import { collectOpenApi } from './openapi.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { policyRoutes } from './routes/policy.js';
import { portRoutes } from './routes/ports.js';
import { ruleRoutes } from './routes/rules.js';
import { statsRoutes } from './routes/stats.js';
import { BODY_LIMIT, errorBody, replyError } from './replies.js';
import { depthBoundedJsonParser, requestValidatorCompiler } from './input.js';
import type { FieldError, Listener } from './schemas.js';
import { listenersOn } from './sockets.js';
import { readListeningSockets, readOwnedSockets, type ListeningSocket, type OwnedSocket } from './socket-table.js';

/** What the API is built from. */
export interface AppDeps {
  service: ShaperService;
  /** Checks the bearer token of writes (and of reads unless readsOpen). */
  token: TokenCheck;
  readsOpen: boolean;
  /** The agent's logger; none in tests. */
  log?: Logger;
  /** Serve HTTPS with this certificate chain and key (PEM). */
  https?: { cert: Buffer; key: Buffer };
  /** Listening sockets of a port (default: read /proc/net). */
  listeners?: (port: number) => Listener[];
  /** Every listening socket, without and with its process (default: read /proc). */
  sockets?: { listening: () => ListeningSocket[]; owned: () => OwnedSocket[] };
}

declare module 'fastify' {
  /** Documentation keys of a route schema, copied into /openapi.json (fastify ignores them). */
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    /** Media types of the body (default application/json). */
    consumes?: string[];
    /** Media types of the 200 response (default application/json). */
    produces?: string[];
  }
  interface FastifyContextConfig {
    /** Served without a token even when reads are closed (health checks). */
    public?: boolean;
  }
}

/** Build the app (routes registered, not listening). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  // The server's type differs with https; routes do not care which it is.
  const app = Fastify({
    ...(deps.https ? { https: deps.https } : {}),
    ...(deps.log ? { loggerInstance: deps.log as FastifyBaseLogger } : { logger: false }),
    // Requests are logged by the writes themselves ("policy applied") and by the error handler; one line per GET would drown the log.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    bodyLimit: BODY_LIMIT,
  });
  // Query strings are coerced, bodies never (input.ts says why).
  app.setValidatorCompiler(requestValidatorCompiler());
  const openApi = collectOpenApi(app);

  // JSON (application/json and merge-patch+json, depth bounded) for rules; YAML as text for the policy. Anything else: 415.
  app.removeContentTypeParser(['application/json', 'text/plain']);
  const json = depthBoundedJsonParser(app.getDefaultJsonParser('error', 'error'));
  app.addContentTypeParser(['application/json', 'application/merge-patch+json'], { parseAs: 'string' }, json);
  app.addContentTypeParser(['application/yaml', 'application/x-yaml', 'text/yaml'], { parseAs: 'string' }, (_req, body, done) => done(null, body));

  app.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
    if (request.routeOptions.config.public) return;
    const isRead = request.method === 'GET' || request.method === 'HEAD';
    if (isRead && deps.readsOpen) return;
    if (deps.token.accepts(request.headers.authorization)) return;
    void reply.header('www-authenticate', 'Bearer realm="portshaper"');
    return replyError(reply, CODE.PS_UNAUTHORIZED, isRead ? 'reads need "Authorization: Bearer <token>" (api.readsOpen is false)' : 'writes need "Authorization: Bearer <token>"; the token is in the file named by api.tokenFile');
  });

  app.setErrorHandler((error: FastifyError, request, reply) => sendError(error, request, reply, deps.log));
  app.setNotFoundHandler((request, reply) => replyError(reply, CODE.PS_NOT_FOUND, `no route ${request.method} ${request.url}; see /openapi.json`));

  await app.register(healthRoutes, { service: deps.service });
  await app.register(ruleRoutes, { service: deps.service, prefix: '/v1' });
  const sockets = deps.sockets ?? { listening: () => readListeningSockets(), owned: () => readOwnedSockets() };
  await app.register(portRoutes, { service: deps.service, listeners: deps.listeners ?? listenersOn, sockets: sockets.owned, prefix: '/v1' });
  await app.register(statsRoutes, { service: deps.service });
  await app.register(metricsRoutes, { service: deps.service, sockets: sockets.listening });
  await app.register(policyRoutes, { service: deps.service, prefix: '/v1' });
  app.get(
    '/openapi.json',
    { schema: { summary: 'This document (OpenAPI 3.1), generated from the route schemas.', tags: ['meta'] } },
    async () => openApi(),
  );
  return app;
}

/**
 * Map any error to its status and body: ours by the error table (src/errors.ts),
 * fastify's by their statusCode. 5xx bodies say nothing about internals, the log
 * has it under the request id.
 */
function sendError(error: FastifyError, request: FastifyRequest, reply: FastifyReply, log?: Logger): FastifyReply {
  if (error.validation) {
    const where = error.validationContext ?? 'body';
    const errors = error.validation.map((v) => {
      const params = v.params as Record<string, unknown>;
      const key = params.missingProperty ?? params.additionalProperty;
      const path = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
      const field = [path, key].filter((p) => p !== undefined && p !== '').join('.') || where;
      const reason = params.additionalProperty !== undefined ? `unknown key "${String(key)}"` : (v.message ?? 'invalid');
      return { field: where === 'body' ? field : `${where}.${field}`, reason };
    });
    return replyError(reply, CODE.PS_API_INVALID_REQUEST, `invalid ${where}: ${errors.map((e) => `${e.field}: ${e.reason}`).join('; ')}`, errors);
  }
  // A refusal (a bad change, a conflict, a foreign qdisc, a read-only file): nothing was changed, the message says why.
  if (error instanceof PortshaperError && ERRORS[error.code].status < 500) return replyError(reply, error.code, error.message, fieldProblems(error));
  const status = error.statusCode ?? 500;
  if (status === 413) return replyError(reply, CODE.PS_API_BODY_TOO_LARGE, error.message);
  if (status === 415) return replyError(reply, CODE.PS_API_UNSUPPORTED_MEDIA_TYPE, `${error.message}; send application/json (rules) or application/yaml / application/json (policy)`);
  // fastify's own 4xx (a malformed JSON body…) keep fastify's code, as its message is fastify's too.
  if (status >= 400 && status < 500 && !(error instanceof PortshaperError)) {
    return reply.code(status).send(errorBody(request, status, error.code ?? CODE.PS_API_INVALID_REQUEST, error.message));
  }
  log?.error({ requestId: request.id, method: request.method, url: request.url, err: error }, 'API request failed');
  if (error instanceof PersistError) {
    return replyError(reply, error.code, `the change could not be saved in the policy file and was rolled back; the agent logged why under request id ${String(request.id)}`);
  }
  return replyError(reply, CODE.PS_INTERNAL, `internal error; the agent logged the details under request id ${String(request.id)}`);
}

/** The per-field reasons of a refusal: a change's problems, or a policy's errors as positioned lines. */
function fieldProblems(error: PortshaperError): FieldError[] | undefined {
  if (error instanceof PolicyChangeError) return error.problems;
  if (error instanceof PolicyFileInvalidError) return diagnosticProblems('policy file', error.diagnostics);
  if (error instanceof PolicyError) return diagnosticProblems('policy', error.diagnostics);
  return undefined;
}

function diagnosticProblems(field: string, diagnostics: Diagnostic[]): FieldError[] {
  return diagnostics.filter((d) => d.severity === 'error').map((d) => ({ field, reason: formatDiagnostic(d) }));
}
