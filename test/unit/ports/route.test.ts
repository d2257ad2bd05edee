/** GET /v1/ports through app.inject(), and the per-listener gauge in /metrics. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../src/api/app.js';
import { TokenCheck } from '../../../src/api/auth.js';
import type { OwnedSocket } from '../../../src/api/socket-table.js';
import { FakeService } from '../api/fake.js';

const sockets: OwnedSocket[] = [
  { protocol: 'tcp', family: 4, address: '0.0.0.0', port: 80, scope: 'wildcard', uid: 0, inode: 1, process: { pid: 1, command: 'nginx' } },
  { protocol: 'tcp', family: 6, address: '::', port: 80, scope: 'wildcard', uid: 0, inode: 2, process: { pid: 1, command: 'nginx' } },
  { protocol: 'udp', family: 4, address: '127.0.0.53', port: 53, scope: 'loopback', uid: 101, inode: 3 },
];

describe('GET /v1/ports', () => {
  let app: FastifyInstance;
  const service = new FakeService();
  service.unmatchedTraffic = () => ({
    counting: true,
    windowSeconds: 5,
    traffic: [
      { direction: 'ingress' as const, protocol: 'udp' as const, port: 53, packets: 9, bytes: 900, bitsPerSecond: 1440, packetsPerSecond: 2 },
      { direction: 'egress' as const, protocol: 'tcp' as const, port: 45000, packets: 9, bytes: 900, bitsPerSecond: 1440, packetsPerSecond: 2 },
    ],
  });
  beforeAll(async () => {
    app = await buildApp({ service, token: new TokenCheck('t'.repeat(32)), readsOpen: true, sockets: { listening: () => sockets, owned: () => sockets } });
  });
  afterAll(() => app.close());

  it('joins listeners, rules and unmatched traffic, without ephemeral ports unless all=true', async () => {
    const r = await app.inject({ method: 'GET', url: '/v1/ports' });
    expect(r.statusCode).toBe(200);
    const body = r.json();
    expect(body.countingUnmatched).toBe(true);
    expect(body.ports.map((p: { port: number; protocol: string }) => `${p.port}/${p.protocol}`)).toEqual(['53/udp', '80/tcp']);
    expect(body.ports[0]).toMatchObject({ listeners: [{ address: '127.0.0.53', scope: 'loopback', uid: 101 }], ingress: { source: 'unmatched', bitsPerSecond: 1440 } });
    expect(body.ports[1]).toMatchObject({ listeners: [{ process: { command: 'nginx' } }, { address: '::' }], ingress: { source: 'rule', rules: [{ name: 'web' }] } });
    const all = (await app.inject({ method: 'GET', url: '/v1/ports?all=true' })).json();
    expect(all.ports.map((p: { port: number }) => p.port)).toEqual([53, 80, 45000]);
  });

  it('exports one gauge per listening port and protocol', async () => {
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('# TYPE portshaper_listening_sockets gauge');
    expect(text).toContain('portshaper_listening_sockets{port="53",protocol="udp"} 1');
    expect(text).toContain('portshaper_listening_sockets{port="80",protocol="tcp"} 2');
  });
});
