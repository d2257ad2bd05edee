/**
 * Checks a parsed YAML document against the key table (schema.ts): unknown
 * keys, missing keys, types, enums, patterns and bounds, every one reported
 * at its position. Produces plain values with each invalid part left out,
 * and finds where each path ("rules[2].port") sits in the file when asked.
 */
import type { Diagnostic, DiagnosticCode } from '../errors.js';
import type { ParsedPolicy, Position } from './parse.js';
import type { KeySpec } from './schema.js';
import { mapGet, type SrcNode } from './tree.js';
import { suggestion } from './suggest.js';
import { parseBurst, parseConnectionRate, parseDuration, parsePacketRate, parseRate, UnitError } from './units.js';

/**
 * Collects the diagnostics of one validation run. Where a path ("rules[2].port")
 * sits in the file is looked up in the tree only when a diagnostic or a rule's
 * line asks, so a valid file pays nothing for positions.
 */
export class Findings {
  readonly diagnostics: Diagnostic[] = [];
  /** Paths with an error at or below them: a failure marks every enclosing path too. */
  private readonly failed = new Set<string>();
  readonly file: string;

  constructor(private readonly parsed: ParsedPolicy) {
    this.file = parsed.file;
  }

  /** Position of path's value, or of the nearest enclosing path that exists in the file. */
  valueAt(path: string): Position {
    return this.parsed.positionAt(this.find(path).value);
  }

  /** Position of path's key (of its value for a list item or the document). */
  keyAt(path: string): Position {
    const found = this.find(path);
    return this.parsed.positionAt(found.key ?? found.value);
  }

  /** Line of the index-th item of a top-level list (a rule's line, asked for every rule). */
  itemLine(key: string, index: number): number {
    const root = this.parsed.root;
    const list = root?.kind === 'map' ? mapGet(root, key)?.value : undefined;
    const item = list?.kind === 'seq' ? list.items[index] : undefined;
    return item ? this.parsed.positionAt(item.start).line : this.valueAt(childPath(key, index)).line;
  }

  /** An error at a position; `path` marks that part of the policy as invalid. */
  error(path: string, at: Position, message: string, code: DiagnosticCode): void {
    for (let p: string | undefined = path; p !== undefined && !this.failed.has(p); p = parentPath(p)) this.failed.add(p);
    this.diagnostics.push({ file: this.file, ...at, message, severity: 'error', code, path });
  }

  /** A warning at a position: the policy stays valid. */
  warning(path: string, at: Position, message: string): void {
    this.diagnostics.push({ file: this.file, ...at, message, severity: 'warning', code: 'notice', path });
  }

  /** True when no error was reported at path or inside it. */
  isClean(path: string): boolean {
    // Most files have no error at all: no need to hash the path.
    return this.failed.size === 0 || !this.failed.has(path);
  }

  /**
   * Offsets of the deepest node on path: its value (an empty value "key:"
   * points at its key; an empty list item at its list) and its key.
   */
  private find(path: string): { value: number; key?: number } {
    const root = this.parsed.root;
    if (root === null) return { value: 0 };
    let node: SrcNode = root;
    let found: { value: number; key?: number } = { value: root.start };
    for (const segment of pathSegments(path)) {
      if (typeof segment === 'number') {
        if (node.kind !== 'seq' || segment >= node.items.length) break;
        const item: SrcNode | null = node.items[segment] ?? null;
        found = { value: item ? item.start : node.start };
        if (item === null) break;
        node = item;
      } else {
        if (node.kind !== 'map') break;
        const pair = mapGet(node, segment);
        if (pair === undefined) break;
        const key = pair.key?.start ?? node.start;
        const value = pair.value;
        const empty = value === null || (value.kind === 'scalar' && value.value === null);
        found = { value: empty ? key : value.start, key };
        if (value === null) break;
        node = value;
      }
    }
    return found;
  }
}

/** "rules[2].client.rate" → ["rules", 2, "client", "rate"]. */
function pathSegments(path: string): (string | number)[] {
  const out: (string | number)[] = [];
  for (const part of path.split('.')) {
    if (part === '') continue;
    const bracket = part.indexOf('[');
    if (bracket < 0) {
      out.push(part);
      continue;
    }
    if (bracket > 0) out.push(part.slice(0, bracket));
    for (let open = bracket; open >= 0; open = part.indexOf('[', open + 1)) out.push(Number(part.slice(open + 1, part.indexOf(']', open))));
  }
  return out;
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
  const root = parsed.root;
  // An empty file is an empty mapping: its missing keys are reported, not "expected a mapping".
  if (root === null || (root.kind === 'scalar' && root.value === null)) return walker.object(undefined, spec, '') ?? {};
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

  value(node: SrcNode | null, spec: KeySpec, path: string): unknown {
    // "- eth0" where "- name: eth0" is meant: a bare scalar stands for its shorthand key.
    const short = spec.shorthand !== undefined ? spec.keys?.[spec.shorthand] : undefined;
    if (spec.type === 'object' && short && node?.kind === 'scalar' && typeof node.value === 'string') {
      const value = this.scalar(node, short, childPath(path, spec.shorthand!));
      return value === undefined ? undefined : { [spec.shorthand!]: value };
    }
    if (spec.type === 'object') return this.object(node ?? undefined, spec, path);
    if (spec.type === 'array') return this.array(node ?? undefined, spec, path);
    return this.scalar(node ?? undefined, spec, path);
  }

  object(node: SrcNode | undefined, spec: KeySpec, path: string): Record<string, unknown> | undefined {
    if (node !== undefined && node.kind !== 'map') return this.wrongType(node, spec, path);
    const keys = spec.keys ?? {};
    const out: Record<string, unknown> = {};
    const present = new Set<string>();
    for (const pair of node?.items ?? []) {
      const keyNode = pair.key;
      if (keyNode?.kind !== 'scalar') {
        const at = keyNode ? this.at(keyNode) : this.findings.valueAt(path);
        this.findings.error(path, at, `${displayPath(path)}: keys must be plain words such as "port"`, 'type');
        continue;
      }
      const key = String(keyNode.value);
      const child = childPath(path, key);
      const valueNode = pair.value;
      const childSpec = keys[key];
      if (childSpec === undefined) {
        this.findings.error(child, this.at(keyNode), unknownKey(path, key, spec), 'unknown-key');
        continue;
      }
      present.add(key);
      // An emptied optional section ("rules:" with every rule commented out) means "none".
      const empty = valueNode === null || (valueNode.kind === 'scalar' && valueNode.value === null);
      const container = childSpec.type === 'object' || childSpec.type === 'array';
      if (empty && container && !spec.required?.includes(key)) continue;
      const value = this.value(valueNode, childSpec, child);
      if (value !== undefined) out[key] = value;
    }
    for (const key of spec.required ?? []) {
      if (present.has(key)) continue;
      const hint = keys[key]?.hint;
      this.findings.error(
        childPath(path, key),
        this.findings.valueAt(path),
        `${displayPath(path)}: missing required key "${key}"${hint ? `; ${hint}` : ''}`,
        'missing-key',
      );
    }
    return out;
  }

  array(node: SrcNode | undefined, spec: KeySpec, path: string): unknown[] | undefined {
    if (node?.kind !== 'seq') return this.wrongType(node, spec, path);
    const items = spec.items;
    const out = new Array<unknown>(node.items.length);
    for (let index = 0; index < node.items.length; index++) {
      out[index] = items ? this.value(node.items[index] ?? null, items, childPath(path, index)) : undefined;
    }
    if (spec.minItems !== undefined && out.length < spec.minItems) {
      this.findings.error(path, this.at(node), `${displayPath(path)}: the list is empty${spec.hint ? `; ${spec.hint}` : ''}`, 'missing-key');
    }
    return out;
  }

  scalar(node: SrcNode | undefined, spec: KeySpec, path: string): unknown {
    if (node?.kind !== 'scalar') return this.wrongType(node, spec, path);
    // A bare number where a rate or burst belongs: the units parser says which unit to add.
    const value: unknown = spec.units && typeof node.value === 'number' ? (node.source ?? String(node.value)) : node.value;
    const types = typeof spec.type === 'string' ? [spec.type] : spec.type;
    const fits =
      (types.includes('string') && typeof value === 'string') ||
      (types.includes('integer') && Number.isInteger(value)) ||
      (types.includes('boolean') && typeof value === 'boolean');
    if (!fits) return this.wrongType(node, spec, path);
    const where = displayPath(path);
    if (typeof value === 'number') {
      if ((spec.minimum !== undefined && value < spec.minimum) || (spec.maximum !== undefined && value > spec.maximum)) {
        this.findings.error(path, this.findings.valueAt(path), `${where}: ${value} is out of range ${spec.minimum ?? ''}..${spec.maximum ?? ''}`, 'range');
        return undefined;
      }
    }
    if (typeof value !== 'string') return value;
    if (spec.enum && !spec.enum.includes(value)) {
      this.findings.error(
        path,
        this.findings.valueAt(path),
        `${where}: "${value}" is not one of ${spec.enum.join(', ')}${suggestion(value, spec.enum)}`,
        'enum',
      );
      return undefined;
    }
    if (spec.pattern !== undefined && !patternOf(spec.pattern).test(value)) {
      this.findings.error(path, this.findings.valueAt(path), `${where}: "${value}" is not valid${spec.hint ? `; ${spec.hint}` : ''}`, 'pattern');
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
      this.findings.error(path, this.findings.valueAt(path), `${where}: ${err.message}`, 'units');
      return undefined;
    }
    return value;
  }

  private wrongType(node: SrcNode | undefined, spec: KeySpec, path: string): undefined {
    const types = typeof spec.type === 'string' ? [spec.type] : spec.type;
    const expected = types.map((t) => TYPE_WORDS[t] ?? t).join(' or ');
    const at = node && !(node.kind === 'scalar' && node.value === null) ? this.at(node) : this.findings.keyAt(path);
    this.findings.error(
      path,
      at,
      `${displayPath(path)}: expected ${expected}, got ${describe(node)}${spec.hint ? `; ${spec.hint}` : ''}`,
      'type',
    );
    return undefined;
  }

  private at(node: SrcNode): Position {
    return this.parsed.positionAt(node.start);
  }
}

/** Compiled patterns of the key table, one RegExp each (not one per value checked). */
const PATTERNS = new Map<string, RegExp>();
function patternOf(source: string): RegExp {
  let re = PATTERNS.get(source);
  if (re === undefined) PATTERNS.set(source, (re = new RegExp(source)));
  return re;
}

function unknownKey(path: string, key: string, spec: KeySpec): string {
  const valid = Object.keys(spec.keys ?? {});
  const elsewhere = spec.elsewhere?.[key];
  if (elsewhere !== undefined) return `${childPath(path, key)}: ${elsewhere}`;
  const hint = suggestion(key, valid);
  return `${childPath(path, key)}: unknown key${hint || `; valid keys are ${valid.join(', ')}`}`;
}

function describe(node: SrcNode | undefined): string {
  if (node === undefined) return 'nothing';
  if (node.kind === 'map') return 'a mapping';
  if (node.kind === 'seq') return 'a list';
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
