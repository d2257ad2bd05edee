/** The pure diff between a desired state and a kernel snapshot. */
import { describe, expect, it } from 'vitest';
import { bucketKeyHash, isNoop, mirrorOf, reconcile, reconcileFrom, type KernelMirror, type KernelSnapshot, type WritePlan } from '../../src/kernel/reconcile.js';
import { CapacityError } from '../../src/errors.js';
import { PS, portIndex } from '../../src/kernel/layout.js';
import { desiredFrom, type TestRule } from '../helpers/dataplane.js';

const empty = (): KernelSnapshot => ({ rules: new Map(), ports: new Uint32Array(PS.PS_PORT_TABLE_SIZE), portStride: 1, maxSlots: PS.PS_MAX_SLOTS, clientCfg: new Map() });

/** The snapshot the kernel would hold after a plan is applied. */
function applied(before: KernelSnapshot, plan: WritePlan): KernelSnapshot {
  const rules = new Map(before.rules);
  for (const w of plan.rules) rules.set(w.slot, w.rule);
  const ports = before.ports.slice();
  plan.portIndexes.forEach((idx, i) => (ports[idx] = plan.portSlots[i]!));
  for (const slot of plan.release) rules.delete(slot);
  const clientCfg = new Map(before.clientCfg);
  for (const { slot, cfg } of plan.clientCfg) clientCfg.set(slot, cfg);
  for (const slot of plan.clientCfgRemove) clientCfg.delete(slot);
  return { rules, ports, portStride: 1, maxSlots: before.maxSlots, clientCfg };
}

const web: TestRule = { name: 'web', port: 80, protocol: 'tcp', direction: 'ingress', rateBps: 10_000_000, burstNs: 1e8 };
const dns: TestRule = { name: 'dns', port: 53, protocol: 'udp', direction: 'both', rateBps: 1_000_000, burstNs: 1e8 };
const IN = PS.PS_DIR_INGRESS;
const EG = PS.PS_DIR_EGRESS;

describe('reconcile', () => {
  it('gives new buckets the lowest free slots and points their ports at them', () => {
    const plan = reconcile(desiredFrom([web, dns]), empty());
    // Slots in the order of the desired buckets: web/ingress, dns/ingress, dns/egress.
    expect(Object.fromEntries(plan.slots)).toEqual({ 'web/ingress': 1, 'dns/ingress': 2, 'dns/egress': 3 });
    expect(plan.rules.every((w) => w.fresh)).toBe(true);
    // Port writes in table order: (ingress, tcp, 80), (ingress, udp, 53), (egress, udp, 53).
    expect([...plan.portIndexes]).toEqual([
      portIndex(0, IN, PS.PS_PROTO_TCP, PS.PS_SIDE_LOCAL, 80),
      portIndex(0, IN, PS.PS_PROTO_UDP, PS.PS_SIDE_LOCAL, 53),
      portIndex(0, EG, PS.PS_PROTO_UDP, PS.PS_SIDE_LOCAL, 53),
    ]);
    expect([...plan.portSlots]).toEqual([1, 2, 3]);
    expect(plan.release).toEqual([]);
  });

  it('changes nothing when the kernel already holds the desired state', () => {
    const desired = desiredFrom([web, dns]);
    const after = applied(empty(), reconcile(desired, empty()));
    expect(isNoop(reconcile(desired, after))).toBe(true);
  });

  it('rewrites only the rule of a changed rate, in place, keeping its slot', () => {
    const after = applied(empty(), reconcile(desiredFrom([web, dns]), empty()));
    const plan = reconcile(desiredFrom([{ ...web, rateBps: 5_000_000 }, dns]), after);
    expect(plan.rules).toEqual([{ slot: 1, fresh: false, rule: expect.objectContaining({ rate_bps: 5_000_000n }) }]);
    expect(plan.portIndexes.length).toBe(0);
  });

  it('adopts slots by key hash, whatever order rules come in (agent restart)', () => {
    const after = applied(empty(), reconcile(desiredFrom([web, dns]), empty()));
    const plan = reconcile(desiredFrom([dns, web]), after);
    expect(isNoop(plan)).toBe(true);
    expect(plan.slots.get('web/ingress')).toBe(1);
  });

  it('releases a removed rule after clearing its ports, and never reuses its slot in the same plan', () => {
    const after = applied(empty(), reconcile(desiredFrom([web, dns]), empty()));
    const plan = reconcile(desiredFrom([dns, { ...web, name: 'web2', port: 81 }]), after);
    expect(plan.release).toEqual([1]);
    expect(plan.slots.get('web2/ingress')).toBe(4);
    const cleared = plan.portIndexes.indexOf(portIndex(0, IN, PS.PS_PROTO_TCP, PS.PS_SIDE_LOCAL, 80));
    expect(plan.portSlots[cleared]).toBe(0);
  });

  it('maps every port of a per-port range to its own bucket, and of a shared range to one', () => {
    const plan = reconcile(
      desiredFrom([
        { name: 'pp', port: [1000, 1002], protocol: 'tcp', direction: 'egress', rateBps: 1e6, burstNs: 1e8, perPort: true },
        { name: 'sh', port: [2000, 2002], protocol: 'tcp', direction: 'egress', rateBps: 1e6, burstNs: 1e8 },
      ]),
      empty(),
    );
    const slotAt = (port: number) => plan.portSlots[plan.portIndexes.indexOf(portIndex(0, EG, PS.PS_PROTO_TCP, PS.PS_SIDE_LOCAL, port))];
    expect(new Set([1000, 1001, 1002].map(slotAt)).size).toBe(3);
    expect(new Set([2000, 2001, 2002].map(slotAt)).size).toBe(1);
  });

  it('plans every port of every protocol and direction at once (65,536 per-port buckets)', () => {
    const plan = reconcile(
      desiredFrom([{ name: 'all', port: [0, 65535], protocol: 'tcp', direction: 'ingress', rateBps: 1e6, burstNs: 1e8, perPort: true }]),
      empty(),
    );
    expect(plan.slots.size).toBe(65536);
    expect(plan.portIndexes.length).toBe(65536);
  });

  it('refuses a plan that needs more buckets than the map holds', () => {
    const small = { ...empty(), maxSlots: 3 };
    expect(() => reconcile(desiredFrom([web, dns]), small)).toThrow(CapacityError);
  });

  it('hashes bucket keys to distinct 64-bit values', () => {
    const keys = Array.from({ length: 200_000 }, (_, i) => `r${i}/ingress/${i % 65536}`);
    expect(new Set(keys.map(bucketKeyHash)).size).toBe(keys.length);
  });
});

describe('reconcile: HTB classes of shaped buckets', () => {
  const shaped = (name: string, port: number): TestRule => ({ name, port, protocol: 'tcp', direction: 'egress', rateBps: 1e8, burstNs: 1e7, mode: 'shape', horizonNs: 5e7 });
  const classOf = (plan: WritePlan, key: string) => plan.rules.find((w) => w.slot === plan.slots.get(key))?.rule.classid;

  it('gives each shaped bucket the lowest free class minor, carried in its rule as 5053:minor', () => {
    const plan = reconcile(desiredFrom([shaped('a', 1), web, shaped('b', 2)]), empty());
    expect(Object.fromEntries(plan.classes)).toEqual({ 'a/egress': 1, 'b/egress': 2 });
    expect(classOf(plan, 'a/egress')).toBe(0x5053_0001);
    expect(classOf(plan, 'web/ingress'), 'a policed bucket names no class').toBe(0);
  });

  it('keeps a class across reconciles and restarts (read back from ps_rule), and reuses a freed minor', () => {
    const first = reconcile(desiredFrom([shaped('a', 1), shaped('b', 2), shaped('c', 3)]), empty());
    const kernel = applied(empty(), first);
    // b goes, d comes: a and c keep 1 and 3, d takes the freed 2; nothing of a or c is rewritten.
    const second = reconcile(desiredFrom([shaped('a', 1), shaped('c', 3), shaped('d', 4)]), kernel);
    expect(Object.fromEntries(second.classes)).toEqual({ 'a/egress': 1, 'c/egress': 3, 'd/egress': 2 });
    expect(second.rules.map((w) => w.slot)).toEqual([second.slots.get('d/egress')]);
  });

  it('drops the class of a bucket that stops shaping, and skips minor 0x5053 (its leaf would take the root handle 5053:)', () => {
    const kernel = applied(empty(), reconcile(desiredFrom([shaped('a', 1)]), empty()));
    const police = reconcile(desiredFrom([{ ...shaped('a', 1), mode: 'police' }]), kernel);
    expect(police.classes.size).toBe(0);
    expect(classOf(police, 'a/egress')).toBe(0);

    const many = Array.from({ length: 0x5054 }, (_, i) => shaped(`s${i}`, i + 1));
    const minors = [...reconcile(desiredFrom(many), empty()).classes.values()];
    expect(minors).not.toContain(0x5053);
    expect(Math.max(...minors), `${0x5054} classes end at 0x5055`).toBe(0x5055);
  });
});

describe('reconcileFrom (incremental, against the mirror of the previous plan)', () => {
  /** A deterministic pseudo-random sequence (mulberry32), so a failure replays. */
  function random(seed: number): () => number {
    let a = seed;
    return () => {
      a = (a + 0x6d2b79f5) | 0;
      let t = Math.imul(a ^ (a >>> 15), 1 | a);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** A random policy of up to 12 rules over a few ports, so changes collide with what is there. */
  function randomRules(next: () => number): TestRule[] {
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
    const rules: TestRule[] = [];
    const taken = new Set<string>();
    const count = Math.floor(next() * 12);
    for (let i = 0; i < count; i++) {
      const from = 1 + Math.floor(next() * 40);
      const range = next() < 0.3;
      const [lo, hi] = [from, range ? from + Math.floor(next() * 4) : from];
      const port: TestRule['port'] = range ? [lo, hi] : lo;
      const protocol = pick(['tcp', 'udp'] as const);
      const direction = pick(['ingress', 'egress'] as const);
      const claims = Array.from({ length: hi - lo + 1 }, (_, k) => `${protocol}/${direction}/${lo + k}`);
      if (claims.some((c) => taken.has(c))) continue;
      claims.forEach((c) => taken.add(c));
      rules.push({
        name: `r${Math.floor(next() * 16)}-${i}`,
        port,
        protocol,
        direction,
        rateBps: pick([1e6, 2e6, 10e6]),
        burstNs: 1e8,
        mode: pick(['police', 'monitor', 'shape'] as const),
        perPort: range && next() < 0.5,
        ...(next() < 0.3 ? { pktCostNs: pick([1e6, 2e6]), pktBurstNs: 1e8 } : {}),
        ...(next() < 0.3 ? { client: { ...CLIENT, rateBps: pick([1e6, 2e6]) } } : {}),
      });
    }
    return rules;
  }

  const CLIENT = { rateBps: 1e6, burstNs: 1e8, ecnNs: 0, pktCostNs: 0, pktBurstNs: 0, synCostNs: 0, synBurstNs: 0, ipv6Prefix: 64 };

  it('computes the same plan as reconcile() against a snapshot, over 150 random changes', () => {
    const next = random(1);
    let kernel = empty();
    let mirror: KernelMirror | undefined;
    for (let step = 0; step < 150; step++) {
      const desired = desiredFrom(randomRules(next));
      const full = reconcile(desired, kernel);
      if (mirror === undefined) {
        mirror = mirrorOf(desired, full, kernel.maxSlots);
      } else {
        const { plan, next: after } = reconcileFrom(mirror, desired);
        expect(plan.slots, `step ${step}: slots`).toEqual(full.slots);
        expect(plan.classes, `step ${step}: classes`).toEqual(full.classes);
        expect(plan.rules, `step ${step}: rule writes`).toEqual(full.rules);
        expect(plan.release, `step ${step}: released slots`).toEqual(full.release);
        expect([...plan.portIndexes], `step ${step}: port indexes`).toEqual([...full.portIndexes]);
        expect([...plan.portSlots], `step ${step}: port slots`).toEqual([...full.portSlots]);
        expect(plan.clientCfg, `step ${step}: per-client limits`).toEqual(full.clientCfg);
        expect(plan.clientCfgRemove, `step ${step}: per-client limits removed`).toEqual(full.clientCfgRemove);
        mirror = after;
      }
      kernel = applied(kernel, full);
    }
  });

  it('gives the same plan when only bucket values change and the port ranges are the same array (a replanned change of limits)', () => {
    const next = random(2);
    let kernel = empty();
    let desired = desiredFrom(randomRules(next));
    let mirror = mirrorOf(desired, reconcile(desired, kernel), kernel.maxSlots);
    kernel = applied(kernel, reconcile(desired, kernel));
    for (let step = 0; step < 200; step++) {
      // Every tenth step a new rule set (the general diff); otherwise some buckets' values change in place.
      const changed =
        step % 10 === 9
          ? desiredFrom(randomRules(next))
          : {
              ...desired,
              buckets: desired.buckets.map((b) => {
                if (next() > 0.3) return b;
                const client = next() < 0.5 ? undefined : { ...CLIENT, rateBps: next() < 0.5 ? 1e6 : 3e6 };
                return { ...b, rateBps: next() < 0.5 ? 5e6 : 7e6, pktCostNs: next() < 0.5 ? 0 : 3e6, ...(client ? { client } : { client: undefined }) };
              }),
            };
      const full = reconcile(changed, kernel);
      const { plan, next: after } = reconcileFrom(mirror, changed);
      expect(plan.rules, `step ${step}: rule writes`).toEqual(full.rules);
      expect([...plan.portIndexes], `step ${step}: port indexes`).toEqual([...full.portIndexes]);
      expect(plan.release, `step ${step}: released slots`).toEqual(full.release);
      expect(plan.slots, `step ${step}: slots`).toEqual(full.slots);
      expect(plan.classes, `step ${step}: classes`).toEqual(full.classes);
      expect(plan.clientCfg, `step ${step}: per-client limits`).toEqual(full.clientCfg);
      expect(plan.clientCfgRemove, `step ${step}: per-client limits removed`).toEqual(full.clientCfgRemove);
      kernel = applied(kernel, full);
      mirror = after;
      desired = changed;
    }
  });

  it('changes only the changed rule among 65,536, without building the port table', () => {
    const rules: TestRule[] = Array.from({ length: 65_536 }, (_, i) => ({
      name: `r${i}`,
      port: (i % 65_535) + 1,
      protocol: i < 65_535 ? 'tcp' : 'udp',
      direction: 'egress',
      rateBps: 100e6,
      burstNs: 3e8,
      mode: 'police',
    }));
    const desired = desiredFrom(rules);
    const mirror = mirrorOf(desired, reconcile(desired, empty()), PS.PS_MAX_SLOTS);
    rules[7] = { ...rules[7]!, rateBps: 20e6 };
    const { plan } = reconcileFrom(mirror, desiredFrom(rules));
    expect(plan.rules).toEqual([{ slot: 8, fresh: false, rule: expect.objectContaining({ rate_bps: 20_000_000n }) }]);
    expect(plan.portIndexes.length + plan.release.length).toBe(0);
  });
});
