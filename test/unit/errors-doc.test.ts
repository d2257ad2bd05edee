/**
 * The error table (ERRORS in src/errors.ts) is the list of codes: docs/errors.md
 * has one row per code of the table and no other (a row starts with
 * | `PS_…` |), every code of the table is raised somewhere in src/, and no
 * 'PS_…' literal lives outside src/errors.ts (raise sites write CODE.PS_…).
 * Adding a code means adding it to the table and a row with its cause and fix.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const ERRORS_FILE = 'errors.ts';
const DOC_ROW = /^\|\s*`(PS_[A-Z0-9_]+)`\s*\|/gm;
const CODE_LITERAL = /(['"`])(PS_[A-Z0-9_]+)\1/g;

/** Every .ts file under src/ (relative path) with its text. */
function sources(): Map<string, string> {
  const files = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
  return new Map(files.map((f) => [f, readFileSync(join(ROOT, 'src', f), 'utf8')]));
}

/** Codes with a row in docs/errors.md, in document order. */
function codesInDoc(): string[] {
  return [...readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8').matchAll(DOC_ROW)].map((m) => m[1]!);
}

/**
 * Whether a code is raised: CODE.X is written outside src/errors.ts, or inside
 * it by a class that code outside src/errors.ts constructs (PinLayoutError
 * carries PS_PIN_LAYOUT; a class nobody constructs raises nothing).
 */
function raised(code: string, src: Map<string, string>): boolean {
  const ref = new RegExp(`\\bCODE\\.${code}\\b`);
  const outside = [...src].filter(([f]) => f !== ERRORS_FILE).map(([, text]) => text);
  if (outside.some((text) => ref.test(text))) return true;
  const errorsText = src.get(ERRORS_FILE)!;
  const classes = [...errorsText.matchAll(/^export class (\w+)[^]*?^}/gm)].filter((m) => ref.test(m[0])).map((m) => m[1]!);
  return classes.some((name) => outside.some((text) => new RegExp(`\\bnew ${name}\\(`).test(text)));
}

describe('the error table and docs/errors.md', () => {
  const src = sources();
  const table = Object.keys(ERRORS);
  const documented = codesInDoc();

  it('finds the table and the rows (the scan itself works)', () => {
    expect(table, 'ERRORS has PS_POLICY_INVALID').toContain('PS_POLICY_INVALID');
    expect(documented, 'docs/errors.md has a row for PS_POLICY_INVALID').toContain('PS_POLICY_INVALID');
  });

  it('documents every code of the table', () => {
    const missing = table.filter((code) => !documented.includes(code));
    expect(missing, 'codes of ERRORS without a row "| `PS_…` | cause | fix |" in docs/errors.md').toEqual([]);
  });

  it('documents no code the table lacks', () => {
    const stale = documented.filter((code) => !table.includes(code));
    expect(stale, 'rows of docs/errors.md whose code is not in ERRORS').toEqual([]);
  });

  it('documents each code once', () => {
    const repeated = documented.filter((code, i) => documented.indexOf(code) !== i);
    expect(repeated, 'codes with more than one row in docs/errors.md').toEqual([]);
  });

  it('raises every code of the table somewhere in src/', () => {
    const dead = table.filter((code) => !raised(code, src));
    expect(dead, 'codes of ERRORS that nothing in src/ raises or answers with (remove them, or raise them where they belong)').toEqual([]);
  });

  it("has no 'PS_…' literal outside src/errors.ts", () => {
    const literals = [...src]
      .filter(([f]) => f !== ERRORS_FILE)
      .flatMap(([f, text]) => text.split('\n').flatMap((line, i) => [...line.matchAll(CODE_LITERAL)].map((m) => `src/${f}:${i + 1}: ${m[2]}`)));
    expect(literals, "write CODE.PS_… (typed by the table), not a 'PS_…' string").toEqual([]);
  });

  it('names a known class for every raised error, and an HTTP error status for every code', () => {
    const errorsText = src.get(ERRORS_FILE)!;
    const problems = Object.entries(ERRORS).flatMap(([code, spec]) => [
      ...(spec.class !== null && !new RegExp(`^export class ${spec.class}\\b`, 'm').test(errorsText) ? [`${code}: class ${spec.class} is not in src/errors.ts`] : []),
      ...(spec.status < 400 || spec.status > 599 ? [`${code}: status ${spec.status}`] : []),
    ]);
    expect(problems).toEqual([]);
  });
});
