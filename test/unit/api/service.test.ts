/**
 * AgentService's write path against a stand-in Agent (real validation and
 * planning, no kernel): batches of concurrent writes, an invalid write
 * refused alone, a file edited on disk, and rollback when the file cannot be written.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashText, type Agent } from '../../../src/controller/agent.js';
import { AgentService } from '../../../src/api/service.js';
import { PersistError, PolicyChangeError, PolicyFileInvalidError, PolicyReadOnlyError, RuleNotFoundError } from '../../../src/errors.js';
import { standIn } from './stand-in.js';

const POLICY = `# kept
interfaces:
  - name: eth0
rules:
  - name: web
    port: 80
    rate: 10mbit
`;

describe('AgentService writes', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ps-service-'));
    path = join(dir, 'policy.yaml');
    writeFileSync(path, POLICY);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('applies concurrent writes in one batch; an invalid one is refused alone', async () => {
    const { agent, applied } = standIn(path);
    const service = new AgentService(agent as unknown as Agent, pino({ level: 'silent' }));
    const results = await Promise.allSettled([
      service.putRule('a', { port: 81, rate: '1mbit' }, 'r1'),
      service.putRule('b', { port: 80, rate: '1mbit' }, 'r2'),
      service.patchRule('web', { rate: '20mbit' }, 'r3'),
      service.patchRule('nope', { rate: '20mbit' }, 'r4'),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(PolicyChangeError);
    expect(((results[1] as PromiseRejectedResult).reason as PolicyChangeError).conflict).toBe(true);
    expect((results[3] as PromiseRejectedResult).reason).toBeInstanceOf(RuleNotFoundError);
    expect(applied.map((a) => a.rules)).toEqual([['web=20000000', 'a=1000000']]);
    const file = readFileSync(path, 'utf8');
    expect(file).toContain('# kept');
    expect(hashText(file)).toBe(agent.state.hash);
  });

  it('refuses to write into a policy file edited on disk that does not validate', async () => {
    const { agent, applied } = standIn(path);
    const service = new AgentService(agent as unknown as Agent, pino({ level: 'silent' }));
    writeFileSync(path, POLICY.replace('10mbit', '10mbps'));
    await expect(service.patchRule('web', { rate: '1mbit' }, 'r1')).rejects.toBeInstanceOf(PolicyFileInvalidError);
    expect(applied).toEqual([]);
  });

  it('rolls the kernel back when the file cannot be written', async () => {
    const { agent, applied } = standIn(path);
    const service = new AgentService(agent as unknown as Agent, pino({ level: 'silent' }));
    const before = agent.state.hash;
    // Writes go to a temporary file beside the policy: a directory in its place makes that fail.
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(dir, `.policy.yaml.${process.pid}.tmp`));
    await expect(service.patchRule('web', { rate: '1mbit' }, 'r1')).rejects.toBeInstanceOf(PersistError);
    expect(applied.map((a) => a.rules)).toEqual([['web=1000000'], ['web=10000000']]);
    expect(applied[1]?.reason).toMatch(/^rollback of requests r1/);
    expect(agent.state.hash).toBe(before);
    expect(readFileSync(path, 'utf8')).toBe(POLICY);
  });

  it('refuses every write on a ConfigMap key before applying anything (PS_POLICY_READONLY)', async () => {
    const { mkdirSync, renameSync, symlinkSync } = await import('node:fs');
    mkdirSync(join(dir, '..2026_12_02_12_00_00.1'));
    renameSync(path, join(dir, '..2026_12_02_12_00_00.1', 'policy.yaml'));
    symlinkSync('..2026_12_02_12_00_00.1', join(dir, '..data'));
    symlinkSync('..data/policy.yaml', path);
    const { agent, applied } = standIn(path);
    const service = new AgentService(agent as unknown as Agent, pino({ level: 'silent' }));
    for (const write of [
      () => service.patchRule('web', { rate: '1mbit' }, 'r1'),
      () => service.putRule('new', { port: 81, rate: '1mbit' }, 'r2'),
      () => service.deleteRule('web', 'r3'),
      () => service.replacePolicy('interfaces:\n  - name: eth0\n', 'r4'),
    ]) {
      const err = await write().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PolicyReadOnlyError);
      expect((err as PolicyReadOnlyError).code).toBe('PS_POLICY_READONLY');
      expect((err as PolicyReadOnlyError).message).toMatch(/kubectl -n portshaper edit configmap portshaper-policy/);
    }
    expect(applied, 'nothing applied, not even a rollback').toEqual([]);
    expect(readFileSync(path, 'utf8')).toBe(POLICY);
  });
});
