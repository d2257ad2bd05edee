/**
 * The REST API as the CLI's status/set/rm use it: where the agent listens
 * and which token to send come from the flags, else from the policy's api:
 * section, else the defaults (http://127.0.0.1:9180, /var/lib/portshaper/token).
 */
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ErrorView } from '../api/schemas.js';
import { ApiUnreachable, UsageError } from '../errors.js';
import { ifNameToIndex } from '../kernel/libc.js';
import { parsePolicy, validatePolicy } from '../policy/index.js';
import { DEFAULT_POLICY } from './agent.js';


/** Options every client command takes. */
export const CLIENT_OPTIONS = {
  api: { type: 'string' },
  'token-file': { type: 'string' },
  policy: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const CLIENT_HELP = `  --api URL              the agent's API (default: api.listen of the policy,
                         else http://127.0.0.1:9180)
  --token-file FILE      bearer token (default: api.tokenFile of the policy,
                         else /var/lib/portshaper/token)
  --policy FILE          policy to read those defaults from (default
                         ${DEFAULT_POLICY}, when it exists)
  --json                 print the API's JSON response
  -h, --help             show this help`;

/** The outcome of one request: the status and the parsed JSON body (undefined when empty). */
export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** A client for one agent. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
  ) {}

  /** Build from command-line values. */
  static fromOptions(values: { api?: string; 'token-file'?: string; policy?: string }): ApiClient {
    const settings = policyApiSettings(values.policy);
    const baseUrl = (values.api ?? settings?.url ?? 'http://127.0.0.1:9180').replace(/\/+$/, '');
    const tokenFile = values['token-file'] ?? settings?.tokenFile ?? '/var/lib/portshaper/token';
    let token: string | undefined;
    try {
      token = readFileSync(tokenFile, 'utf8').trim();
    } catch (err) {
      // Reads may be open; a write without the token gets a 401 that says what is missing.
      if (values['token-file'] !== undefined) throw new UsageError(`cannot read --token-file ${tokenFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    return new ApiClient(baseUrl, token);
  }

  /** Send a request; throws ApiUnreachable when the agent cannot be reached. */
  async request<T>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}${path}`, { method, headers, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiUnreachable(this.baseUrl, cause?.code ?? cause?.message ?? String(err));
    }
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
  }
}

/** Print an API error for a human, field by field; returns the exit code (1 for 4xx, 2 otherwise). */
export function reportApiError(res: ApiResponse<unknown>, json: boolean): number {
  const err = res.body as Partial<ErrorView> | undefined;
  if (json) process.stdout.write(`${JSON.stringify(res.body, null, 2)}\n`);
  else {
    process.stderr.write(`portshaper: ${err?.message ?? `HTTP ${res.status}`}${err?.code ? ` [${err.code}]` : ''}\n`);
    for (const e of err?.errors ?? []) process.stderr.write(`  ${e.field}: ${e.reason}\n`);
  }
  return res.status >= 400 && res.status < 500 ? 1 : 2;
}

/** API URL and token file from a policy's api: section, when the policy can be read. */
function policyApiSettings(path: string | undefined): { url: string; tokenFile: string } | undefined {
  const file = path ?? DEFAULT_POLICY;
  if (path === undefined && !existsSync(file)) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --policy ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const { policy } = validatePolicy(parsePolicy(text, file), { interfaceExists: (name) => ifNameToIndex(name) !== 0 });
  if (!policy) return undefined;
  const { listen, tls, tokenFile } = policy.api;
  // A wildcard address is reached through loopback.
  const host = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
  return { url: `${tls ? 'https' : 'http'}://${isIP(host) === 6 ? `[${host}]` : host}:${listen.port}`, tokenFile };
}
