/**
 * The OpenAPI 3.1 document, generated from the schemas the routes are
 * registered with (collected by an onRoute hook), so it cannot drift from
 * what the server validates and sends. OpenAPI 3.1 uses JSON Schema 2020-12,
 * which TypeBox schemas are.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import { VERSION } from './version.js';

interface RouteSchema {
  summary?: string;
  description?: string;
  tags?: string[];
  params?: { properties?: Record<string, unknown>; required?: string[] };
  querystring?: { properties?: Record<string, unknown>; required?: string[] };
  body?: unknown;
  response?: Record<string, unknown>;
  /** Media types the body may have (default application/json). */
  consumes?: string[];
  /** Media types of the 200 response (default application/json). */
  produces?: string[];
}

const STATUS_DESCRIPTION: Record<string, string> = {
  200: 'OK',
  201: 'Created',
  204: 'No Content',
  400: 'Invalid request: every problem with its field',
  401: 'Missing or wrong bearer token',
  404: 'No such rule',
  409: 'The change conflicts with another rule, or the policy file on disk is invalid',
  413: 'Body too large',
  415: 'Unsupported content type',
  500: 'Internal error (details in the agent log under the request id)',
  503: 'Not ready',
};

/** Start collecting routes on app; returns a function that builds the document. */
export function collectOpenApi(app: FastifyInstance): () => Record<string, unknown> {
  const routes: RouteOptions[] = [];
  app.addHook('onRoute', (route) => {
    if (route.method !== 'HEAD') routes.push(route);
  });
  let built: Record<string, unknown> | undefined;
  return () => (built ??= document(routes));
}

function document(routes: RouteOptions[]): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const schema = (route.schema ?? {}) as RouteSchema;
    const path = route.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      const op: Record<string, unknown> = {};
      if (schema.summary) op.summary = schema.summary;
      if (schema.description) op.description = schema.description;
      if (schema.tags) op.tags = schema.tags;
      const parameters = [
        ...paramsOf(schema.params, 'path'),
        ...paramsOf(schema.querystring, 'query'),
      ];
      if (parameters.length) op.parameters = parameters;
      if (schema.body) {
        const types = schema.consumes ?? ['application/json'];
        op.requestBody = { required: true, content: Object.fromEntries(types.map((t) => [t, { schema: plain(schema.body) }])) };
      }
      const responses: Record<string, unknown> = {};
      for (const [status, body] of Object.entries(schema.response ?? {})) {
        const types = status === '200' && schema.produces ? schema.produces : ['application/json'];
        responses[status] =
          status === '204'
            ? { description: STATUS_DESCRIPTION[status] }
            : { description: STATUS_DESCRIPTION[status] ?? status, content: Object.fromEntries(types.map((t) => [t, { schema: plain(body) }])) };
      }
      if (!Object.keys(responses).length) responses['200'] = { description: 'OK' };
      op.responses = responses;
      if (method !== 'GET' || path === '/metrics') op.security = [{ bearer: [] }];
      (paths[path] ??= {})[method.toLowerCase()] = op;
    }
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'portshaper agent API',
      version: VERSION,
      description:
        'Per-port rate limits of one host. Writes change the policy file (comments kept) and are in force in the kernel ' +
        'before the response; they need "Authorization: Bearer <token>" (the token is in api.tokenFile). Reads need it ' +
        'too when api.readsOpen is false, except /healthz and /readyz.',
    },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    paths,
  };
}

function paramsOf(schema: RouteSchema['params'], where: 'path' | 'query'): unknown[] {
  return Object.entries(schema?.properties ?? {}).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || (schema?.required ?? []).includes(name),
    schema: plain(s),
  }));
}

/** A JSON copy: TypeBox's symbol keys are left out. */
function plain(schema: unknown): unknown {
  return JSON.parse(JSON.stringify(schema)) as unknown;
}
