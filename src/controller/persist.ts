/**
 * API changes are written back into the policy file, which stays the one
 * source of truth (no overrides file, so nothing to reconcile at restart).
 * Edits go through the yaml Document API, so comments, key order and the
 * formatting of untouched rules survive; the file is replaced atomically.
 */
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Document, isMap, isScalar, isSeq, parseDocument, type ToStringOptions, type YAMLMap } from 'yaml';
import { parseFast } from '../policy/fast-yaml.js';
import { RULE_KEYS } from '../policy/schema.js';

/**
 * How edited YAML is written: no folding of long values and no breaking of a
 * long flow mapping over several lines, so a "- {name: …}" rule stays on its
 * line (and in the fast parser's subset).
 */
const WRITE: ToStringOptions = { lineWidth: 0 };

/** Rule keys as the file spells them, in the order the key table lists them (name first). */
export const RULE_KEY_ORDER: readonly string[] = Object.keys(RULE_KEYS);

/** A rule's keys as the API receives them; null in a patch removes the key. */
export type RuleFields = Record<string, unknown>;

/**
 * Text with the rule at `index` replaced by `fields` (or appended when index
 * is undefined), named `name`. Keys of an existing rule are updated in place,
 * so comments on the keys that stay are kept; keys not given are removed.
 */
export function putRuleText(text: string, index: number | undefined, name: string, fields: RuleFields): string {
  const doc = parseDocument(text);
  const wanted = { name, ...fields };
  if (index === undefined) {
    appendRule(doc, orderedRule(wanted));
    return doc.toString(WRITE);
  }
  const item = ruleAt(doc, index);
  for (const pair of [...item.items]) {
    const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
    if (key !== undefined && !(key in wanted)) item.delete(key);
  }
  setKeys(doc, item, index, wanted);
  return doc.toString(WRITE);
}

/** Text with some keys of the rule at `index` changed (null removes a key); an unnamed rule gets its name written. */
export function patchRuleText(text: string, index: number, name: string, patch: RuleFields): string {
  const doc = parseDocument(text);
  const item = ruleAt(doc, index);
  for (const [key, value] of Object.entries(patch)) if (value === null) item.delete(key);
  const set = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== null));
  setKeys(doc, item, index, { name, ...set });
  return doc.toString(WRITE);
}

/** Text without the rule at `index`. */
export function deleteRuleText(text: string, index: number): string {
  const doc = parseDocument(text);
  doc.deleteIn(['rules', index]);
  return doc.toString(WRITE);
}

/** Policy text for a whole policy given as a plain object (PUT /v1/policy with JSON). */
export function policyTextOf(value: unknown): string {
  return new Document(value).toString(WRITE);
}

function ruleAt(doc: Document, index: number): YAMLMap {
  const item = doc.getIn(['rules', index], true);
  if (!isMap(item)) throw new Error(`rules[${index}] is not a mapping`);
  return item;
}

/**
 * Sets keys on an existing rule. A scalar that is replaced keeps its node, so
 * its inline comment ("rate: 10mbit  # why") stays; a new name goes first, the
 * way rules are usually written.
 */
function setKeys(doc: Document, item: YAMLMap, index: number, values: RuleFields): void {
  for (const [key, value] of Object.entries(values)) {
    const node = item.get(key, true);
    if (isScalar(node) && (typeof value !== 'object' || value === null)) {
      node.value = value;
      continue;
    }
    if (node === undefined && key === 'name') {
      item.items.unshift(doc.createPair(key, value));
      continue;
    }
    doc.setIn(['rules', index, key], doc.createNode(value, { flow: Array.isArray(value) }));
  }
}

function orderedRule(values: RuleFields): RuleFields {
  const keys = [...RULE_KEY_ORDER.filter((k) => k in values), ...Object.keys(values).filter((k) => !RULE_KEY_ORDER.includes(k))];
  return Object.fromEntries(keys.map((k) => [k, values[k]]));
}

function appendRule(doc: Document, rule: RuleFields): void {
  const node = doc.createNode(rule) as YAMLMap;
  for (const pair of node.items) {
    if (isSeq(pair.value)) pair.value.flow = true;
  }
  const rules = doc.getIn(['rules'], true);
  if (isSeq(rules)) {
    rules.items.push(node);
    return;
  }
  // No "rules:" yet, or one left empty after its rules were commented out.
  doc.setIn(['rules'], doc.createNode([rule]));
}

/**
 * Removes the temporary files writeFileAtomic left beside `path` when its
 * process died mid-save (".policy.yaml.<pid>.tmp" of a pid that is gone);
 * returns their names. Files of a live process are its save in progress.
 */
export function removeStaleTempFiles(path: string): string[] {
  const dir = dirname(path);
  const pattern = new RegExp(`^\\.${escapeRegExp(basename(path))}\\.(\\d+)\\.tmp$`);
  const removed: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const name of names) {
    const pid = Number(pattern.exec(name)?.[1]);
    if (!pid || (pid !== process.pid && alive(pid))) continue;
    try {
      unlinkSync(join(dir, name));
      removed.push(name);
    } catch {
      // gone already, or not ours to remove (read-only mount): nothing to clean
    }
  }
  return removed;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Replace `path` with `text` so that a crash leaves the old or the new file,
 * never a torn one: write a temporary file in the same directory, fsync it,
 * rename it over the target, fsync the directory (the rename itself).
 * The file keeps its permission bits.
 */
export function writeFileAtomic(path: string, text: string | Buffer): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  let mode = 0o644;
  try {
    mode = statSync(path).mode & 0o7777;
  } catch {
    // a new file: default mode
  }
  const fd = openSync(tmp, 'w', mode);
  try {
    writeFileSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
  const dirFd = openSync(dir, 'r');
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/**
 * Where each rule's lines are in a policy file whose rules are a block list
 * ("rules:" then "- …" items): an edit of one rule replaces only that rule's
 * lines, so a PATCH costs the rule, not the file (no parse and re-serialise
 * of 65,536 rules). Comments and formatting of every other line stay byte for
 * byte. Files outside the fast parser's subset, or with no rule yet, have no
 * RuleTexts: their edits go through the whole document (editRuleText above).
 */
export class RuleTexts {
  private decoded: string | undefined;

  private constructor(
    /** The file's bytes: an edit copies them in bulk instead of building (and flattening) a 5 MiB string. */
    readonly bytes: Buffer,
    /** Item i's bytes are bytes[starts[i], ends[i]). */
    private readonly starts: Int32Array,
    private readonly ends: Int32Array,
    /** Line (1-based) where each item starts. */
    private readonly lines: Int32Array,
    /** Column of the items' "-". */
    private readonly indent: number,
  ) {}

  static of(text: string): RuleTexts | undefined {
    const root = parseFast(text)?.root;
    if (root?.kind !== 'map') return undefined;
    const rules = root.items.find((p) => p.key?.kind === 'scalar' && p.key.value === 'rules')?.value;
    if (rules?.kind !== 'seq' || !rules.spans || !rules.items.length || rules.items.some((i) => i?.kind !== 'map')) return undefined;
    const bytes = Buffer.from(text, 'utf8');
    const toByte = byteOffsets(text, bytes.length);
    const starts = Int32Array.from(rules.spans.starts, toByte);
    const ends = Int32Array.from(rules.spans.ends, toByte);
    const lines = new Int32Array(starts.length);
    let line = 1;
    let from = 0;
    starts.forEach((start, i) => {
      line += newlines(bytes, from, start);
      from = start;
      lines[i] = line;
    });
    const texts = new RuleTexts(bytes, starts, ends, lines, rules.start - rules.spans.starts[0]!);
    texts.decoded = text;
    return texts;
  }

  /** The whole file as text (decoded on first use). */
  get text(): string {
    return (this.decoded ??= this.bytes.toString('utf8'));
  }

  get count(): number {
    return this.starts.length;
  }

  /** The lines of rule `index`. */
  item(index: number): string {
    return this.bytes.toString('utf8', this.starts[index], this.ends[index]);
  }

  /** Line (1-based) where rule `index` starts. */
  lineOf(index: number): number {
    return this.lines[index]!;
  }

  /** The whole file with `item` as its only rule: validates one rule against the file's other sections. */
  alone(item: string): string {
    return this.bytes.toString('utf8', 0, this.starts[0]) + item + this.bytes.toString('utf8', this.ends[this.count - 1]);
  }

  /** Rule `index` edited like putRuleText/patchRuleText, as the new lines of that rule. */
  edited(index: number | undefined, edit: (mini: string, index: number | undefined) => string): string {
    const mini = index === undefined ? 'rules:\n' : `rules:\n${rebase(this.item(index), this.indent, 2)}`;
    const out = edit(mini, index === undefined ? undefined : 0);
    const body = out.slice(out.indexOf('\n') + 1);
    return ensureNewline(rebase(body, 2, this.indent));
  }

  /** A new RuleTexts with rule `index` replaced by `item` (or removed: undefined), or `item` appended (index = count). */
  with(index: number, item: string | undefined): RuleTexts {
    const count = this.count;
    const append = index === count;
    const at = append ? this.ends[count - 1]! : this.starts[index]!;
    const tail = append ? this.ends[count - 1]! : this.ends[index]!;
    // A last rule without a newline at the end of the file: end its line before adding one.
    const newline = append && this.bytes[at - 1] !== 0x0a ? Buffer.from('\n') : Buffer.alloc(0);
    const added = Buffer.from(item ?? '', 'utf8');
    const bytes = Buffer.concat([this.bytes.subarray(0, at), newline, added, this.bytes.subarray(tail)]);
    const start = at + newline.length;
    const size = count + (append ? 1 : item === undefined ? -1 : 0);
    const starts = new Int32Array(size);
    const ends = new Int32Array(size);
    const lines = new Int32Array(size);
    starts.set(this.starts.subarray(0, index));
    ends.set(this.ends.subarray(0, index));
    lines.set(this.lines.subarray(0, index));
    if (append) {
      ends[count - 1]! += newline.length;
      starts[count] = start;
      ends[count] = start + added.length;
      lines[count] = this.lines[count - 1]! + newlines(bytes, this.starts[count - 1]!, start);
      return new RuleTexts(bytes, starts, ends, lines, this.indent);
    }
    const delta = added.length - (tail - at);
    const lineDelta = newlines(added, 0, added.length) - newlines(this.bytes, at, tail);
    let out = index;
    if (item !== undefined) {
      starts[out] = start;
      ends[out] = start + added.length;
      lines[out] = this.lines[index]!;
      out++;
    }
    for (let i = index + 1; i < count; i++, out++) {
      starts[out] = this.starts[i]! + delta;
      ends[out] = this.ends[i]! + delta;
      lines[out] = this.lines[i]! + lineDelta;
    }
    return new RuleTexts(bytes, starts, ends, lines, this.indent);
  }
}

/**
 * char offset → UTF-8 byte offset in text, for ascending offsets (one pass
 * over the text for all of them; the identity for ASCII text).
 */
function byteOffsets(text: string, byteLength: number): (offset: number) => number {
  if (byteLength === text.length) return (offset) => offset;
  let char = 0;
  let byte = 0;
  return (offset) => {
    if (offset < char) {
      char = 0;
      byte = 0;
    }
    for (; char < offset; char++) {
      const c = text.charCodeAt(char);
      // A surrogate pair is 4 bytes: 2 counted for each half.
      byte += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 2 : 3;
    }
    return byte;
  };
}

/** Newlines in bytes[from, to). */
function newlines(bytes: Buffer, from: number, to: number): number {
  let n = 0;
  for (let nl = bytes.indexOf(0x0a, from); nl >= 0 && nl < to; nl = bytes.indexOf(0x0a, nl + 1)) n++;
  return n;
}

/** Lines moved from indentation `from` to `to` (lines indented less lose only what they have). */
function rebase(text: string, from: number, to: number): string {
  const pad = ' '.repeat(to);
  return text
    .split('\n')
    .map((line) => {
      if (line === '') return line;
      let lead = 0;
      while (lead < from && line.charCodeAt(lead) === 32) lead++;
      return pad + line.slice(lead);
    })
    .join('\n');
}

function ensureNewline(text: string): string {
  return text.endsWith('\n') ? text : `${text}\n`;
}
