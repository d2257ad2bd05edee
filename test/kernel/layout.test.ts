/**
 * The TypeScript mirror of bpf/portshaper.h must match the compiled object:
 * every struct's size and field offsets, and every shared constant, are read
 * from the object's BTF (bpftool) and compared.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { DEFAULT_OBJECT_PATH } from '../../src/kernel/dataplane.js';
import { PS, SHARED_STRUCTS } from '../../src/kernel/layout.js';

interface BtfType {
  id: number;
  kind: string;
  name?: string;
  size?: number;
  type_id?: number;
  members?: { name: string; type_id: number; bits_offset: number }[];
  values?: { name: string; val: number }[];
  vars?: { type_id: number }[];
}

const btf: BtfType[] = JSON.parse(
  execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', DEFAULT_OBJECT_PATH], { encoding: 'utf8' }),
).types;
const byId = new Map(btf.map((t) => [t.id, t]));

function structNamed(name: string): BtfType {
  const t = btf.find((x) => x.kind === 'STRUCT' && x.name === name);
  if (!t) throw new Error(`struct ${name} is not in the BTF of ${DEFAULT_OBJECT_PATH}`);
  return t;
}

describe('struct layouts shared with the BPF object (BTF)', () => {
  for (const s of SHARED_STRUCTS) {
    it(`${s.cName} matches field by field`, () => {
      const t = structNamed(s.cName);
      const btfFields = t.members!.map((m) => ({ name: m.name, offset: m.bits_offset / 8 }));
      const problems: string[] = [];
      if (t.size !== s.size) problems.push(`${s.cName} size ${s.size} does not match BTF ${t.size}`);
      const names = new Set([...btfFields.map((f) => f.name), ...s.fields.map((f) => f.name)]);
      for (const name of names) {
        const mine = s.fields.find((f) => f.name === name);
        const theirs = btfFields.find((f) => f.name === name);
        if (!mine) problems.push(`${s.cName}.${name} is in BTF but not in the TypeScript mirror`);
        else if (!theirs) problems.push(`${s.cName}.${name} is in the TypeScript mirror but not in BTF`);
        else if (mine.offset !== theirs.offset)
          problems.push(`${s.cName}.${name} offset ${mine.offset} does not match BTF ${theirs.offset}`);
      }
      expect(problems).toEqual([]);
    });
  }

  it('every map value struct has a TypeScript mirror', () => {
    const maps = btf.find((t) => t.kind === 'DATASEC' && t.name === '.maps')!;
    const mirrored = new Set(SHARED_STRUCTS.map((s) => s.cName));
    const missing: string[] = [];
    for (const v of maps.vars!) {
      const mapVar = byId.get(v.type_id)!;
      const def = byId.get(mapVar.type_id!)!;
      const value = def.members!.find((m) => m.name === 'value');
      if (!value) continue;
      let t = byId.get(value.type_id)!; // pointer to the value type
      t = byId.get(t.type_id!)!;
      while (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE') t = byId.get(t.type_id!)!;
      if (t.kind === 'STRUCT' && !mirrored.has(t.name!)) missing.push(`${mapVar.name}: struct ${t.name}`);
    }
    expect(missing).toEqual([]);
  });

  it('every constant of portshaper.h has the same value in TypeScript', () => {
    const inBtf = new Map<string, number>();
    for (const t of btf) if (t.kind === 'ENUM' && t.name?.startsWith('ps_')) for (const v of t.values!) inBtf.set(v.name, v.val);
    const problems: string[] = [];
    for (const [name, val] of inBtf) {
      const mine = (PS as Record<string, number>)[name];
      if (mine === undefined) problems.push(`${name} = ${val} is in BTF but not in PS`);
      else if (mine !== val) problems.push(`${name} is ${mine} in TypeScript but ${val} in BTF`);
    }
    for (const name of Object.keys(PS)) if (!inBtf.has(name)) problems.push(`${name} is in PS but not in BTF`);
    expect(problems).toEqual([]);
  });
});
