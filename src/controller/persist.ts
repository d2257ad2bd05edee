/**
 * API changes are written back into the policy file, which stays the one
 * source of truth (no overrides file, so nothing to reconcile at restart).
 * Edits go through the yaml Document API, so comments, key order and the
 * formatting of untouched rules survive; the file is replaced atomically.
 */
import { closeSync, fsyncSync, openSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Document, isMap, isScalar, isSeq, parseDocument, type YAMLMap } from 'yaml';
import { RULE_KEYS } from '../policy/schema.js';

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
    return doc.toString();
  }
  const item = ruleAt(doc, index);
  for (const pair of [...item.items]) {
    const key = isScalar(pair.key) ? String(pair.key.value) : undefined;
    if (key !== undefined && !(key in wanted)) item.delete(key);
  }
  setKeys(doc, item, index, wanted);
  return doc.toString();
}

/** Text with some keys of the rule at `index` changed (null removes a key); an unnamed rule gets its name written. */
export function patchRuleText(text: string, index: number, name: string, patch: RuleFields): string {
  const doc = parseDocument(text);
  const item = ruleAt(doc, index);
  for (const [key, value] of Object.entries(patch)) if (value === null) item.delete(key);
  const set = Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== null));
  setKeys(doc, item, index, { name, ...set });
  return doc.toString();
}

/** Text without the rule at `index`. */
export function deleteRuleText(text: string, index: number): string {
  const doc = parseDocument(text);
  doc.deleteIn(['rules', index]);
  return doc.toString();
}

/** Policy text for a whole policy given as a plain object (PUT /v1/policy with JSON). */
export function policyTextOf(value: unknown): string {
  return new Document(value).toString();
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
 * Replace `path` with `text` so that a crash leaves the old or the new file,
 * never a torn one: write a temporary file in the same directory, fsync it,
 * rename it over the target, fsync the directory (the rename itself).
 * The file keeps its permission bits.
 */
export function writeFileAtomic(path: string, text: string): void {
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
    writeSync(fd, text);
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
