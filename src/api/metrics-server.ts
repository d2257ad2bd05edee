/**
 * The metrics-only listener (metrics.listen, or agent --metrics-listen):
 * GET /metrics, /healthz and /readyz, no token, nothing else. On a fleet it
 * binds the node's address so Prometheus scrapes every node and kubelet
 * probes the pod without a `host:` field, while the REST API and its writes
 * stay on loopback.
 */
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { ShaperService } from './service.js';
import { CODE } from '../errors.js';
import { replyError } from './replies.js';
import { readListeningSockets } from './socket-table.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { explainBindError, type ApiServer } from './server.js';

/** Build the metrics-only app (not listening). */
export async function buildMetricsApp(deps: { service: ShaperService; log?: Logger }): Promise<FastifyInstance> {
  const app = Fastify({
    ...(deps.log ? { loggerInstance: deps.log as FastifyBaseLogger } : { logger: false }),
    // Scrapes and probes arrive every few seconds: one log line each would drown the log.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    bodyLimit: 1024,
  });
  app.setNotFoundHandler((request, reply) =>
    replyError(reply, CODE.PS_NOT_FOUND, `no route ${request.method} ${request.url}: this listener serves only GET /metrics, /healthz and /readyz; the REST API is on api.listen`),
  );
  await app.register(healthRoutes, { service: deps.service });
  await app.register(metricsRoutes, { service: deps.service, sockets: () => readListeningSockets() });
  return app;
}

/** Start the metrics-only listener on host:port. */
export async function startMetricsServer(service: ShaperService & { startSampling(): void; stopSampling(): void }, log: Logger, listen: { host: string; port: number }): Promise<ApiServer> {
  const app = await buildMetricsApp({ service, log });
  try {
    await app.listen(listen);
  } catch (err) {
    await app.close();
    throw explainBindError(err, listen.host, listen.port, 'metrics.listen (or --metrics-listen)');
  }
  service.startSampling();
  const url = `http://${isIP(listen.host) === 6 ? `[${listen.host}]` : listen.host}:${listen.port}`;
  log.info({ url }, 'metrics listener up (GET /metrics, /healthz, /readyz)');
  return {
    url,
    app,
    async close() {
      service.stopSampling();
      await app.close();
    },
  };
}
