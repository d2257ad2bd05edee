/**
 * Hostile input through app.inject() against the real write path (AgentService
 * over a stand-in Agent: the policy validator runs, no kernel). Values the
 * policy file refuses are refused by the API with the file's own reason and
 * change nothing; bodies nested too deep are refused before they are parsed.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type { FastifyInstance } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildApp } from '../../../src/api/app.js';
import { TokenCheck } from '../../../src/api/auth.js';
import { MAX_JSON_DEPTH, nestsDeeperThan } from '../../../src/api/input.js';
import { AgentService } from '../../../src/api/service.js';
import type { Agent } from '../../../src/controller/agent.js';
import { parsePolicy, validatePolicy } from '../../../src/policy/index.js';
import { standIn } from './stand-in.js';

const TOKEN = 'b'.repeat(64);
const auth = { authorization: `Bearer ${TOKEN}` };

const POLICY = `# kept
interfaces:
  - name: eth0
rules:
  - name: web
    port: 80
    rate: 10mbit
`;

/**
 * The policy file validator's reason for `key: yaml` on the rule "web",
 * written by hand into the file (not through the API's own editing code).
 */
function fileReason(key: string, yaml: string): string {
  const text = key === 'port' ? POLICY.replace('port: 80', `port: ${yaml}`) : `${POLICY}    ${key}: ${yaml}\n`;
  const { diagnostics } = validatePolicy(parsePolicy(text, 'policy.yaml'), { interfaceExists: () => true });
  const prefix = `rules[0].${key}: `;
  const found = diagnostics.find((d) => d.severity === 'error' && d.message.startsWith(prefix));
  if (!found) throw new Error(`the file validator accepts ${key}: ${yaml} (${JSON.stringify(diagnostics)})`);
  return found.message.slice(prefix.length);
}

describe('API hostile input', () => {
  let dir: string;
  let path: string;
  let app: FastifyInstance;
  let applied: { rules: string[]; reason: string }[];
  let before: unknown;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ps-hostile-'));
    path = join(dir, 'policy.yaml');
    writeFileSync(path, POLICY);
    const stand = standIn(path);
    applied = stand.applied;
    const service = new AgentService(stand.agent as unknown as Agent, pino({ level: 'silent' }));
    app = await buildApp({ service, token: new TokenCheck(TOKEN), readsOpen: true, listeners: () => [] });
    before = (await app.inject({ method: 'GET', url: '/v1/rules/web' })).json();
  });
  afterEach(async () => {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Nothing was applied or written, and the rule reads as before. */
  async function expectUnchanged(what: string): Promise<void> {
    expect(applied, `${what}: nothing applied`).toEqual([]);
    expect(readFileSync(path, 'utf8'), `${what}: file untouched`).toBe(POLICY);
    const web = (await app.inject({ method: 'GET', url: '/v1/rules/web' })).json();
    expect(web, `${what}: rule web as before`).toEqual(before);
  }

  // Each was accepted through type coercion before (issue 10): true → 1, " 7778" and "0x1e62" → 7778,
  // ["20mbit"] → "20mbit", "" → key dropped so the default applied.
  const cases: { key: string; value: unknown; yaml: string }[] = [
    { key: 'port', value: true, yaml: 'true' },
    { key: 'port', value: ' 7778', yaml: '" 7778"' },
    { key: 'port', value: '0x1e62', yaml: '"0x1e62"' },
    { key: 'rate', value: ['20mbit'], yaml: '["20mbit"]' },
    { key: 'protocol', value: ['tcp'], yaml: '["tcp"]' },
    { key: 'protocol', value: '', yaml: '""' },
    { key: 'mode', value: '', yaml: '""' },
    { key: 'direction', value: '', yaml: '""' },
  ];

  for (const { key, value, yaml } of cases) {
    it(`PATCH and PUT refuse ${key}: ${JSON.stringify(value)} with the policy file's reason, changing nothing`, async () => {
      const reason = fileReason(key, yaml);
      const patch = await app.inject({ method: 'PATCH', url: '/v1/rules/web', headers: auth, payload: { [key]: value } });
      expect(patch.statusCode, `PATCH ${key}: ${patch.body}`).toBe(400);
      expect(patch.json().code).toBe('PS_POLICY_CHANGE_INVALID');
      expect(patch.json().errors).toEqual([{ field: key, reason }]);
      await expectUnchanged(`PATCH ${key}`);

      const body = { port: 80, rate: '10mbit', [key]: value };
      const put = await app.inject({ method: 'PUT', url: '/v1/rules/web', headers: auth, payload: body });
      expect(put.statusCode, `PUT ${key}: ${put.body}`).toBe(400);
      expect(put.json().errors).toEqual([{ field: key, reason }]);
      await expectUnchanged(`PUT ${key}`);
    });
  }

  it('a new rule with a coercible port is refused too, and not created', async () => {
    const r = await app.inject({ method: 'PUT', url: '/v1/rules/api', headers: auth, payload: { port: true, rate: '1mbit' } });
    expect(r.statusCode).toBe(400);
    expect(r.json().errors).toEqual([{ field: 'port', reason: fileReason('port', 'true') }]);
    expect((await app.inject({ method: 'GET', url: '/v1/rules/api' })).statusCode).toBe(404);
    await expectUnchanged('PUT api');
  });

  it('what the file cannot express is refused by the API: a body that is not an object, a "name" key, an empty patch', async () => {
    const list = await app.inject({ method: 'PUT', url: '/v1/rules/web', headers: { ...auth, 'content-type': 'application/json' }, payload: '[{"port":80}]' });
    expect(list.statusCode).toBe(400);
    expect(list.json()).toMatchObject({ code: 'PS_API_INVALID_REQUEST', errors: [{ field: 'body', reason: "expected a JSON object of the rule's keys, got a list" }] });
    const renamed = await app.inject({ method: 'PATCH', url: '/v1/rules/web', headers: auth, payload: { name: 'other' } });
    expect(renamed.statusCode).toBe(400);
    expect(renamed.json().errors[0].field).toBe('name');
    const empty = await app.inject({ method: 'PATCH', url: '/v1/rules/web', headers: auth, payload: {} });
    expect(empty.statusCode).toBe(400);
    await expectUnchanged('shape checks');
  });

  it('a valid change still goes through, and query strings are still read as numbers', async () => {
    const r = await app.inject({ method: 'PATCH', url: '/v1/rules/web', headers: auth, payload: { rate: '20mbit' } });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().rate).toBe('20mbit');
    expect(readFileSync(path, 'utf8')).toContain('rate: 20mbit');
    expect((await app.inject({ method: 'GET', url: '/v1/ports/80' })).json().port).toBe(80);
  });

  it(`a JSON body nested 10,000 levels deep is refused with 400 (limit ${MAX_JSON_DEPTH}), on the policy and on a rule`, async () => {
    const deep = `{"interfaces":[{"name":"eth0"}],"rules":${'['.repeat(10_000)}${']'.repeat(10_000)}}`;
    const policy = await app.inject({ method: 'PUT', url: '/v1/policy', headers: { ...auth, 'content-type': 'application/json' }, payload: deep });
    expect(policy.statusCode, policy.body).toBe(400);
    expect(policy.json().code).toBe('PS_API_BODY_TOO_DEEP');
    expect(policy.json().message).toContain(`${MAX_JSON_DEPTH} levels`);
    const rule = await app.inject({ method: 'PATCH', url: '/v1/rules/web', headers: { ...auth, 'content-type': 'application/merge-patch+json' }, payload: `{"client":${'['.repeat(10_000)}${']'.repeat(10_000)}}` });
    expect(rule.statusCode).toBe(400);
    expect(rule.json().code).toBe('PS_API_BODY_TOO_DEEP');
    await expectUnchanged('deep JSON');
  });

  it('a YAML flow sequence nested 10,000 levels deep on PUT /v1/policy is a 400, not a 500', async () => {
    const deep = `interfaces: [eth0]\nrules: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`;
    const r = await app.inject({ method: 'PUT', url: '/v1/policy', headers: { ...auth, 'content-type': 'application/yaml' }, payload: deep });
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json().code).toBe('PS_POLICY_CHANGE_INVALID');
    await expectUnchanged('deep YAML');
  });

  it('a normal JSON policy larger than the rule body limit is accepted (the policy route keeps its own limit)', async () => {
    const rules = Array.from({ length: 2000 }, (_, i) => ({ name: `r${i}`, port: 10_000 + i, protocol: 'udp', rate: '1mbit', client: { rate: '100kbit' } }));
    const r = await app.inject({ method: 'PUT', url: '/v1/policy', headers: auth, payload: { interfaces: [{ name: 'eth0' }], rules } });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().rules).toBe(2000);
  });

  it('the depth scan skips brackets inside strings and escapes', () => {
    expect(nestsDeeperThan('{"a":"[[[[\\"[[["}', 2)).toBe(false);
    expect(nestsDeeperThan('[[[]]]', 2)).toBe(true);
    expect(nestsDeeperThan('[[],[],[]]', 2)).toBe(false);
    // An escaped backslash does not escape the quote after it: the brackets after the string count.
    expect(nestsDeeperThan('["a\\\\", [[]]]', 2)).toBe(true);
    expect(nestsDeeperThan('["a\\"[[[", []]', 2)).toBe(false);
    expect(nestsDeeperThan('["unterminated [[[', 2)).toBe(false);
  });
});
