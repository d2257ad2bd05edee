/** /healthz (the process answers) and /readyz (program attached and maps reachable on every interface). */
import type { FastifyPluginAsync } from 'fastify';
import type { ShaperService } from '../service.js';
import { HealthView, ReadyView } from '../schemas.js';

export const healthRoutes: FastifyPluginAsync<{ service: ShaperService }> = async (app, { service }) => {
  app.get('/healthz', {
    config: { public: true },
    schema: { summary: 'Liveness: the agent process answers.', tags: ['health'], response: { 200: HealthView } },
  }, async () => ({ status: 'ok' as const }));

  app.get('/readyz', {
    config: { public: true },
    schema: {
      summary: 'Readiness: our program is attached on every hook the policy asks for, and the pinned maps are reachable.',
      tags: ['health'],
      response: { 200: ReadyView, 503: ReadyView },
    },
  }, async (_request, reply) => {
    const ready = service.ready();
    return reply.code(ready.ready ? 200 : 503).send(ready);
  });
};
