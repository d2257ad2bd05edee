/**
 * docs/errors.md lists every error code the code can raise, and nothing else.
 * A code is any string literal 'PS_…' in src/; a documented code is a table
 * row of docs/errors.md starting with | `PS_…` |. Adding a code means adding
 * a row with its cause and fix.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CODE_LITERAL = /'(PS_[A-Z0-9_]+)'/g;
const DOC_ROW = /^\|\s*`(PS_[A-Z0-9_]+)`\s*\|/gm;

/** Every 'PS_…' literal under src/, with the places it appears ("src/errors.ts:46"). */
function codesInSource(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  for (const file of files) {
    const lines = readFileSync(join(ROOT, 'src', file), 'utf8').split('\n');
    lines.forEach((line, i) => {
      for (const [, code] of line.matchAll(CODE_LITERAL)) {
        found.set(code!, [...(found.get(code!) ?? []), `src/${file}:${i + 1}`]);
      }
    });
  }
  return found;
}

/** Codes with a row in docs/errors.md, in document order. */
function codesInDoc(): string[] {
  return [...readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8').matchAll(DOC_ROW)].map((m) => m[1]!);
}

describe('docs/errors.md', () => {
  const source = codesInSource();
  const documented = codesInDoc();

  it('finds the error codes in src/ (the scan itself works)', () => {
    expect(source.has('PS_POLICY_INVALID'), "scan src/ for 'PS_POLICY_INVALID'").toBe(true);
  });

  it('documents every error code raised in src/', () => {
    const missing = [...source].filter(([code]) => !documented.includes(code)).map(([code, at]) => `${code} (${at.join(', ')})`);
    expect(missing, 'codes without a row "| `PS_…` | cause | fix |" in docs/errors.md').toEqual([]);
  });

  it('documents no code that src/ no longer raises', () => {
    const stale = documented.filter((code) => !source.has(code));
    expect(stale, 'rows of docs/errors.md whose code appears nowhere in src/').toEqual([]);
  });

  it('documents each code once', () => {
    const repeated = documented.filter((code, i) => documented.indexOf(code) !== i);
    expect(repeated, 'codes with more than one row in docs/errors.md').toEqual([]);
  });
});
