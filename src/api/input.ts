/**
 * What the API accepts from a client, before a handler sees it.
 *
 * URL parameters and query strings arrive as text, so their schemas are
 * checked with type coercion ("?top=10" is the integer 10). Bodies are JSON,
 * which has types of its own: they are never coerced. Coercion made the API
 * accept what the policy file refuses ({"port": true} became port 1,
 * "0x1e62" became 7778, ["tcp"] became "tcp", "" for an enum dropped the key).
 *
 * A rule body is judged by the policy validator itself, after it is written
 * into the policy text (controller/writes.ts): the API then refuses a value
 * with the very reason the file would get for it. Its schema only documents
 * the body (OpenAPI, handler types); here it is checked for what the file
 * cannot express (an object, no "name" key, a non-empty patch).
 *
 * JSON bodies are bounded in depth before they are parsed: a body nested
 * 10,000 levels deep overflowed the stack while the policy document was
 * built from it.
 */
import { Ajv, type ErrorObject } from 'ajv';
import type { FastifyBodyParser, FastifyRequest, FastifySchemaCompiler } from 'fastify';
import { CODE } from '../errors.js';

/**
 * Deepest nesting of arrays and objects a JSON body may have. A policy
 * needs four levels (rules → a rule → client → a key); the margin leaves
 * room for new keys, and any bound keeps recursion over the body shallow.
 */
export const MAX_JSON_DEPTH = 32;

/** A JSON body nested deeper than MAX_JSON_DEPTH: refused before parsing (400). */
export class BodyTooDeepError extends Error {
  readonly statusCode = 400;
  readonly code = CODE.PS_API_BODY_TOO_DEEP;

  constructor() {
    super(`the JSON body nests arrays and objects more than ${MAX_JSON_DEPTH} levels deep; a policy needs at most 4`);
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/**
 * Whether JSON text nests arrays and objects more than `max` levels deep.
 * One pass, O(n): strings are skipped with indexOf (they are most of a
 * policy's bytes), and it stops at the first level too many. Malformed JSON
 * is left for JSON.parse to report.
 */
export function nestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = endOfString(text, i);
    } else if (c === OPEN_BRACKET || c === OPEN_BRACE) {
      if (++depth > max) return true;
    } else if (c === CLOSE_BRACKET || c === CLOSE_BRACE) {
      depth--;
    }
  }
  return false;
}

/** Index of the quote that closes the string opened at `open` (text.length when unterminated). */
function endOfString(text: string, open: number): number {
  let i = open;
  for (;;) {
    i = text.indexOf('"', i + 1);
    if (i < 0) return text.length;
    // Escaped when an odd number of backslashes precede it.
    let slashes = 0;
    while (text.charCodeAt(i - 1 - slashes) === BACKSLASH) slashes++;
    if (slashes % 2 === 0) return i;
  }
}

type ParserCallback = (request: FastifyRequest, body: string, done: (err: Error | null, body?: unknown) => void) => void;

/** `parse` (fastify's JSON parser: prototype poisoning refused) behind the depth bound. */
export function depthBoundedJsonParser(parse: FastifyBodyParser<string>): ParserCallback {
  // getDefaultJsonParser returns the callback form.
  const parseJson = parse as ParserCallback;
  return (request, body, done) => {
    if (nestsDeeperThan(body, MAX_JSON_DEPTH)) {
      done(new BodyTooDeepError());
      return;
    }
    parseJson(request, body, done);
  };
}

/** Body schemas whose values the policy validator judges (see policyJudged). */
const POLICY_JUDGED = new WeakSet<object>();

/**
 * Mark a body schema whose values the policy validator judges: at the API
 * its values are not checked against the schema, so that a wrong value is
 * refused with the policy file's reason for it. Returns the schema.
 */
export function policyJudged<T extends object>(schema: T): T {
  POLICY_JUDGED.add(schema);
  return schema;
}

/** One problem, in the shape ajv reports them (app.ts maps those to fields). */
function problem(instancePath: string, message: string): ErrorObject {
  return { instancePath, schemaPath: '#', keyword: 'body', params: {}, message };
}

type BodyCheck = ((body: unknown) => boolean) & { errors?: ErrorObject[] | null };

/** The checks of a policy-judged body the policy text cannot make. */
function judgedBodyCheck(schema: { minProperties?: number }): BodyCheck {
  const check: BodyCheck = (body) => {
    const errors: ErrorObject[] = [];
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      const got = body === null ? 'nothing' : Array.isArray(body) ? 'a list' : `a ${typeof body}`;
      errors.push(problem('', `expected a JSON object of the rule's keys, got ${got}`));
    } else {
      // Written into the file, a "name" key would rename the rule the URL names.
      if (Object.hasOwn(body, 'name')) errors.push(problem('/name', 'the rule\'s name is the one in the URL; leave "name" out of the body'));
      if (schema.minProperties !== undefined && Object.keys(body).length < schema.minProperties) {
        errors.push(problem('', `a patch changes at least ${schema.minProperties} key; this one has none`));
      }
    }
    check.errors = errors.length ? errors : null;
    return !errors.length;
  };
  return check;
}

/**
 * The validator compiler of the app: coercing for URL parameters, query
 * strings and headers (text), strict for bodies (JSON), and the policy's own
 * judgement for rule bodies.
 */
export function requestValidatorCompiler(): FastifySchemaCompiler<unknown> {
  // removeAdditional and useDefaults off: a request is refused or taken as sent, never edited.
  const options = { allErrors: true, removeAdditional: false, useDefaults: false } as const;
  const text = new Ajv({ ...options, coerceTypes: 'array' });
  const json = new Ajv({ ...options, coerceTypes: false });
  return ({ schema, httpPart }) => {
    if (httpPart !== 'body') return text.compile(schema as object);
    if (typeof schema === 'object' && schema !== null && POLICY_JUDGED.has(schema)) return judgedBodyCheck(schema);
    return json.compile(schema as object);
  };
}
