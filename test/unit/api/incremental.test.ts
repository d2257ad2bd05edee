/**
 * API writes that splice one rule's lines and validate and plan at the cost
 * of that rule must end exactly where the whole-file path ends: the same
 * file text (every other line byte for byte), the same validated policy and
 * the same plan. Random edits on a policy, checked after each one against
 * a full validation and plan of the file as written.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../../src/controller/agent.js';
import { RuleTexts } from '../../../src/controller/persist.js';
import { PolicyWriter } from '../../../src/controller/writes.js';
import { parsePolicy, planPolicy, replanRule, validatePolicy, type PolicyRule } from '../../../src/policy/index.js';
import { standIn } from './stand-in.js';

const dir = mkdtempSync(join(tmpdir(), 'ps-incremental-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const env = { interfaceExists: () => true };
const withoutLines = (rules: readonly PolicyRule[]) => rules.map(({ line: _line, ...rest }) => rest);

function policyFile(rules: number): string {
  const lines = ['# a policy', 'interfaces: [eth0]', 'defaults:', '  rate: 10mbit', 'rules:'];
  for (let i = 1; i <= rules; i++) {
    if (i % 3 === 0) lines.push(`  # rule ${i} is written in block style`, `  - name: r${i}`, `    port: ${1000 + i}`, `    protocol: udp  # why`);
    else lines.push(`  - {name: r${i}, port: ${1000 + i}, protocol: tcp, mode: police}`);
  }
  lines.push('# the end');
  return lines.join('\n') + '\n';
}

describe('one-rule API writes at the cost of the rule', () => {
  it('give the same file, policy and plan as validating and planning the whole file', async () => {
    const path = join(dir, 'policy.yaml');
    writeFileSync(path, policyFile(40));
    const { agent, applied } = standIn(path);
    const writer = new PolicyWriter(agent as unknown as Agent, pino({ level: 'silent' }));
    // Whole-file validations: a refused write takes one (for its exact diagnostics); an accepted one should not.
    let wholeFile = 0;
    const validateText = agent.validateText;
    agent.validateText = (text: string) => (wholeFile++, validateText(text));
    let seed = 11;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    let outcomes = { ok: 0, refused: 0 };
    for (let step = 0; step < 120; step++) {
      const before = readFileSync(path, 'utf8');
      const names = agent.state.policy.rules.map((r) => r.name);
      const name = names[rand(names.length)]!;
      const op = rand(6);
      try {
        if (op === 0) await writer.patchRule(name, { rate: `${1 + rand(50)}mbit` }, `s${step}`);
        else if (op === 1) await writer.patchRule(name, { burst: rand(2) ? '20ms' : null, pps: rand(2) ? '1kpps' : null }, `s${step}`);
        else if (op === 2) await writer.putRule(`new${step}`, { port: 2000 + rand(100), rate: '1mbit' }, `s${step}`);
        else if (op === 3 && names.length > 2) await writer.deleteRule(name, `s${step}`);
        else if (op === 4) await writer.patchRule(name, { port: 1000 + rand(60) }, `s${step}`); // often an overlap: refused
        else await writer.putRule(name, { port: 3000 + step, rate: '2mbit', protocol: 'udp' }, `s${step}`);
        outcomes.ok++;
      } catch (err) {
        outcomes.refused++;
        expect(readFileSync(path, 'utf8'), 'a refused write changes nothing').toBe(before);
        continue;
      }
      const text = readFileSync(path, 'utf8');
      const full = validatePolicy(parsePolicy(text, path), env);
      expect(full.diagnostics, text).toEqual([]);
      expect(withoutLines(agent.state.policy.rules)).toEqual(withoutLines(full.policy!.rules));
      // The rule a write validated alone still gets its own line in the file.
      const edited = op === 2 ? `new${step}` : name;
      const line = (rules: readonly PolicyRule[]) => rules.find((r) => r.name === edited)?.line;
      expect(line(agent.state.policy.rules), `line of ${edited}`).toBe(line(full.policy!.rules));
      expect(text.startsWith('# a policy\ninterfaces: [eth0]\n') && text.endsWith('# the end\n')).toBe(true);
    }
    expect(outcomes.ok).toBeGreaterThan(60);
    expect(outcomes.refused).toBeGreaterThan(5);
    expect(applied.length).toBe(outcomes.ok);
    // The first write reads the file (one whole validation may build the base); the rest cost their rule.
    expect(wholeFile).toBeLessThanOrEqual(outcomes.refused + 1);
  });

  it('a PATCH of a rate replaces that rule\'s line and nothing else', async () => {
    const path = join(dir, 'patch.yaml');
    const original = policyFile(6);
    writeFileSync(path, original);
    const { agent } = standIn(path);
    const writer = new PolicyWriter(agent as unknown as Agent, pino({ level: 'silent' }));
    await writer.patchRule('r2', { rate: '20mbit' }, 'a');
    await writer.patchRule('r3', { rate: '30mbit' }, 'b');
    expect(readFileSync(path, 'utf8')).toBe(
      original
        .replace('  - {name: r2, port: 1002, protocol: tcp, mode: police}', '  - { name: r2, port: 1002, protocol: tcp, mode: police, rate: 20mbit }')
        .replace('    protocol: udp  # why\n  - {name: r4', '    protocol: udp # why\n    rate: 30mbit\n  - {name: r4'),
    );
  });

  it('splices by bytes in a file with characters outside ASCII before and inside the rules', async () => {
    const path = join(dir, 'unicode.yaml');
    const original = '# politique — débit par port 🚦\ninterfaces: [eth0]\nrules:\n  - {name: a, port: 1, rate: 1mbit}  # café\n  - name: b  # ünïcode\n    port: 2\n    rate: 2mbit\n  - {name: c, port: 3, rate: 3mbit}\n';
    writeFileSync(path, original);
    const { agent } = standIn(path);
    const writer = new PolicyWriter(agent as unknown as Agent, pino({ level: 'silent' }));
    await writer.patchRule('b', { rate: '5mbit' }, 'a');
    await writer.patchRule('c', { rate: '6mbit' }, 'b');
    await writer.deleteRule('a', 'c');
    await writer.putRule('d', { port: 4, rate: '7mbit' }, 'd');
    const text = readFileSync(path, 'utf8');
    expect(text).toBe('# politique — débit par port 🚦\ninterfaces: [eth0]\nrules:\n  - name: b # ünïcode\n    port: 2\n    rate: 5mbit\n  - { name: c, port: 3, rate: 6mbit }\n  - name: d\n    port: 4\n    rate: 7mbit\n');
    expect(agent.state.policy.rules.map((r) => [r.name, r.rateBps])).toEqual([
      ['b', 5e6],
      ['c', 6e6],
      ['d', 7e6],
    ]);
    // The rule a write validated gets its line in the file as written (rules after a removed one keep theirs).
    expect(agent.state.policy.rules[2]!.line).toBe(8);
  });

  it('replanRule gives planPolicy\'s plan for a change of limits, and declines any other change', () => {
    const policy = validatePolicy(parsePolicy(policyFile(30), 'p.yaml'), env).policy!;
    const plan = planPolicy(policy);
    const before = policy.rules[7]!;
    for (const after of [
      { ...before, rateBps: 5e6 },
      { ...before, burstNs: 123_000_000, pps: 1000 },
    ]) {
      const next = { ...policy, rules: policy.rules.map((r) => (r === before ? after : r)) };
      expect(replanRule(plan, before, after)).toEqual(planPolicy(next));
    }
    expect(replanRule(plan, before, { ...before, from: 9999, to: 9999 })).toBeUndefined();
    expect(replanRule(plan, before, { ...before, mode: 'shape' as const })).toBeUndefined();
  });

  it('RuleTexts appends after the last rule even when the file does not end in a newline', () => {
    const rules = RuleTexts.of('rules:\n  - {name: a, port: 1}')!;
    const next = rules.with(1, rules.edited(undefined, () => 'rules:\n  - name: b\n    port: 2\n'));
    expect(next.text).toBe('rules:\n  - {name: a, port: 1}\n  - name: b\n    port: 2\n');
    expect(next.item(1)).toBe('  - name: b\n    port: 2\n');
  });
});
