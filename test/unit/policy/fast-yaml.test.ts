/**
 * The fast parser against the `yaml` package: on every document it accepts,
 * both must give the same tree (values, types, number sources and the offset
 * of every node); everything outside its subset it must refuse, so the
 * `yaml` package (and its diagnostics) takes over.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseFast } from '../../../src/policy/fast-yaml.js';
import { parsePolicy } from '../../../src/policy/parse.js';
import { fromDocument, type SrcNode } from '../../../src/policy/tree.js';

/** A tree without the fast parser's item spans, and without the offsets of empty values (nothing points at them). */
function comparable(node: SrcNode | null): unknown {
  if (node === null) return null;
  if (node.kind === 'scalar') return node.value === null ? { null: true } : { ...node };
  if (node.kind === 'seq') return { kind: 'seq', start: node.start, items: node.items.map(comparable) };
  return { kind: 'map', start: node.start, items: node.items.map((p) => ({ key: comparable(p.key), value: comparable(p.value) })) };
}

function bothParsers(text: string): { fast: unknown; reference: unknown } | undefined {
  const fast = parseFast(text);
  if (fast === undefined) return undefined;
  const doc = parseDocument(text);
  expect(doc.errors, `the fast parser accepted a document the yaml package rejects:\n${text}`).toEqual([]);
  return { fast: comparable(fast.root), reference: comparable(fromDocument(doc)) };
}

const ACCEPTED = [
  '',
  '# only a comment\n',
  'rules:\n',
  'rules: []\n',
  'a: 1\nb: -2\nc: +3\nd: 0x1e62\ne: 0o17\nf: 1.5\ng: .inf\nh: 1e3\ni: ~\nj: null\nk: true\nl: False\nm: yes\nn: "7778"\no: \' 7778\'\np: 80.5\n',
  'rules:\n  - name: web\n    port: 80\n    rate: 10mbit   # a comment\n    protocol: tcp\n',
  'rules:\n- name: web\n  port: "30000-30999"\n  interfaces: [eth0, "eth1"]\n',
  'rules:\n  - {name: udp-1, port: 1, protocol: udp}\n  - {name: udp-2, port: 2, protocol: udp, client: {rate: 1mbit, pps: 10kpps}}\n',
  'interfaces: [eth0]\n',
  'interfaces:\n  - eth0\n  - name: eth1\n    ingress: false\n',
  'defaults:\n  rate: 10mbit\n\n\n# between\nrules:\n  # leading comment\n  - port: 80\n\n  - port: 81\n# trailing\n',
  "a: 'it''s'\nb: \"plain é and 'quotes'\"\nc: a#b\nd: [a, b,]\ne: {}\nf: [ ]\n",
  'a:\n  b:\n    c: [1, [2, 3], {d: e}]\n',
  '"quoted key": 1\n\'single\': 2\n80: x\n',
  'metrics:\n  listen: 127.0.0.1:9100\napi:\n  listen: "[::1]:7878"\n',
  '- a\n- b\n',
  'just a scalar\n',
  '[1, 2]\n',
];

const REFUSED = [
  'a: &x 1\nb: *x\n',
  'a: !!str 1\n',
  'a: |\n  text\n',
  'a: >\n  text\n',
  'a:\tb\n',
  'a: 1\r\nb: 2\r\n',
  '---\na: 1\n',
  '%YAML 1.2\n---\na: 1\n',
  'a: 1\na: 2\n',
  'a: one\n  two\n',
  'a: [1,\n  2]\n',
  '? a\n: b\n',
  'a: b: c\n',
  '- - a\n',
  '-\n- b\n',
  'a: "unterminated\n',
  'a: {b}\n',
  'a: [b: c]\n',
  'a: "x"y\n',
  'a:\n    b: 1\n  c: 2\n',
  'a: 1\n- b\n',
  'a: "\\q"\n',
  'b: "tab\\tand \\u00e9"\n',
  'a: -\nb: - x\n',
];

describe('fast YAML parser', () => {
  it.each(ACCEPTED.map((t) => [t]))('gives the yaml package\'s tree for %j', (text) => {
    const both = bothParsers(text);
    expect(both, 'outside the fast subset').toBeDefined();
    expect(both!.fast).toEqual(both!.reference);
  });

  it.each(REFUSED.map((t) => [t]))('leaves %j to the yaml package', (text) => {
    expect(parseFast(text)).toBeUndefined();
  });

  it('reads every bundled policy and deploy manifest the same way, or leaves it', () => {
    const files = [join('examples', 'policy.yaml'), ...readdirSync('deploy/kubernetes').filter((f) => f.endsWith('.yaml')).map((f) => join('deploy/kubernetes', f))];
    let fast = 0;
    for (const file of files) {
      const both = bothParsers(readFileSync(file, 'utf8'));
      if (!both) continue;
      fast++;
      expect(both.fast, file).toEqual(both.reference);
    }
    expect(fast).toBeGreaterThan(0);
  });

  it('gives the same tree for random policies written the ways people write them', () => {
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    const pick = <T,>(xs: readonly T[]) => xs[rand(xs.length)]!;
    const scalars = ['10mbit', '"10mbit"', "'1gbit'", '80', '"80"', '0x50', '1.5', 'true', 'null', '~', '"a b"', 'a#b', 'x-y', '-1', '+1', '.5', '1e3'];
    for (let round = 0; round < 300; round++) {
      const lines = ['rules:'];
      const rules = 1 + rand(5);
      for (let r = 0; r < rules; r++) {
        const keys = ['name', 'port', 'rate', 'burst', 'protocol'].slice(0, 1 + rand(5));
        if (rand(2)) lines.push(`  - {${keys.map((k) => `${k}: ${pick(scalars)}`).join(', ')}}${rand(2) ? '  # c' : ''}`);
        else keys.forEach((k, i) => lines.push(`${i === 0 ? '  - ' : '    '}${k}: ${pick(scalars)}${rand(3) ? '' : ' # c'}`));
        if (rand(4) === 0) lines.push('');
      }
      const text = lines.join('\n') + '\n';
      const both = bothParsers(text);
      expect(both, text).toBeDefined();
      expect(both!.fast, text).toEqual(both!.reference);
    }
  });

  it('keeps each block list item\'s text span, so a writer can replace one rule', () => {
    const text = 'rules:\n  - name: a\n    port: 1\n  # about b\n  - name: b\n    port: 2\napi:\n  listen: 127.0.0.1:7878\n';
    const root = parseFast(text)!.root!;
    const rules = root.kind === 'map' ? root.items[0]!.value : undefined;
    expect(rules?.kind).toBe('seq');
    const spans = rules?.kind === 'seq' ? rules.spans : undefined;
    expect(spans?.starts.map((s, i) => text.slice(s, spans.ends[i]))).toEqual(['  - name: a\n    port: 1\n', '  - name: b\n    port: 2\n']);
    const last = 'rules:\n  - {name: a, port: 1}  # one\n  - {name: b, port: 2}';
    const seq = parseFast(last)!.root;
    const lastSpans = seq?.kind === 'map' && seq.items[0]!.value?.kind === 'seq' ? seq.items[0]!.value.spans : undefined;
    expect(lastSpans?.starts.map((s, i) => last.slice(s, lastSpans.ends[i]))).toEqual(['  - {name: a, port: 1}  # one\n', '  - {name: b, port: 2}']);
  });

  it('reports a document nested too deeply to read as a diagnostic, not a crash', () => {
    const deep = `a: ${'['.repeat(20000)}${']'.repeat(20000)}\n`;
    const parsed = parsePolicy(deep, 'deep.yaml');
    expect(parsed.diagnostics.some((d) => d.severity === 'error')).toBe(true);
  });
});
