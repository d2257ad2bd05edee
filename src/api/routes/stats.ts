/** /v1/stats: global counters as JSON (/metrics is in metrics.ts). */
import type { FastifyPluginAsync } from 'fastify';
import type { ShaperService } from '../service.js';
import { StatsView } from '../schemas.js';

export const statsRoutes: FastifyPluginAsync<{ service: ShaperService }> = async (app, { service }) => {
  app.get('/v1/stats', {
    schema: {
      summary: 'Traffic no rule accounts for (non-IP, unparsed, fragments, unmatched), per interface and direction; matched traffic is counted per rule.',
      tags: ['stats'],
      response: { 200: StatsView },
    },
  }, async () => service.stats());
};
