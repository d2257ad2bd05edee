/** Policy write-back: edits keep comments and untouched rules; validator messages become field problems; atomic writes; tokens. */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadOrCreateToken, TokenCheck } from '../../../src/api/auth.js';
import { deleteRuleText, patchRuleText, policyTextOf, putRuleText, removeStaleTempFiles, writeFileAtomic } from '../../../src/controller/persist.js';
import { changeError } from '../../../src/controller/writes.js';
import { parsePolicy, validatePolicy } from '../../../src/policy/index.js';

const POLICY = `# top comment
interfaces:
  - name: eth0
rules:
  # the web server
  - name: web
    port: 80
    rate: 10mbit  # agreed with the customer
    burst: 64kb
  - port: 53       # derived name any-53
    rate: 1mbit
`;
const env = { interfaceExists: () => true };
const validate = (text: string) => validatePolicy(parsePolicy(text, 'policy.yaml'), env);

describe('policy write-back', () => {
  it('PATCH changes a value in place, keeping every comment (the yaml printer puts one space before an inline comment)', () => {
    const text = patchRuleText(POLICY, 0, 'web', { rate: '20mbit' });
    expect(text).toBe(POLICY.replace('rate: 10mbit  # agreed', 'rate: 20mbit # agreed').replace('53       #', '53 #'));
    expect(validate(text).policy?.rules[0]?.rateBps).toBe(20_000_000);
  });

  it('PATCH null removes a key; a derived-name rule gets its name written first', () => {
    const text = patchRuleText(POLICY, 1, 'any-53', { rate: '2mbit', burst: null });
    expect(text).toContain('  - name: any-53\n    port: 53 # derived name any-53\n    rate: 2mbit\n');
    const cleared = patchRuleText(POLICY, 0, 'web', { burst: null });
    expect(cleared).not.toContain('burst');
  });

  it('PUT replaces the keys of an existing rule, and appends a new rule in key-table order', () => {
    const replaced = putRuleText(POLICY, 0, 'web', { port: 8080, protocol: 'tcp', rate: '5mbit' });
    expect(replaced).toContain('# the web server\n  - name: web\n    port: 8080\n    rate: 5mbit # agreed with the customer\n    protocol: tcp\n');
    expect(replaced).not.toContain('burst: 64kb');
    const added = putRuleText(POLICY, undefined, 'new', { rate: '1mbit', port: 9000, interfaces: ['eth0'] });
    expect(added.endsWith('  - name: new\n    port: 9000\n    rate: 1mbit\n    interfaces: [ eth0 ]\n')).toBe(true);
    expect(validate(added).policy?.rules.map((r) => r.name)).toEqual(['web', 'any-53', 'new']);
    const noRules = putRuleText('interfaces:\n  - name: eth0\nrules:\n', undefined, 'a', { port: 1, rate: '1mbit' });
    expect(validate(noRules).policy?.rules.map((r) => r.name)).toEqual(['a']);
  });

  it('DELETE removes exactly one rule', () => {
    const text = deleteRuleText(POLICY, 0);
    expect(validate(text).policy?.rules.map((r) => r.name)).toEqual(['any-53']);
    expect(text).toContain('# top comment');
  });

  it('a policy given as JSON becomes YAML', () => {
    expect(policyTextOf({ interfaces: [{ name: 'eth0' }] })).toBe('interfaces:\n  - name: eth0\n');
  });

  it('validator messages become field problems; an overlap is a conflict', () => {
    const overlap = changeError(validate(patchRuleText(POLICY, 0, 'web', { port: 53 })).diagnostics, 0);
    expect(overlap.conflict).toBe(true);
    expect(overlap.problems.map((p) => p.field)).toEqual(['rules[1].port']);
    expect(overlap.problems[0]?.reason).toMatch(/^overlaps rule "web"/);
    const unit = changeError(validate(patchRuleText(POLICY, 1, 'any-53', { rate: '10mbps' })).diagnostics, 1);
    expect(unit.problems.map((p) => p.field)).toEqual(['rate']);
    expect(unit.problems[0]?.reason).toMatch(/^ambiguous unit "mbps"/);
    const unitOnly = changeError(validate(patchRuleText(POLICY, 0, 'web', { burst: '1b' })).diagnostics, 0);
    expect(unitOnly.conflict).toBe(false);
    expect(unitOnly.problems[0]?.field).toBe('burst');
  });

  it('writeFileAtomic replaces the file, keeps its mode, and leaves no temporary file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ps-persist-'));
    try {
      const path = join(dir, 'policy.yaml');
      writeFileSync(path, 'old', { mode: 0o640 });
      writeFileAtomic(path, 'new');
      expect(readFileSync(path, 'utf8')).toBe('new');
      expect(statSync(path).mode & 0o777).toBe(0o640);
      expect(readdirSync(dir)).toEqual(['policy.yaml']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('API token', () => {
  it('is created once (64 hex digits, mode 0600, directory made), then read back', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ps-token-'));
    try {
      const file = join(dir, 'sub', 'token');
      const first = loadOrCreateToken(file);
      expect(first.created).toBe(true);
      expect(first.token).toMatch(/^[0-9a-f]{64}$/);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(loadOrCreateToken(file)).toEqual({ token: first.token, created: false });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('accepts only "Bearer <token>"', () => {
    const check = new TokenCheck('s3cret');
    expect(check.accepts('Bearer s3cret')).toBe(true);
    expect(check.accepts('bearer s3cret')).toBe(true);
    expect(check.accepts('Bearer s3cre')).toBe(false);
    expect(check.accepts('s3cret')).toBe(false);
    expect(check.accepts(undefined)).toBe(false);
  });

  it('removes the temporary files of a saver that died, and only those', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ps-stale-'));
    try {
      const path = join(dir, 'policy.yaml');
      writeFileSync(path, 'rules: []\n');
      // pid 2^22 + 1 is above the kernel's pid_max limit: no process can have it.
      const dead = `.policy.yaml.${2 ** 22 + 1}.tmp`;
      const live = `.policy.yaml.${process.ppid}.tmp`;
      for (const name of [dead, live, '.other.yaml.1.tmp', 'policy.yaml.1.tmp']) writeFileSync(join(dir, name), 'x');
      expect(removeStaleTempFiles(path)).toEqual([dead]);
      expect(readdirSync(dir).sort()).toEqual([live, '.other.yaml.1.tmp', 'policy.yaml', 'policy.yaml.1.tmp'].sort());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
