/**
 * Which policy file is in force (NODE_NAME) and when the agent must refuse
 * to write it back (kubelet's ConfigMap layout), on temporary directories.
 * A read-only mount (EROFS) is checked on a real mount in test/e2e/fleet.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isKubeletManaged, nodePolicyName, readOnlyReason, resolvePolicySource } from '../../../src/controller/source.js';

describe('policy source', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ps-source-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads node.<NODE_NAME>.yaml beside the policy file when it exists, else the policy file', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'interfaces: []\n');
    expect(resolvePolicySource(file, undefined)).toEqual({ path: file, kind: 'file' });
    expect(resolvePolicySource(file, 'worker-1'), 'no node file yet').toEqual({ path: file, kind: 'file' });
    writeFileSync(join(dir, nodePolicyName('worker-1')), 'interfaces: []\n');
    expect(resolvePolicySource(file, 'worker-1')).toEqual({ path: join(dir, 'node.worker-1.yaml'), kind: 'node' });
    expect(resolvePolicySource(file, 'worker-2'), 'another node keeps the shared file').toEqual({ path: file, kind: 'file' });
    expect(resolvePolicySource(file, ''), 'an empty NODE_NAME is no node name').toEqual({ path: file, kind: 'file' });
  });

  it("recognises kubelet's layout (key -> ..data/key, ..data a symlink) as managed elsewhere, even when writable", () => {
    const ts = join(dir, '..2026_12_02_12_00_00.1234');
    mkdirSync(ts);
    writeFileSync(join(ts, 'policy.yaml'), 'interfaces: []\n');
    symlinkSync('..2026_12_02_12_00_00.1234', join(dir, '..data'));
    symlinkSync('..data/policy.yaml', join(dir, 'policy.yaml'));
    expect(isKubeletManaged(join(dir, 'policy.yaml'))).toBe(true);
    expect(readOnlyReason(join(dir, 'policy.yaml'))).toBe('it is a key of a mounted Kubernetes ConfigMap (kubelet replaces the whole directory at each update)');
  });

  it('lets the agent write a plain file, or a symlink that is not a ConfigMap key, in a writable directory', () => {
    const file = join(dir, 'policy.yaml');
    writeFileSync(file, 'interfaces: []\n');
    expect(readOnlyReason(file)).toBeUndefined();
    symlinkSync('policy.yaml', join(dir, 'link.yaml'));
    expect(isKubeletManaged(join(dir, 'link.yaml'))).toBe(false);
    expect(readOnlyReason(join(dir, 'link.yaml'))).toBeUndefined();
    expect(isKubeletManaged(join(dir, 'absent.yaml'))).toBe(false);
  });
});
