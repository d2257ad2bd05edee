/** /v1/ports/{port}: the rules that match a port, their counters, and who listens on it here. */
import type { FastifyPluginAsync } from 'fastify';
import type { ShaperService } from '../service.js';
import { PortParams, PortView, type Listener } from '../schemas.js';

export const portRoutes: FastifyPluginAsync<{ service: ShaperService; listeners: (port: number) => Listener[] }> = async (app, { service, listeners }) => {
  app.get<{ Params: PortParams }>('/ports/:port', {
    schema: {
      summary: 'Everything about one port: matching rules with counters, and the local sockets listening on it.',
      description: 'Shows at once whether a limited port has a listener. Sockets are those of the agent\'s network namespace.',
      tags: ['ports'],
      params: PortParams,
      response: { 200: PortView },
    },
  }, async (request) => {
    const { port } = request.params;
    return { port, rules: service.rulesForPort(port), listeners: listeners(port) };
  });
};
