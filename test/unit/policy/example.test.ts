import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PolicyError } from '../../../src/errors.js';
import { loadPolicyFile, planPolicy } from '../../../src/policy/index.js';
import { POLICY_SPEC, type KeySpec } from '../../../src/policy/schema.js';

const EXAMPLE = 'examples/policy.yaml';
const onlyLo = { interfaceExists: (name: string) => name === 'lo' };

describe('examples/policy.yaml', () => {
  it('validates with no errors and no warnings on a fresh machine (only lo exists)', async () => {
    const { policy, warnings } = await loadPolicyFile(EXAMPLE, onlyLo);
    expect(warnings).toEqual([]);
    expect(policy.interfaces.map((i) => i.name)).toEqual(['lo']);
    expect(policy.rules.map((r) => [r.name, r.from, r.to, r.protocol, r.direction, r.rateBps, r.mode])).toEqual([
      ['iperf3', 5201, 5201, 'tcp', 'ingress', 100e6, 'shape'],
      ['api', 8443, 8443, 'tcp', 'ingress', 200e6, 'shape'],
      ['udp-30000-30999', 30000, 30999, 'udp', 'both', 50e6, 'monitor'],
    ]);
    expect(planPolicy(policy).buckets.map((b) => b.key)).toEqual([
      'api/ingress',
      'iperf3/ingress',
      'udp-30000-30999/ingress',
      'udp-30000-30999/egress',
    ]);
    // The bundled policy must not put an HTB root qdisc on a machine's loopback.
    expect(planPolicy(policy).interfaces[0]?.shaped, 'nothing shaped on lo').toEqual([]);
  });

  it('documents every key of the policy format', () => {
    const text = readFileSync(EXAMPLE, 'utf8');
    const missing: string[] = [];
    const visit = (spec: KeySpec): void => {
      for (const [key, child] of Object.entries(spec.keys ?? {})) {
        if (!new RegExp(`^\\s*#?\\s*-?\\s*${key}:`, 'm').test(text)) missing.push(key);
        visit(child);
        if (child.items) visit(child.items);
      }
    };
    visit(POLICY_SPEC);
    expect(missing, 'keys of src/policy/schema.ts not shown in examples/policy.yaml').toEqual([]);
  });
});

describe('loadPolicyFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portshaper-policy-'));

  it('throws a PolicyError carrying every diagnostic, warnings included', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'interfaces:\n  - name: veth9\nrules:\n  - port: 0\n    rate: 1mbit\n');
    const error = await loadPolicyFile(file, onlyLo).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(PolicyError);
    expect((error as PolicyError).code).toBe('PS_POLICY_INVALID');
    expect((error as PolicyError).message).toBe(
      `policy has 1 error:\n${file}:2:11: warning: interfaces[0].name: interface "veth9" does not exist (yet); ` +
        `the agent will attach when it appears\n${file}:4:11: rules[0].port: 0 is out of range 1..65535`,
    );
  });

  it('returns the warnings of a valid policy', async () => {
    const file = join(dir, 'warn.yaml');
    writeFileSync(file, 'interfaces:\n  - name: veth9\n');
    const { policy, warnings } = await loadPolicyFile(file, onlyLo);
    expect(policy.rules).toEqual([]);
    expect(warnings.map((w) => [w.line, w.column, w.severity])).toEqual([[2, 11, 'warning']]);
  });

  it('reports a file it cannot read as a PolicyError that says what to do', async () => {
    const file = join(dir, 'absent.yaml');
    await expect(loadPolicyFile(file, onlyLo)).rejects.toThrow(
      new PolicyError([
        {
          file,
          line: 1,
          column: 1,
          message: 'cannot read the policy file (ENOENT); check the path, or start from examples/policy.yaml',
          severity: 'error',
        },
      ]).message,
    );
  });
});
