/**
 * The REST API as the CLI's status/set/rm use it: where the agent listens
 * and which token to send come from the flags, else from the policy's api:
 * section, else the defaults (http://127.0.0.1:9180, /var/lib/portshaper/token).
 * Over https the agent's certificate is checked against the CA given with
 * --ca (or PORTSHAPER_CA), else against Node's bundled CAs.
 */
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
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
  ca: { type: 'string' },
  policy: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const CLIENT_HELP = `  --api URL              the agent's API (default: api.listen of the policy,
                         else http://127.0.0.1:9180)
  --token-file FILE      bearer token (default: api.tokenFile of the policy,
                         else /var/lib/portshaper/token)
  --ca FILE              with an https API, trust the CA certificate(s) in
                         FILE (PEM) instead of the bundled ones, e.g. the CA
                         that signed api.tls.cert (default: $PORTSHAPER_CA)
  --policy FILE          policy to read those defaults from (default
                         ${DEFAULT_POLICY}, when it exists)
  --json                 print the API's JSON response
  -h, --help             show this help`;

/** The outcome of one request: the status and the parsed JSON body (undefined when empty). */
export interface ApiResponse<T> {
  status: number;
  body: T;
}

/** Verification failures of the server's certificate that a CA the client trusts would fix (OpenSSL's names). */
const UNTRUSTED_CERT = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
]);

/** A client for one agent. */
export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string | undefined,
    /** CA certificates (PEM) to verify an https API with, instead of the bundled ones. */
    private readonly ca?: Buffer,
  ) {}

  /** Build from command-line values (and PORTSHAPER_CA). */
  static fromOptions(values: { api?: string; 'token-file'?: string; ca?: string; policy?: string }, env: NodeJS.ProcessEnv = process.env): ApiClient {
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
    const caFile = values.ca ?? (env.PORTSHAPER_CA || undefined);
    let ca: Buffer | undefined;
    if (caFile !== undefined) {
      const from = values.ca !== undefined ? '--ca' : 'PORTSHAPER_CA';
      try {
        ca = readFileSync(caFile);
      } catch (err) {
        throw new UsageError(`cannot read ${from} ${caFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`${from} ${caFile} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
    }
    return new ApiClient(baseUrl, token, ca);
  }

  /** Send a request; throws ApiUnreachable when the agent cannot be reached or its certificate is not trusted. */
  async request<T>(method: string, path: string, body?: unknown): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    const payload = body !== undefined ? JSON.stringify(body) : undefined;
    if (payload !== undefined) headers['content-type'] = 'application/json';
    const url = new URL(`${this.baseUrl}${path}`);
    // node:http(s) rather than fetch: fetch in Node 20 cannot be given a CA without the undici package.
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = send(url, { method, headers, ...(this.ca ? { ca: this.ca } : {}) }, (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', (err) => reject(this.unreachable(err, url)));
      req.end(payload);
    });
    return { status, body: (text ? JSON.parse(text) : undefined) as T };
  }

  /** Why a request failed, for a human: an untrusted or misnamed certificate says what to pass. */
  private unreachable(err: NodeJS.ErrnoException, url: URL): ApiUnreachable {
    const code = err.code ?? err.message;
    if (UNTRUSTED_CERT.has(code)) {
      const trusted = this.ca ? 'the CA given with --ca / PORTSHAPER_CA' : "Node's bundled CAs";
      return new ApiUnreachable(this.baseUrl, `its TLS certificate is not signed by ${trusted}: ${code}`, 'pass the CA certificate that signed api.tls.cert with --ca FILE (or PORTSHAPER_CA=FILE)');
    }
    if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
      return new ApiUnreachable(this.baseUrl, `its TLS certificate does not name ${url.hostname}: ${code}`, 'reach the agent by a name or address its certificate lists (--api)');
    }
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
      return new ApiUnreachable(this.baseUrl, `its TLS certificate is not valid now: ${code}`, 'renew api.tls.cert on the agent (or check this host\'s clock)');
    }
    return new ApiUnreachable(this.baseUrl, code);
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
