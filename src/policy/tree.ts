/**
 * The policy document as the validator walks it: mappings, lists and scalars
 * with the source offset where each starts. Two parsers produce it: the fast
 * one (fast-yaml.ts) for the plain block YAML that policies are written in,
 * and the `yaml` package for everything else (anchors, tags, block scalars,
 * syntax errors). Offsets become line:column only when a diagnostic needs one.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type Node } from 'yaml';

export interface SrcScalar {
  kind: 'scalar';
  /** null, a string, a number or a boolean (YAML 1.2 core schema). */
  value: unknown;
  /** The text of a plain scalar as written ("0x1e62", "100"): what a number came from. */
  source?: string;
  start: number;
}

export interface SrcPair {
  /** A scalar, or (an error the validator reports) a mapping or list used as a key. */
  key: SrcNode | null;
  value: SrcNode | null;
}

export interface SrcMap {
  kind: 'map';
  items: SrcPair[];
  start: number;
}

export interface SrcSeq {
  kind: 'seq';
  items: (SrcNode | null)[];
  start: number;
  /**
   * Block lists from the fast parser: where each item's text begins (the
   * start of the line of its "-") and ends (after the newline of its last
   * line with content; comment lines between items belong to neither), so a
   * writer can replace one item's text without touching the rest. Absent for
   * flow lists and for documents the `yaml` package parsed.
   */
  spans?: { starts: number[]; ends: number[] };
}

export type SrcNode = SrcScalar | SrcMap | SrcSeq;

/** The value of key in a mapping, or undefined when the mapping lacks it. */
export function mapGet(map: SrcMap, key: string): SrcPair | undefined {
  for (const pair of map.items) if (pair.key?.kind === 'scalar' && String(pair.key.value) === key) return pair;
  return undefined;
}

/** Plain JavaScript value of a tree (for tests and for equality of documents). */
export function toPlain(node: SrcNode | null): unknown {
  if (node === null) return null;
  if (node.kind === 'scalar') return node.value;
  if (node.kind === 'seq') return node.items.map(toPlain);
  return Object.fromEntries(node.items.map((p) => [String(p.key?.kind === 'scalar' ? p.key.value : toPlain(p.key)), toPlain(p.value)]));
}

/**
 * The tree of a document the `yaml` package parsed. Aliases (*name) become
 * the node their anchor names, so anchors work like copies; an alias of a
 * node that contains it becomes null instead of a cycle.
 */
export function fromDocument(doc: Document.Parsed): SrcNode | null {
  const converted = new Map<Node, SrcNode | null>();
  const convert = (node: Node | null | undefined): SrcNode | null => {
    if (node === null || node === undefined) return null;
    if (isAlias(node)) {
      const target = node.resolve(doc as Document) as Node | undefined;
      return target === undefined ? null : (converted.get(target) ?? null);
    }
    const start = node.range?.[0] ?? 0;
    let out: SrcNode;
    if (isScalar(node)) {
      out = { kind: 'scalar', value: node.value, start, ...(typeof node.value === 'number' && node.source !== undefined ? { source: String(node.source) } : {}) };
      converted.set(node, out);
      return out;
    }
    if (isSeq(node)) {
      const seq: SrcSeq = { kind: 'seq', items: [], start };
      converted.set(node, null); // in progress: an alias to it from inside is a cycle
      for (const item of node.items) seq.items.push(convert(item as Node | null));
      out = seq;
    } else if (isMap(node)) {
      const map: SrcMap = { kind: 'map', items: [], start };
      converted.set(node, null);
      for (const pair of node.items) {
        map.items.push({ key: convert(pair.key as Node | null), value: convert(pair.value as Node | null) });
      }
      out = map;
    } else {
      return null;
    }
    converted.set(node, out);
    return out;
  };
  return convert(doc.contents as Node | null);
}
