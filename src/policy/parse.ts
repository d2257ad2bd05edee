/**
 * Step 1 of the policy pipeline: YAML text → a tree that remembers where
 * every key and value starts, plus the YAML syntax problems found. Plain
 * policies take the fast parser; anything else (and every file with a syntax
 * error) takes the `yaml` package, so diagnostics are as precise as before.
 * Offsets become line:column only when something asks (a diagnostic, a
 * rule's line), so a large valid file pays nothing for positions.
 */
import { parseDocument, type YAMLError } from 'yaml';
import type { Diagnostic } from '../errors.js';
import { parseFast } from './fast-yaml.js';
import { fromDocument, type SrcNode } from './tree.js';

/** A 1-based line and column in the policy file. */
export interface Position {
  line: number;
  column: number;
}

/** A parsed policy file: its tree, its positions, and its syntax diagnostics. */
export interface ParsedPolicy {
  file: string;
  text: string;
  /** The document's top node; null for an empty document. */
  root: SrcNode | null;
  /** Which parser read it ("fast" keeps each list item's text span, which writers use). */
  parser: 'fast' | 'yaml';
  /** Position of a source offset (a node's start). */
  positionAt(offset: number): Position;
  /** YAML syntax errors and warnings, positioned. */
  diagnostics: Diagnostic[];
}

/** Parses policy text; `file` names it in diagnostics. Never throws: syntax errors are diagnostics. */
export function parsePolicy(text: string, file: string): ParsedPolicy {
  const positionAt = lineIndex(text);
  const fast = parseFast(text);
  if (fast) return { file, text, root: fast.root, parser: 'fast', positionAt, diagnostics: [] };
  // The default YAML 1.2 core schema reads "yes" and "on" as strings, not booleans, so they are reported instead of guessed.
  let doc;
  try {
    doc = parseDocument(text, { prettyErrors: false });
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    // The yaml package recurses per nesting level: a hostile document can exhaust the stack.
    const message = 'YAML: the document is nested too deeply to read; a policy needs at most a few levels';
    return { file, text, root: null, parser: 'yaml', positionAt, diagnostics: [{ file, line: 1, column: 1, message, severity: 'error', code: 'yaml' }] };
  }
  const syntax = (problem: YAMLError, severity: Diagnostic['severity']): Diagnostic => ({
    file,
    ...positionAt(problem.pos[0]),
    message: `YAML: ${problem.message}`,
    severity,
    code: 'yaml',
  });
  return {
    file,
    text,
    root: fromDocument(doc),
    parser: 'yaml',
    positionAt,
    diagnostics: [...doc.errors.map((e) => syntax(e, 'error')), ...doc.warnings.map((w) => syntax(w, 'warning'))],
  };
}

/** offset → line:column, with the table of line starts built on the first question. */
export function lineIndex(text: string): (offset: number) => Position {
  let starts: Int32Array | undefined;
  return (offset) => {
    if (starts === undefined) {
      const found = [0];
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', nl + 1)) found.push(nl + 1);
      starts = Int32Array.from(found);
    }
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
}
