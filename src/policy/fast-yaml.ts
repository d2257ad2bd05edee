/**
 * A fast parser for the YAML that policies are written in: block mappings
 * and lists, one-line flow collections ([a, b], {k: v}), plain and quoted
 * one-line scalars, and comments. It builds the validator's tree directly
 * (no CST, no per-token objects), which is what makes a 65,536-rule file load
 * in tens of milliseconds instead of seconds.
 *
 * It never guesses: anything outside that subset (anchors, tags, block
 * scalars, multi-line scalars or flow collections, escapes in double
 * quotes, tabs, CRLF, directives, duplicate keys, syntax errors) makes it
 * give up, and the caller parses the
 * text with the `yaml` package, which reports the errors with positions.
 * Scalars resolve through the `yaml` package's own core-schema tags, so both
 * parsers give a value the same type. test/unit/policy/fast-yaml.test.ts
 * checks that both give the same tree.
 */
import { isScalar, Schema } from 'yaml';
import type { SrcMap, SrcNode, SrcPair, SrcScalar, SrcSeq } from './tree.js';

/** Thrown inside the parser to give up; never escapes parseFast. */
class GiveUp extends Error {}
const GIVE_UP = new GiveUp('outside the fast subset');

/** Core-schema tags that can match a plain scalar, in the order the `yaml` package tries them. */
const PLAIN_TAGS = new Schema({ schema: 'core' }).tags.filter((t) => t.default === true && t.test !== undefined) as {
  test: RegExp;
  resolve(value: string, onError: (msg: string) => void, options: object): unknown;
}[];
/** Characters a plain scalar may not start with (YAML 1.2 c-indicator), besides "-", "?", ":" handled apart. */
const INDICATORS = new Set([',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', "'", '"', '%', '@', '`']);
/** Flow nesting deeper than this is left to the `yaml` package (and its diagnostics). */
const MAX_FLOW_DEPTH = 64;

/** The tree of text, or undefined when the text is outside the fast subset. */
export function parseFast(text: string): { root: SrcNode | null } | undefined {
  if (text.includes('\t') || text.includes('\r') || text.charCodeAt(0) === 0xfeff) return undefined;
  try {
    return { root: new FastParser(text).document() };
  } catch (err) {
    if (err instanceof GiveUp) return undefined;
    throw err;
  }
}

function resolvePlain(source: string): unknown {
  for (const tag of PLAIN_TAGS) {
    if (tag.test.test(source)) {
      let failed = false;
      const value = tag.resolve(source, () => (failed = true), {});
      if (failed) throw GIVE_UP;
      // Floats come back wrapped (to keep their written precision), as in the package's own composer.
      return isScalar(value) ? value.value : value;
    }
  }
  return source;
}

/** A plain scalar's node; a number keeps the text it was written as ("0x1e62"), as the `yaml` package does. */
function plainScalar(source: string, start: number): SrcScalar {
  const value = resolvePlain(source);
  return typeof value === 'number' ? { kind: 'scalar', value, source, start } : { kind: 'scalar', value, start };
}

class FastParser {
  /** Start of the current line, and of its content (after the indentation). */
  private lineStart = 0;
  private indent = 0;
  /** No content line is left. */
  private eof = false;
  /** End (after its newline) of the last content line consumed. */
  private consumedEnd = 0;

  constructor(private readonly t: string) {
    this.seek(0);
  }

  document(): SrcNode | null {
    if (this.eof) return null;
    const first = this.lineStart + this.indent;
    if (this.t.startsWith('---', first) || this.t.startsWith('...', first) || this.t[first] === '%') throw GIVE_UP;
    let root: SrcNode;
    if (this.isSeqEntry(first)) root = this.blockSeq(this.indent);
    else if (this.keyEnd(first) !== undefined) root = this.blockMap(this.indent, first);
    else {
      // A lone scalar or flow collection as the whole document.
      const { node, end } = this.inlineValue(first, 0);
      this.endOfLine(end);
      root = node;
      this.next();
    }
    if (!this.eof) throw GIVE_UP;
    return root;
  }

  /** Moves to the first line from `from` that has content (not blank, not only a comment). */
  private seek(from: number): void {
    const t = this.t;
    let pos = from;
    while (pos < t.length) {
      let i = pos;
      while (t.charCodeAt(i) === 32) i++;
      const c = t.charCodeAt(i);
      if (i < t.length && c !== 10 && c !== 35 /* # */) {
        this.lineStart = pos;
        this.indent = i - pos;
        return;
      }
      const nl = t.indexOf('\n', i);
      if (nl < 0) break;
      pos = nl + 1;
    }
    this.eof = true;
  }

  /** Past the current line. */
  private next(): void {
    const nl = this.t.indexOf('\n', this.lineStart + this.indent);
    this.consumedEnd = nl < 0 ? this.t.length : nl + 1;
    if (nl < 0) this.eof = true;
    else this.seek(nl + 1);
  }

  private isSeqEntry(pos: number): boolean {
    if (this.t[pos] !== '-') return false;
    const c = this.t.charCodeAt(pos + 1);
    return c === 32 || c === 10 || pos + 1 >= this.t.length;
  }

  /**
   * When a block mapping key starts at pos: the offset of its ":" (followed by
   * a space or the end of the line). Quoted keys too.
   */
  private keyEnd(pos: number): number | undefined {
    const t = this.t;
    const c = t[pos];
    let end: number;
    if (c === '"' || c === "'") {
      end = this.quotedEnd(pos);
      while (t.charCodeAt(end) === 32) end++;
      return t[end] === ':' && this.separates(end + 1) ? end : undefined;
    }
    if (c === undefined || INDICATORS.has(c) || c === '?' || c === ':' || (c === '-' && this.isSeqEntry(pos))) return undefined;
    for (let i = pos; i < t.length; i++) {
      const ch = t.charCodeAt(i);
      if (ch === 10) return undefined;
      if (ch === 58 /* : */ && this.separates(i + 1)) return i;
      if (ch === 35 /* # */ && t.charCodeAt(i - 1) === 32) return undefined;
    }
    return undefined;
  }

  /** True when pos ends a token in block context: a space, the end of the line or of the text. */
  private separates(pos: number): boolean {
    const c = this.t.charCodeAt(pos);
    return pos >= this.t.length || c === 32 || c === 10;
  }

  /**
   * A block mapping at indentation n, whose first key is at `first` (on the
   * current line; after "- " for a mapping inside a list item).
   */
  private blockMap(n: number, first: number): SrcMap {
    const map: SrcMap = { kind: 'map', items: [], start: first };
    const seen = new Set<string>();
    let pos = first;
    for (;;) {
      const colon = this.keyEnd(pos);
      if (colon === undefined) throw GIVE_UP;
      const key = this.keyScalar(pos, colon);
      const name = String(key.value);
      if (seen.has(name)) throw GIVE_UP; // the yaml package reports the duplicate
      seen.add(name);
      const pair: SrcPair = { key, value: null };
      map.items.push(pair);
      const after = this.skipSpaces(colon + 1);
      if (this.atLineEnd(after)) {
        // The value is on the lines below: a nested block, a list at the same indentation, or nothing.
        this.next();
        if (!this.eof && this.indent > n) pair.value = this.block(this.indent);
        else if (!this.eof && this.indent === n && this.isSeqEntry(this.lineStart + n)) pair.value = this.blockSeq(n);
        else pair.value = { kind: 'scalar', value: null, start: after };
      } else {
        const { node, end } = this.inlineValue(after, 0);
        this.endOfLine(end);
        pair.value = node;
        this.next();
      }
      if (this.eof || this.indent < n) return map;
      if (this.indent > n) throw GIVE_UP; // a continuation line: multi-line scalar, or an error
      pos = this.lineStart + n;
      if (this.isSeqEntry(pos)) throw GIVE_UP;
    }
  }

  /** A nested block starting on the current line at indentation n. */
  private block(n: number): SrcNode {
    const pos = this.lineStart + n;
    if (this.isSeqEntry(pos)) return this.blockSeq(n);
    if (this.keyEnd(pos) !== undefined) return this.blockMap(n, pos);
    throw GIVE_UP; // a scalar on its own line below its key
  }

  /** A block list whose "-" entries are at indentation n, starting on the current line. */
  private blockSeq(n: number): SrcSeq {
    const seq: SrcSeq = { kind: 'seq', items: [], start: this.lineStart + n, spans: { starts: [], ends: [] } };
    for (;;) {
      const dash = this.lineStart + n;
      seq.spans!.starts.push(this.lineStart);
      const pos = this.skipSpaces(dash + 1);
      if (this.atLineEnd(pos)) {
        this.next();
        if (this.eof || this.indent <= n) throw GIVE_UP; // an empty item
        seq.items.push(this.block(this.indent));
      } else if (this.isSeqEntry(pos)) {
        throw GIVE_UP; // "- - a"
      } else if (this.keyEnd(pos) !== undefined) {
        seq.items.push(this.blockMap(pos - this.lineStart, pos));
      } else {
        const { node, end } = this.inlineValue(pos, 0);
        this.endOfLine(end);
        seq.items.push(node);
        this.next();
      }
      seq.spans!.ends.push(this.consumedEnd);
      if (this.eof || this.indent < n || (this.indent === n && !this.isSeqEntry(this.lineStart + n))) return seq;
      if (this.indent > n) throw GIVE_UP;
    }
  }

  private keyScalar(pos: number, colon: number): SrcScalar {
    const c = this.t[pos];
    if (c === '"' || c === "'") return this.quoted(pos).node;
    return plainScalar(this.t.slice(pos, colon).trimEnd(), pos);
  }

  /** A value on the current line: a flow collection or a scalar; end is the offset after it. */
  private inlineValue(pos: number, depth: number): { node: SrcNode; end: number } {
    const c = this.t[pos];
    if (c === '[' || c === '{') return this.flow(pos, depth);
    if (c === '"' || c === "'") return this.quoted(pos);
    return this.plain(pos, false);
  }

  /** A plain scalar; in flow context it also ends at , ] } and ":" followed by a separator. */
  private plain(pos: number, inFlow: boolean): { node: SrcScalar; end: number } {
    const t = this.t;
    const c = t[pos];
    if (c === undefined || INDICATORS.has(c) || c === '?' || c === ':' || (c === '-' && this.isSeqEntry(pos))) throw GIVE_UP;
    let i = pos;
    for (; i < t.length; i++) {
      const ch = t.charCodeAt(i);
      if (ch === 10) break;
      if (ch === 35 /* # */ && t.charCodeAt(i - 1) === 32) break;
      if (ch === 58 /* : */) {
        const next = t.charCodeAt(i + 1);
        const sep = i + 1 >= t.length || next === 32 || next === 10 || (inFlow && (next === 44 || next === 93 || next === 125));
        if (sep) {
          if (inFlow) break;
          throw GIVE_UP; // "key: a: b" is an error in block context
        }
      }
      if (inFlow && (ch === 44 || ch === 93 || ch === 125 || ch === 91 || ch === 123)) break;
    }
    const source = t.slice(pos, i).trimEnd();
    if (source === '') throw GIVE_UP;
    return { node: plainScalar(source, pos), end: pos + source.length };
  }

  /** Offset just past the closing quote of the quoted scalar at pos (on its line). */
  private quotedEnd(pos: number): number {
    const t = this.t;
    const q = t[pos];
    for (let i = pos + 1; i < t.length; i++) {
      const ch = t[i];
      if (ch === '\n') throw GIVE_UP; // multi-line quoted scalars fold lines
      if (q === "'" && ch === "'") {
        if (t[i + 1] === "'") {
          i++;
          continue;
        }
        return i + 1;
      }
      if (q === '"') {
        if (ch === '\\') {
          i++;
          continue;
        }
        if (ch === '"') return i + 1;
      }
    }
    throw GIVE_UP;
  }

  private quoted(pos: number): { node: SrcScalar; end: number } {
    const end = this.quotedEnd(pos);
    const body = this.t.slice(pos + 1, end - 1);
    // Escapes in double quotes ("\t", "\u00e9", …) are the yaml package's to read: give up on them.
    if (this.t[pos] === '"' && body.includes('\\')) throw GIVE_UP;
    const value = this.t[pos] === "'" ? body.replaceAll("''", "'") : body;
    return { node: { kind: 'scalar', value, start: pos }, end };
  }

  /** A flow collection that opens and closes on this line. */
  private flow(pos: number, depth: number): { node: SrcNode; end: number } {
    if (depth >= MAX_FLOW_DEPTH) throw GIVE_UP;
    const t = this.t;
    const isMap = t[pos] === '{';
    const close = isMap ? '}' : ']';
    const items: (SrcNode | null)[] = [];
    const pairs: SrcPair[] = [];
    const seen = new Set<string>();
    let i = this.skipSpaces(pos + 1);
    while (t[i] !== close) {
      const item = this.flowItem(i, depth);
      i = this.skipSpaces(item.end);
      if (isMap) {
        if (t[i] !== ':' || item.node.kind !== 'scalar') throw GIVE_UP; // "{a}" (a null value) or a complex key
        const name = String(item.node.value);
        if (seen.has(name)) throw GIVE_UP;
        seen.add(name);
        i = this.skipSpaces(i + 1);
        if (t[i] === ',' || t[i] === '}') throw GIVE_UP; // "{a: }"
        const value = this.flowItem(i, depth);
        pairs.push({ key: item.node, value: value.node });
        i = this.skipSpaces(value.end);
      } else {
        if (t[i] === ':') throw GIVE_UP; // "[a: b]" makes a one-pair mapping
        items.push(item.node);
      }
      if (t[i] === ',') i = this.skipSpaces(i + 1);
      else if (t[i] !== close) throw GIVE_UP;
    }
    const node: SrcNode = isMap ? { kind: 'map', items: pairs, start: pos } : { kind: 'seq', items, start: pos };
    return { node, end: i + 1 };
  }

  private flowItem(pos: number, depth: number): { node: SrcNode; end: number } {
    const c = this.t[pos];
    if (c === '[' || c === '{') return this.flow(pos, depth + 1);
    if (c === '"' || c === "'") return this.quoted(pos);
    return this.plain(pos, true);
  }

  private skipSpaces(pos: number): number {
    while (this.t.charCodeAt(pos) === 32) pos++;
    return pos;
  }

  /** True at the end of a line, of the text, or at a comment. */
  private atLineEnd(pos: number): boolean {
    const c = this.t.charCodeAt(pos);
    return pos >= this.t.length || c === 10 || c === 35;
  }

  /** After a value only spaces and a comment may follow on its line. */
  private endOfLine(end: number): void {
    const pos = this.skipSpaces(end);
    if (!this.atLineEnd(pos)) throw GIVE_UP;
    // "#" right after a value (no space) is part of it in YAML; a plain scalar has taken it already.
    if (this.t.charCodeAt(pos) === 35 && pos === end) throw GIVE_UP;
  }
}
