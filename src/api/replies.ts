/**
 * What every route shares: body limits and the one error body of non-2xx
 * responses. Kept apart from app.ts so routes never import the app that
 * registers them.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, type ErrorCode } from '../errors.js';
import type { ErrorView, FieldError } from './schemas.js';

/** Largest request body outside PUT /v1/policy. */
export const BODY_LIMIT = 64 * 1024;
/** Largest policy PUT /v1/policy accepts (65,536 rules are ~5 MiB of YAML). */
export const POLICY_BODY_LIMIT = 32 * 1024 * 1024;

/** The one error body every non-2xx response has. */
export function errorBody(request: FastifyRequest, statusCode: number, code: string, message: string, errors?: FieldError[]): ErrorView {
  return { statusCode, error: STATUS_TEXT[statusCode] ?? 'Error', code, message, requestId: String(request.id), ...(errors ? { errors } : {}) };
}

/** Answer with one of our codes, at the HTTP status the error table (src/errors.ts) gives it. */
export function replyError(reply: FastifyReply, code: ErrorCode, message: string, errors?: FieldError[]): FastifyReply {
  const { status } = ERRORS[code];
  return reply.code(status).send(errorBody(reply.request, status, code, message, errors));
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};
