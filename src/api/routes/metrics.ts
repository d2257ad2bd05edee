/** /metrics: everything in Prometheus text format; served by the API and by the metrics-only listener. */
import type { FastifyPluginAsync } from 'fastify';
import type { ShaperService } from '../service.js';
import type { ListeningSocket } from '../socket-table.js';
import { PS } from '../../kernel/layout.js';
import { METRICS_CONTENT_TYPE, renderMetrics } from '../metrics.js';
import { VERSION } from '../version.js';

export const metricsRoutes: FastifyPluginAsync<{ service: ShaperService; sockets: () => ListeningSocket[] }> = async (app, { service, sockets }) => {
  app.get('/metrics', {
    schema: {
      summary: 'Prometheus text exposition: rule counters (the first metrics.maxRules rules), all-rules totals, configured and observed rates, interface counters, the policy in force and its reloads, build info.',
      tags: ['stats'],
      produces: [METRICS_CONTENT_TYPE],
    },
  }, async (_request, reply) => {
    // Per-rule views only for the rules that get series: a scrape of 65,536 rules costs what 200 do.
    const state = service.metricsState();
    const text = renderMetrics(service.listRules(state.maxRules), service.stats(), { version: VERSION, layout: PS.PS_LAYOUT_VERSION }, state, sockets());
    return reply.type(METRICS_CONTENT_TYPE).send(text);
  });
};
