/**
 * /v1/ports: every listening socket joined with the rules covering its port
 * and the traffic seen on it; /v1/ports/{port}: the rules that match a port,
 * their counters, and who listens on it here.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ShaperService } from '../service.js';
import { ephemeralRange, joinPorts } from '../ports.js';
import { PortsQuery, PortsView } from '../ports-schemas.js';
import { PortParams, PortView, type Listener } from '../schemas.js';
import type { OwnedSocket } from '../socket-table.js';

export interface PortRoutesOptions {
  service: ShaperService;
  listeners: (port: number) => Listener[];
  /** Every listening socket with its process. */
  sockets: () => OwnedSocket[];
}

export const portRoutes: FastifyPluginAsync<PortRoutesOptions> = async (app, { service, listeners, sockets }) => {
  app.get<{ Querystring: PortsQuery }>('/ports', {
    schema: {
      summary: 'Every listening TCP and UDP port with its process, the rules that cover it, configured and observed rates, drops, and flags worth a glance.',
      description:
        'Ports that carry traffic without a listener appear too: ports of side: remote rules, and, where interfaces[].countUnmatched is on, ' +
        'ports whose traffic no rule matched. Ports that look like the local end of outbound connections (no listener, inside ' +
        'net.ipv4.ip_local_port_range) are left out unless all=true. Sockets are those of the agent\'s network namespace.',
      tags: ['ports'],
      querystring: PortsQuery,
      response: { 200: PortsView },
    },
  }, async (request) => {
    const rules = service.listRules();
    const unmatched = service.unmatchedTraffic();
    const ports = joinPorts({ sockets: sockets(), rules, unmatched: unmatched.traffic, ephemeral: ephemeralRange() });
    const windows = [unmatched.windowSeconds, ...rules.flatMap((r) => [r.observed.ingress?.windowSeconds ?? 0, r.observed.egress?.windowSeconds ?? 0])];
    return {
      ports: request.query.all ? ports : ports.filter((p) => !p.ephemeral),
      countingUnmatched: unmatched.counting,
      windowSeconds: Math.max(...windows),
    };
  });

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
