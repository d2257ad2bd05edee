/**
 * Checks a parsed YAML document against the key table (schema.ts): unknown
 * keys, missing keys, types, enums, patterns and bounds, every one reported
 * at its position. Produces plain values with each invalid part left out,
 * and remembers where each path ("rules[2].port") sits in the file.
 */
import { isAlias, isMap, isScalar, isSeq, type Document, type Node } from 'yaml';
import type { Diagnostic } from '../errors.js';
import type { ParsedPolicy, Position } from './parse.js';
import type { KeySpec } from './schema.js';
import { suggestion } from './suggest.js';
import { parseBurst, parseConnectionRate, parseDuration, parsePacketRate, parseRate, UnitError } from './units.js';

/** Collects the diagnostics of one validation run and where each path is in the file. */
export class Findings {
  readonly diagnostics: Diagnostic[] = [];
  private readonly values = new Map<string, Position>();
  private readonly keys = new Map<string, Position>();
  /** Paths with an error at or below them: a failure marks every enclosing path too. */
  private readonly failed = new Set<string>();

  constructor(private readonly file: string) {}

  /** Records where the value (and key) of path are. */
  locate(path: string, value: Position, key?: Position): void {
    this.values.set(path, value);
    if (key) this.keys.set(path, key);
  }

  /** Position of path's value, or of the nearest enclosing path that exists in the file. */
  valueAt(path: string): Position {
    for (let p: string | undefined = path; p !== undefined; p = parentPath(p)) {
      const found = this.values.get(p);
      if (found) return found;
    }
    return { line: 1, column: 1 };
  }

  /** Position of path's key (of its value for a list item or the document). */
  keyAt(path: string): Position {
    return this.keys.get(path) ?? this.valueAt(path);
  }

  /** An error at a position; `path` marks that part of the policy as invalid. */
  error(path: string, at: Position, message: string): void {
    for (let p: string | undefined = path; p !== undefined && !this.failed.has(p); p = parentPath(p)) this.failed.add(p);
    this.diagnostics.push({ file: this.file, ...at, message, severity: 'error' });
  }

  /** A warning at a position: the policy stays valid. */
  warning(at: Position, message: string): void {
    this.diagnostics.push({ file: this.file, ...at, message, severity: 'warning' });
  }

  /** True when no error was reported at path or inside it. */
  isClean(path: string): boolean {
    return !this.failed.has(path);
  }
}

/** Path of a child: "rules" + 2 → "rules[2]", "rules[2]" + "port" → "rules[2].port". */
export function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return parent === '' ? key : `${parent}.${key}`;
}

/** How a path is named in messages; the document itself is "policy". */
function displayPath(path: string): string {
  return path === '' ? 'policy' : path;
}

/**
 * The document's plain value, checked against spec. Invalid values are left
 * out (list items become undefined, so indices keep matching paths).
 */
export function shapeDocument(parsed: ParsedPolicy, spec: KeySpec, findings: Findings): Record<string, unknown> {
  const walker = new Walker(parsed, findings);
  const root = parsed.doc.contents;
  findings.locate('', root ? parsed.positionAt(root.range[0]) : { line: 1, column: 1 });
  // An empty file is an empty mapping: its missing keys are reported, not "expected a mapping".
  if (root === null || (isScalar(root) && root.value === null)) return walker.object(undefined, spec, '') ?? {};
  return walker.object(root, spec, '') ?? {};
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  integer: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
};

class Walker {
  constructor(
    private readonly parsed: ParsedPolicy,
    private readonly findings: Findings,
  ) {}

  value(node: Node | null, spec: KeySpec, path: string): unknown {
    const resolved = this.resolve(node);
    // "- eth0" where "- name: eth0" is meant: a bare scalar stands for its shorthand key.
    const short = spec.shorthand !== undefined ? spec.keys?.[spec.shorthand] : undefined;
    if (spec.type === 'object' && short && isScalar(resolved) && typeof resolved.value === 'string') {
      const child = childPath(path, spec.shorthand!);
      this.findings.locate(child, this.at(resolved));
      const value = this.scalar(resolved, short, child);
      return value === undefined ? undefined : { [spec.shorthand!]: value };
    }
    if (spec.type === 'object') return this.object(resolved, spec, path);
    if (spec.type === 'array') return this.array(resolved, spec, path);
    return this.scalar(resolved, spec, path);
  }

  object(node: Node | undefined, spec: KeySpec, path: string): Record<string, unknown> | undefined {
    if (node !== undefined && !isMap(node)) return this.wrongType(node, spec, path);
    const keys = spec.keys ?? {};
    const out: Record<string, unknown> = {};
    const present = new Set<string>();
    for (const pair of node?.items ?? []) {
      const keyNode = this.resolve(pair.key as Node | null);
      const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
      const keyAt = keyNode ? this.at(keyNode) : this.findings.valueAt(path);
      if (key === undefined) {
        this.findings.error(path, keyAt, `${displayPath(path)}: keys must be plain words such as "port"`);
        continue;
      }
      const child = childPath(path, key);
      const valueNode = this.resolve(pair.value as Node | null);
      // "key:" with nothing after it has no position of its own: point at the key.
      const empty = valueNode === undefined || (isScalar(valueNode) && valueNode.value === null);
      this.findings.locate(child, empty ? keyAt : this.at(valueNode), keyAt);
      const childSpec = keys[key];
      if (childSpec === undefined) {
        this.findings.error(child, keyAt, unknownKey(path, key, spec));
        continue;
      }
      present.add(key);
      // An emptied optional section ("rules:" with every rule commented out) means "none".
      const container = childSpec.type === 'object' || childSpec.type === 'array';
      if (empty && container && !spec.required?.includes(key)) continue;
      const value = this.value(valueNode ?? null, childSpec, child);
      if (value !== undefined) out[key] = value;
    }
    for (const key of spec.required ?? []) {
      if (present.has(key)) continue;
      const hint = keys[key]?.hint;
      this.findings.error(
        childPath(path, key),
        this.findings.valueAt(path),
        `${displayPath(path)}: missing required key "${key}"${hint ? `; ${hint}` : ''}`,
      );
    }
    return out;
  }

  array(node: Node | undefined, spec: KeySpec, path: string): unknown[] | undefined {
    if (!isSeq(node)) return this.wrongType(node, spec, path);
    const items = node.items.map((item, index) => {
      const child = childPath(path, index);
      const itemNode = this.resolve(item as Node | null);
      this.findings.locate(child, itemNode ? this.at(itemNode) : this.at(node));
      return spec.items ? this.value(itemNode ?? null, spec.items, child) : undefined;
    });
    if (spec.minItems !== undefined && items.length < spec.minItems) {
      this.findings.error(path, this.at(node), `${displayPath(path)}: the list is empty${spec.hint ? `; ${spec.hint}` : ''}`);
    }
    return items;
  }

  scalar(node: Node | undefined, spec: KeySpec, path: string): unknown {
    if (!isScalar(node)) return this.wrongType(node, spec, path);
    // A bare number where a rate or burst belongs: the units parser says which unit to add.
    const value: unknown = spec.units && typeof node.value === 'number' ? (node.source ?? String(node.value)) : node.value;
    const types = typeof spec.type === 'string' ? [spec.type] : spec.type;
    const fits =
      (types.includes('string') && typeof value === 'string') ||
      (types.includes('integer') && Number.isInteger(value)) ||
      (types.includes('boolean') && typeof value === 'boolean');
    if (!fits) return this.wrongType(node, spec, path);
    const at = this.findings.valueAt(path);
    const where = displayPath(path);
    if (typeof value === 'number') {
      if ((spec.minimum !== undefined && value < spec.minimum) || (spec.maximum !== undefined && value > spec.maximum)) {
        this.findings.error(path, at, `${where}: ${value} is out of range ${spec.minimum ?? ''}..${spec.maximum ?? ''}`);
        return undefined;
      }
    }
    if (typeof value !== 'string') return value;
    if (spec.enum && !spec.enum.includes(value)) {
      this.findings.error(
        path,
        at,
        `${where}: "${value}" is not one of ${spec.enum.join(', ')}${suggestion(value, spec.enum)}`,
      );
      return undefined;
    }
    if (spec.pattern !== undefined && !new RegExp(spec.pattern).test(value)) {
      this.findings.error(path, at, `${where}: "${value}" is not valid${spec.hint ? `; ${spec.hint}` : ''}`);
      return undefined;
    }
    try {
      // Rates are complete on their own; a burst's bounds depend on its rule's rate (checked later).
      if (spec.units === 'rate') parseRate(value);
      if (spec.units === 'burst') parseBurst(value, 0);
      if (spec.units === 'duration' && value.trim().toLowerCase() !== 'off') parseDuration(value);
      if (spec.units === 'pps') parsePacketRate(value);
      if (spec.units === 'connections') parseConnectionRate(value);
    } catch (err) {
      if (!(err instanceof UnitError)) throw err;
      this.findings.error(path, at, `${where}: ${err.message}`);
      return undefined;
    }
    return value;
  }

  private wrongType(node: Node | undefined, spec: KeySpec, path: string): undefined {
    const types = typeof spec.type === 'string' ? [spec.type] : spec.type;
    const expected = types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
    const at = node && !(isScalar(node) && node.value === null) ? this.at(node) : this.findings.keyAt(path);
    this.findings.error(
      path,
      at,
      `${displayPath(path)}: expected ${expected}, got ${describe(node)}${spec.hint ? `; ${spec.hint}` : ''}`,
    );
    return undefined;
  }

  /** Follows an alias (*name) to the node it names, so anchors work like copies. */
  private resolve(node: Node | null | undefined): Node | undefined {
    if (isAlias(node)) return (node.resolve(this.parsed.doc as Document) as Node | undefined) ?? undefined;
    return node ?? undefined;
  }

  private at(node: Node): Position {
    return this.parsed.positionAt(node.range?.[0] ?? 0);
  }
}

function unknownKey(path: string, key: string, spec: KeySpec): string {
  const valid = Object.keys(spec.keys ?? {});
  const elsewhere = spec.elsewhere?.[key];
  if (elsewhere !== undefined) return `${childPath(path, key)}: ${elsewhere}`;
  const hint = suggestion(key, valid);
  return `${childPath(path, key)}: unknown key${hint || `; valid keys are ${valid.join(', ')}`}`;
}

function describe(node: Node | undefined): string {
  if (node === undefined) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (!isScalar(node)) return 'an unsupported value';
  const value: unknown = node.value;
  if (value === null) return 'nothing';
  if (typeof value === 'string') return `the string "${value}"`;
  if (typeof value === 'number') return `the number ${node.source ?? value}`;
  if (typeof value === 'boolean') return String(value);
  return 'an unsupported value';
}

function parentPath(path: string): string | undefined {
  if (path === '') return undefined;
  const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
  return cut < 0 ? '' : path.slice(0, cut);
}
