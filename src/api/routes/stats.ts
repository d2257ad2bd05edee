/** /v1/stats (global counters as JSON) and /metrics (everything, in Prometheus text format). */
import type { FastifyPluginAsync } from 'fastify';
import type { ShaperService } from '../service.js';
import { PS } from '../../kernel/layout.js';
import { METRICS_CONTENT_TYPE, renderMetrics } from '../metrics.js';
import { StatsView } from '../schemas.js';
import type { ListeningSocket } from '../socket-table.js';
import { VERSION } from '../version.js';

export const statsRoutes: FastifyPluginAsync<{ service: ShaperService; sockets: () => ListeningSocket[] }> = async (app, { service, sockets }) => {
  app.get('/v1/stats', {
    schema: {
      summary: 'Traffic no rule accounts for (non-IP, unparsed, fragments, unmatched) and matched traffic, per interface and direction.',
      tags: ['stats'],
      response: { 200: StatsView },
    },
  }, async () => service.stats());

  app.get('/metrics', {
    schema: { summary: 'Prometheus text exposition: rule counters, configured and observed rates, interface counters, build info.', tags: ['stats'], produces: [METRICS_CONTENT_TYPE] },
  }, async (_request, reply) => {
    const text = renderMetrics(service.listRules(), service.stats(), { version: VERSION, layout: PS.PS_LAYOUT_VERSION }, sockets());
    return reply.type(METRICS_CONTENT_TYPE).send(text);
  });
};
