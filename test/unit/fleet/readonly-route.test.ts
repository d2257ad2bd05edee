/** A write refused on a read-only policy source reaches the client as 409 PS_POLICY_READONLY with the way to change the policy. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../src/api/app.js';
import { TokenCheck } from '../../../src/api/auth.js';
import { PolicyReadOnlyError } from '../../../src/errors.js';
import { FakeService } from '../api/fake.js';

const TOKEN = 'b'.repeat(64);
const auth = { authorization: `Bearer ${TOKEN}` };

describe('API writes on a read-only policy source', () => {
  let service: FakeService;
  let app: FastifyInstance;
  beforeEach(async () => {
    service = new FakeService();
    app = await buildApp({ service, token: new TokenCheck(TOKEN), readsOpen: true });
  });
  afterEach(async () => app.close());

  it('answer 409 PS_POLICY_READONLY saying where the policy is managed, for every write route', async () => {
    const writes = [
      { method: 'PUT' as const, url: '/v1/rules/web', payload: { port: 80, rate: '1mbit' } },
      { method: 'PATCH' as const, url: '/v1/rules/web', payload: { rate: '1mbit' } },
      { method: 'DELETE' as const, url: '/v1/rules/web' },
      { method: 'PUT' as const, url: '/v1/policy', payload: { interfaces: [{ name: 'eth0' }] } },
    ];
    for (const w of writes) {
      service.failWith = new PolicyReadOnlyError('/etc/portshaper/policy.yaml', 'it is a key of a mounted Kubernetes ConfigMap (kubelet replaces the whole directory at each update)', true);
      const r = await app.inject({ ...w, headers: auth });
      expect(r.statusCode, `${w.method} ${w.url}`).toBe(409);
      expect(r.json()).toMatchObject({ statusCode: 409, error: 'Conflict', code: 'PS_POLICY_READONLY' });
      expect(r.json().message).toMatch(/^the policy file \/etc\/portshaper\/policy.yaml is managed elsewhere: it is a key of a mounted Kubernetes ConfigMap/);
      expect(r.json().message).toMatch(/fix: change the policy in the ConfigMap/);
    }
  });

  it('without a ConfigMap, the hint says to edit the file where it is managed and reload', () => {
    const err = new PolicyReadOnlyError('/etc/portshaper/policy.yaml', 'its directory /etc/portshaper is on a read-only file system', false);
    expect(err.message).toMatch(/fix: change \/etc\/portshaper\/policy.yaml where it is managed and reload the agent \(SIGHUP\)/);
  });
});
