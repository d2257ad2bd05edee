/**
 * The API as the agent runs it: token file, TLS, listening, and binding
 * failures explained. buildApp (app.ts) stays free of process concerns.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Agent } from '../controller/agent.js';
import { AgentService } from './service.js';
import { ApiBindError, ApiTokenError } from '../errors.js';
import type { ApiSettings } from '../policy/index.js';
import { buildApp } from './app.js';
import { loadOrCreateToken, TokenCheck } from './auth.js';
import { listenersOn } from './sockets.js';

/** A listening API; close() stops it (and its counter sampling). */
export interface ApiServer {
  url: string;
  app: FastifyInstance;
  close(): Promise<void>;
}

/** Start the API of a started agent, with the API settings of its policy. */
export async function startApiServer(agent: Agent, log: Logger, service = new AgentService(agent, log)): Promise<ApiServer> {
  const settings = agent.state.policy.api;
  const { token, created } = loadOrCreateToken(settings.tokenFile);
  if (created) log.info({ tokenFile: settings.tokenFile }, 'created the API token file (mode 0600); API writes need "Authorization: Bearer <its content>"');
  const https = settings.tls ? readTls(settings.tls) : undefined;
  const app = await buildApp({ service, token: new TokenCheck(token), readsOpen: settings.readsOpen, log, ...(https ? { https } : {}) });
  const { host, port } = settings.listen;
  if (!isLoopback(host) && !https) {
    log.warn({ listen: `${host}:${port}` }, 'the API listens on a non-loopback address without TLS: the token and every request cross the network in clear; set api.tls or listen on 127.0.0.1');
  }
  try {
    await app.listen({ host, port });
  } catch (err) {
    await app.close();
    throw explainBindError(err, host, port);
  }
  service.startSampling();
  const url = `${https ? 'https' : 'http'}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  log.info({ url, readsOpen: settings.readsOpen, tls: Boolean(https) }, 'API listening');
  return {
    url,
    app,
    async close() {
      service.stopSampling();
      await app.close();
    },
  };
}

function readTls(tls: NonNullable<ApiSettings['tls']>): { cert: Buffer; key: Buffer } {
  try {
    return { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
  } catch (err) {
    throw new ApiTokenError(tls.cert, `cannot read api.tls cert or key: ${(err as Error).message}`);
  }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** A listen error as a message that says why and what to do. */
export function explainBindError(err: unknown, host: string, port: number, setting = 'api.listen'): Error {
  const code = (err as NodeJS.ErrnoException).code;
  const where = `${host}:${port}`;
  if (code === 'EACCES' && port < 1024) {
    return new ApiBindError(`cannot listen on ${where}: port ${port} < 1024 needs root or CAP_NET_BIND_SERVICE`, `choose a port ≥ 1024 in ${setting}, or grant CAP_NET_BIND_SERVICE`, err);
  }
  if (code === 'EADDRINUSE') {
    const holders = listenersOn(port, ['tcp'])
      .map((l) => (l.process ? `${l.process.command} (pid ${l.process.pid}) on ${l.address}` : `a process on ${l.address} (not readable)`));
    const who = holders.length ? `; held by ${[...new Set(holders)].join(', ')}` : '';
    return new ApiBindError(`cannot listen on ${where}: address already in use${who}`, `stop that process or choose another port in ${setting}`, err);
  }
  if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
    return new ApiBindError(`cannot listen on ${where}: no such address on this host`, 'use an address of this host (ip -br addr), 127.0.0.1, or 0.0.0.0', err);
  }
  return new ApiBindError(`cannot listen on ${where}: ${(err as Error).message}`, `check ${setting}`, err);
}
