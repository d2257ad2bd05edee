/**
 * One-way data flow in src/: each room imports only from the rooms below it
 * (errors/log ← kernel ← policy ← controller ← api ← cli), and no module
 * imports itself back through others. Type-only imports count too: they are
 * the same coupling, and erasing them at build time does not make the
 * layering right.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src');

/** Rooms from the bottom up; a module may import its own room and the rooms before it. */
const LAYERS = ['base', 'kernel', 'policy', 'controller', 'api', 'cli'] as const;

function layerOf(file: string): number {
  const top = relative(SRC, file).split('/')[0]!;
  const layer = top.endsWith('.ts') ? 'base' : top;
  const i = (LAYERS as readonly string[]).indexOf(layer);
  if (i < 0) throw new Error(`${relative(SRC, file)} is in no known room of src/ (add it to LAYERS)`);
  return i;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Relative imports of a module (static, re-exports and dynamic import()), resolved to .ts files. */
export function importsOf(file: string, text: string): string[] {
  const specs = [
    ...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+['"](\.[^'"]+)['"]/gms),
    ...text.matchAll(/^\s*import\s+['"](\.[^'"]+)['"]/gm),
    ...text.matchAll(/\bimport\(\s*['"](\.[^'"]+)['"]\s*\)/g),
  ].map((m) => m[1]!);
  return specs.map((s) => resolve(dirname(file), s.replace(/\.js$/, '.ts')));
}

/** Every cycle's modules (strongly connected components of more than one module, or a self-import). */
export function cycles(graph: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

function srcGraph(): Map<string, string[]> {
  return new Map(sources(SRC).map((f) => [f, importsOf(f, readFileSync(f, 'utf8'))]));
}

describe('import direction in src/', () => {
  it('no module imports a room above its own (kernel → controller, controller → api, anything → cli)', () => {
    const upward: string[] = [];
    for (const [file, deps] of srcGraph()) {
      for (const dep of deps) {
        if (layerOf(dep) > layerOf(file)) upward.push(`${relative(SRC, file)} imports ${relative(SRC, dep)}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('no import cycles', () => {
    const named = cycles(srcGraph()).map((c) => c.map((f) => relative(SRC, f)).join(' ⇄ '));
    expect(named).toEqual([]);
  });

  it('the checks see what they must: an upward import, a dynamic import and a cycle', () => {
    const a = join(SRC, 'kernel', 'a.ts');
    const deps = importsOf(a, "import type { X } from '../controller/agent.js';\nconst m = await import('./b.js');\nexport { y } from './c.js';\n");
    expect(deps.map((d) => relative(SRC, d))).toEqual(['controller/agent.ts', 'kernel/c.ts', 'kernel/b.ts']);
    expect(layerOf(deps[0]!)).toBeGreaterThan(layerOf(a));
    expect(cycles(new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', ['a']]]))).toEqual([['a', 'b', 'c']]);
    expect(cycles(new Map([['a', ['a']]]))).toEqual([['a']]);
  });
});
