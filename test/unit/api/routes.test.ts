/** Every route and status code through app.inject(), with a fake service (no agent, no kernel, no port opened). */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../src/api/app.js';
import { BODY_LIMIT } from '../../../src/api/replies.js';
import { TokenCheck } from '../../../src/api/auth.js';
import { PersistError, PolicyFileInvalidError } from '../../../src/errors.js';
import { FakeService } from './fake.js';

const TOKEN = 'a'.repeat(64);
const auth = { authorization: `Bearer ${TOKEN}` };

describe('REST API routes', () => {
  let service: FakeService;
  let app: FastifyInstance;
  const build = async (readsOpen = true) => {
    await app?.close();
    app = await buildApp({ service, token: new TokenCheck(TOKEN), readsOpen, listeners: () => [{ protocol: 'tcp', address: '0.0.0.0', port: 80, inode: 1, process: { pid: 1, command: 'nginx' } }] });
  };
  beforeEach(async () => {
    service = new FakeService();
    await build();
  });
  afterEach(async () => app.close());

  it('GET /v1/rules and /v1/rules/{name}: 200 with counters and observed rates', async () => {
    const list = await app.inject({ method: 'GET', url: '/v1/rules' });
    expect(list.statusCode).toBe(200);
    expect(list.json().rules[0]).toMatchObject({ name: 'web', port: 80, counters: { ingress: { droppedPackets: 2 } }, observed: { ingress: { bitsPerSecond: 8000 } } });
    expect((await app.inject({ method: 'GET', url: '/v1/rules/web' })).json().rate).toBe('10mbit');
  });

  it('404 for an unknown rule and an unknown route, with a request id', async () => {
    const r = await app.inject({ method: 'GET', url: '/v1/rules/nope' });
    expect(r.statusCode).toBe(404);
    expect(r.json()).toMatchObject({ code: 'PS_RULE_NOT_FOUND', requestId: r.headers['x-request-id'] });
    expect((await app.inject({ method: 'GET', url: '/v2/whatever' })).statusCode).toBe(404);
    expect((await app.inject({ method: 'PATCH', url: '/v1/rules/nope', headers: auth, payload: { rate: '1mbit' } })).statusCode).toBe(404);
    expect((await app.inject({ method: 'DELETE', url: '/v1/rules/nope', headers: auth })).statusCode).toBe(404);
  });

  it('PUT: 201 when created, 200 when replaced; DELETE 204', async () => {
    const created = await app.inject({ method: 'PUT', url: '/v1/rules/api', headers: auth, payload: { port: 8080, rate: '5mbit' } });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ name: 'api', port: 8080, rateBitsPerSecond: 5_000_000 });
    const replaced = await app.inject({ method: 'PUT', url: '/v1/rules/api', headers: auth, payload: { port: 8080, rate: '6mbit' } });
    expect(replaced.statusCode).toBe(200);
    const patched = await app.inject({ method: 'PATCH', url: '/v1/rules/api', headers: { ...auth, 'content-type': 'application/merge-patch+json' }, payload: JSON.stringify({ rate: '7mbit' }) });
    expect(patched.statusCode).toBe(200);
    expect(patched.json().rate).toBe('7mbit');
    const deleted = await app.inject({ method: 'DELETE', url: '/v1/rules/api', headers: auth });
    expect(deleted.statusCode).toBe(204);
    expect(deleted.body).toBe('');
  });

  it('400 names the field and the reason: bad name or port parameter, a body that is not a rule, an empty patch', async () => {
    // The values of a rule body are judged by the policy validator (hostile.test.ts runs it); the fake does not validate.
    expect((await app.inject({ method: 'PUT', url: '/v1/rules/Bad%20Name', headers: auth, payload: { port: 1 } })).json().errors[0].field).toBe('params.name');
    expect((await app.inject({ method: 'GET', url: '/v1/ports/70000' })).statusCode).toBe(400);
    const named = await app.inject({ method: 'PUT', url: '/v1/rules/api', headers: auth, payload: { name: 'other', port: 8080 } });
    expect(named.statusCode).toBe(400);
    expect(named.json()).toMatchObject({ code: 'PS_API_INVALID_REQUEST', errors: [{ field: 'name', reason: expect.stringMatching(/URL/) }] });
    const scalar = await app.inject({ method: 'PUT', url: '/v1/rules/api', headers: { ...auth, 'content-type': 'application/json' }, payload: '8080' });
    expect(scalar.json().errors).toEqual([{ field: 'body', reason: "expected a JSON object of the rule's keys, got a number" }]);
    const empty = await app.inject({ method: 'PATCH', url: '/v1/rules/web', headers: auth, payload: {} });
    expect(empty.statusCode).toBe(400);
    expect(service.rules.has('api')).toBe(false);
  });

  it('409 when the change overlaps another rule, with the field', async () => {
    const r = await app.inject({ method: 'PUT', url: '/v1/rules/other', headers: auth, payload: { port: 80, rate: '1mbit' } });
    expect(r.statusCode).toBe(409);
    expect(r.json()).toMatchObject({ code: 'PS_POLICY_CONFLICT', errors: [{ field: 'port', reason: 'overlaps rule "web"' }] });
  });

  it('409 when the policy file on disk was edited and is invalid', async () => {
    service.failWith = new PolicyFileInvalidError('/etc/p.yaml', [{ file: '/etc/p.yaml', line: 3, column: 5, message: 'rules[0].rate: bad', severity: 'error' }]);
    const r = await app.inject({ method: 'PATCH', url: '/v1/rules/web', headers: auth, payload: { rate: '1mbit' } });
    expect(r.statusCode).toBe(409);
    expect(r.json().errors[0].reason).toBe('/etc/p.yaml:3:5: rules[0].rate: bad');
  });

  it('401 for writes without or with a wrong token; reads need it only when readsOpen is false; health is always open', async () => {
    expect((await app.inject({ method: 'PUT', url: '/v1/rules/x', payload: { port: 1 } })).statusCode).toBe(401);
    const wrong = await app.inject({ method: 'DELETE', url: '/v1/rules/web', headers: { authorization: 'Bearer nope' } });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['www-authenticate']).toMatch(/^Bearer/);
    expect(service.rules.has('web')).toBe(true);
    await build(false);
    expect((await app.inject({ method: 'GET', url: '/v1/rules' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/metrics' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'GET', url: '/v1/rules', headers: auth })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  it('413 for an oversized body', async () => {
    const r = await app.inject({ method: 'PUT', url: '/v1/rules/x', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ port: 1, rate: 'x'.repeat(BODY_LIMIT) }) });
    expect(r.statusCode).toBe(413);
    expect(r.json().code).toBe('PS_API_BODY_TOO_LARGE');
  });

  it('415 for a wrong content type (text/plain anywhere, YAML for a rule)', async () => {
    const plain = await app.inject({ method: 'PUT', url: '/v1/rules/x', headers: { ...auth, 'content-type': 'text/plain' }, payload: 'port: 1' });
    expect(plain.statusCode).toBe(415);
    const yaml = await app.inject({ method: 'PUT', url: '/v1/rules/x', headers: { ...auth, 'content-type': 'application/yaml' }, payload: 'port: 1' });
    expect(yaml.statusCode).toBe(415);
  });

  it('500 never shows internals; the body carries the request id', async () => {
    service.failWith = new Error('secret detail /etc/shadow');
    const r = await app.inject({ method: 'PUT', url: '/v1/rules/x', headers: auth, payload: { port: 1 } });
    expect(r.statusCode).toBe(500);
    expect(r.body).not.toContain('secret');
    expect(r.json().message).toContain(r.json().requestId);
    service.failWith = new PersistError('/etc/p.yaml', new Error('ENOSPC /etc/p.yaml'));
    const persist = await app.inject({ method: 'PUT', url: '/v1/rules/x', headers: auth, payload: { port: 1 } });
    expect(persist.statusCode).toBe(500);
    expect(persist.json().code).toBe('PS_PERSIST_FAILED');
    expect(persist.body).not.toContain('ENOSPC');
  });

  it('GET /v1/ports/{port}: matching rules and listeners', async () => {
    const r = await app.inject({ method: 'GET', url: '/v1/ports/80' });
    expect(r.json()).toMatchObject({ port: 80, rules: [{ name: 'web' }], listeners: [{ protocol: 'tcp', process: { command: 'nginx' } }] });
    expect((await app.inject({ method: 'GET', url: '/v1/ports/81' })).json().rules).toEqual([]);
  });

  it('GET /v1/rules/{name}/clients: top clients with defaults, bounded query, 404 for an unknown rule', async () => {
    const r = await app.inject({ method: 'GET', url: '/v1/rules/web/clients' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ rule: 'web', clients: 1, evicted: 2, by: 'bytes', top: [{ address: '198.18.0.9' }] });
    expect((await app.inject({ method: 'GET', url: '/v1/rules/web/clients?by=drops&top=5' })).json().by).toBe('drops');
    expect((await app.inject({ method: 'GET', url: '/v1/rules/web/clients?top=0' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/v1/rules/web/clients?by=name' })).statusCode).toBe(400);
    expect((await app.inject({ method: 'GET', url: '/v1/rules/nope/clients' })).statusCode).toBe(404);
  });

  it('GET /v1/stats, /readyz 503 when not attached', async () => {
    expect((await app.inject({ method: 'GET', url: '/v1/stats' })).json().interfaces[0]).toMatchObject({ interface: 'eth0', unmatched: { packets: 1 } });
    service.ready_ = { ready: false, reason: 'not attached on eth0', interfaces: [{ name: 'eth0', ifindex: 0, ingress: false, egress: false, registered: false }] };
    const r = await app.inject({ method: 'GET', url: '/readyz' });
    expect(r.statusCode).toBe(503);
    expect(r.json().reason).toBe('not attached on eth0');
  });

  it('GET /v1/policy as JSON or YAML; PUT /v1/policy takes YAML as sent, JSON as YAML', async () => {
    expect((await app.inject({ method: 'GET', url: '/v1/policy' })).json()).toMatchObject({ inForce: true, policy: { interfaces: [{ name: 'eth0' }] } });
    const yaml = await app.inject({ method: 'GET', url: '/v1/policy', headers: { accept: 'application/yaml' } });
    expect(yaml.headers['content-type']).toMatch(/^application\/yaml/);
    expect(yaml.body).toContain('# uplink');
    const text = 'interfaces:\n  - name: eth1 # kept\n';
    expect((await app.inject({ method: 'PUT', url: '/v1/policy', headers: { ...auth, 'content-type': 'application/yaml' }, payload: text })).statusCode).toBe(200);
    expect(service.replaced[0]).toBe(text);
    expect((await app.inject({ method: 'PUT', url: '/v1/policy', headers: auth, payload: { interfaces: [{ name: 'eth2' }] } })).statusCode).toBe(200);
    expect(service.replaced[1]).toBe('interfaces:\n  - name: eth2\n');
  });

  it('GET /metrics is Prometheus text with conventional names', async () => {
    const r = await app.inject({ method: 'GET', url: '/metrics' });
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(r.body).toContain('# TYPE portshaper_packets_total counter');
    expect(r.body).toContain('portshaper_packets_total{rule="web",port="80",protocol="tcp",direction="ingress",verdict="drop"} 2');
    expect(r.body).toContain('portshaper_rule_rate_bytes_per_second{rule="web",port="80",protocol="tcp",direction="ingress"} 1250000');
    expect(r.body).toMatch(/^portshaper_build_info\{version="[^"]+",layout="\d+"\} 1$/m);
  });

  it('GET /openapi.json documents every route with its schemas', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths).sort()).toEqual([
      '/healthz',
      '/metrics',
      '/openapi.json',
      '/readyz',
      '/v1/policy',
      '/v1/ports',
      '/v1/ports/{port}',
      '/v1/rules',
      '/v1/rules/{name}',
      '/v1/rules/{name}/clients',
      '/v1/stats',
    ]);
    const put = doc.paths['/v1/rules/{name}'].put;
    expect(put.parameters[0]).toMatchObject({ name: 'name', in: 'path', required: true });
    expect(put.requestBody.content['application/json'].schema.required).toEqual(['port']);
    expect(Object.keys(put.responses)).toEqual(expect.arrayContaining(['200', '201', '400', '401', '409', '413', '415']));
    expect(put.security).toEqual([{ bearer: [] }]);
  });
});
