/**
 * Step 1 of the policy pipeline: YAML text → a document that remembers where
 * every key and value came from, plus the YAML syntax problems found.
 */
import { LineCounter, parseDocument, type Document, type YAMLError } from 'yaml';
import type { Diagnostic } from '../errors.js';

/** A 1-based line and column in the policy file. */
export interface Position {
  line: number;
  column: number;
}

/** A parsed policy file: the YAML document, its positions, and its syntax diagnostics. */
export interface ParsedPolicy {
  file: string;
  doc: Document.Parsed;
  /** Position of a source offset (a YAML node's range[0]). */
  positionAt(offset: number): Position;
  /** YAML syntax errors and warnings, positioned. */
  diagnostics: Diagnostic[];
}

/** Parses policy text; `file` names it in diagnostics. Never throws: syntax errors are diagnostics. */
export function parsePolicy(text: string, file: string): ParsedPolicy {
  const lineCounter = new LineCounter();
  // Node ranges are offsets, turned into line:column by the LineCounter. The default YAML 1.2 core
  // schema reads "yes" and "on" as strings, not booleans, so they are reported instead of guessed.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const positionAt = (offset: number): Position => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  const syntax = (problem: YAMLError, severity: Diagnostic['severity']): Diagnostic => ({
    file,
    ...positionAt(problem.pos[0]),
    message: `YAML: ${problem.message}`,
    severity,
  });
  return {
    file,
    doc,
    positionAt,
    diagnostics: [...doc.errors.map((e) => syntax(e, 'error')), ...doc.warnings.map((w) => syntax(w, 'warning'))],
  };
}
