/**
 * Bucket arithmetic (GCRA, one CAS-advanced clock) in the real program, over simulated time: the
 * object is loaded with its test clock on (.rodata ps_test_clock = 1) and
 * each test sets ps_test_now between BPF_PROG_TEST_RUN calls, so results are
 * exact rather than subject to scheduling.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyDesired } from '../../src/kernel/apply.js';
import { readBucket, readCounters } from '../../src/kernel/counters.js';
import { psRule } from '../../src/kernel/layout.js';
import { describeKernel } from '../helpers/env.js';
import { desiredFrom, openTestDataPlane, type TestRule } from '../helpers/dataplane.js';
import { buildFrame, skbContext } from '../helpers/frames.js';

const PASS = -1;
const DROP = 2;
const NS = 1_000_000_000;
const LO = 1;

/** A UDP/IPv4 frame of exactly `size` bytes to `port` (ecn: the IP header's ECN field). */
function frameOf(size: number, port: number, ecn = 0): Buffer {
  return buildFrame({ ip: 4, l4: 'udp', dport: port, payload: size - 42, ecn });
}
const ECT0 = 2;
const CE = 3;

describeKernel('token bucket over simulated time', () => {
  let t: ReturnType<typeof openTestDataPlane>;
  let now = 10n * BigInt(NS);
  let rules: TestRule[] = [];
  const slots = new Map<string, number>();

  const ctx = skbContext({ ifindex: LO });
  const send = (frame: Buffer, c: Buffer = ctx) => t.dp.testRun('ingress', frame, c).retval;
  /** Verdict, ECN field of the frame after the run, and skb->priority (offset 32 of __sk_buff). */
  const judge = (frame: Buffer, dir: 'ingress' | 'egress' = 'ingress') => {
    const r = t.dp.testRun(dir, frame, ctx);
    return { verdict: r.retval, ecn: r.frameOut[15]! & 3, priority: r.ctxOut!.readUInt32LE(32) };
  };
  /** Work admitted and not yet drained, in ns (burst − credit). */
  const ahead = (name: string, dir = 'ingress') => {
    const tat = readBucket(t.dp, slots.get(`${name}/${dir}`)!)!.tat_ns;
    return tat > now ? tat - now : 0n;
  };
  const advance = (ns: number | bigint) => {
    now += BigInt(ns);
    t.dp.setTestNow(now);
  };
  const install = (...add: TestRule[]) => {
    rules = [...rules.filter((r) => !add.some((a) => a.name === r.name)), ...add];
    for (const [k, v] of applyDesired(t.dp, desiredFrom(rules)).slots) slots.set(k, v);
  };
  const counters = (name: string) => {
    const slot = slots.get(`${name}/ingress`)!;
    return readCounters(t.dp, [slot]).get(slot)!;
  };
  const bucket = (name: string) => readBucket(t.dp, slots.get(`${name}/ingress`)!)!;

  beforeAll(() => {
    t = openTestDataPlane('bucket', { testClock: true });
    t.dp.setInterface(LO, 0);
    t.dp.setTestNow(now);
  });
  afterAll(() => t?.dispose());

  // 8 Mbit/s = 1e6 bytes/s: a 1000-byte frame costs exactly 1 ms.
  const rate = 8_000_000;
  const ms = 1_000_000;

  it('starts with exactly `burst` credit: 10 ms of burst passes ten 1 ms packets', () => {
    install({ name: 'start', port: 4001, direction: 'ingress', rateBps: rate, burstNs: 10 * ms });
    const frame = frameOf(1000, 4001);
    const verdicts = Array.from({ length: 12 }, () => send(frame));
    expect(verdicts).toEqual([...Array(10).fill(PASS), DROP, DROP]);
    advance(5 * ms);
    expect(Array.from({ length: 6 }, () => send(frame))).toEqual([...Array(5).fill(PASS), DROP]);
  });

  it('drops exactly what exceeds rate × time + burst (2× offered load for 1 s)', () => {
    install({ name: 'exact', port: 4002, direction: 'ingress', rateBps: rate, burstNs: 10 * ms });
    const frame = frameOf(1000, 4002);
    const before = counters('exact');
    // 2000 packets of 1 ms cost, one every 0.5 ms: 2x the rate for one second.
    for (let i = 0; i < 2000; i++) {
      send(frame);
      advance(ms / 2);
    }
    const after = counters('exact');
    const passed = after.pass_pkts - before.pass_pkts;
    // Credit at the start = burst (10 packets); refill over the 0.9995 s
    // between the first and the last packet = 999.5 packets.
    expect(passed).toBe(1009n);
    expect(after.drop_pkts - before.drop_pkts).toBe(2000n - passed);
    expect(after.pass_bytes - before.pass_bytes).toBe(passed * 1000n);
  });

  it('is overflow-safe after a long idle: a year at 10 Gbit/s refills to the burst, not beyond', () => {
    const burstNs = 1 * ms; // 1.25 MB at 10 Gbit/s
    install({ name: 'idle', port: 4003, direction: 'ingress', rateBps: 10_000_000_000, burstNs });
    const frame = frameOf(1250, 4003); // 1 µs at 10 Gbit/s
    send(frame);
    advance(365n * 24n * 3600n * BigInt(NS));
    let passed = 0;
    while (send(frame) === PASS && passed < 5000) passed++;
    expect(passed).toBe(1000); // exactly one burst: 1 ms / 1 µs
    // Credit left (burst − ahead) is under one packet's cost.
    expect(ahead('idle')).toBeLessThanOrEqual(BigInt(burstNs));
    expect(ahead('idle')).toBeGreaterThan(BigInt(burstNs - 1000));
  });

  it('never refills backwards when another CPU stored a later time', () => {
    install({ name: 'back', port: 4004, direction: 'ingress', rateBps: rate, burstNs: 2 * ms });
    const frame = frameOf(1000, 4004);
    expect([send(frame), send(frame), send(frame)]).toEqual([PASS, PASS, DROP]);
    const tat = bucket('back').tat_ns;
    advance(-5 * ms);
    expect(send(frame), 'a clock 5 ms behind finds the bucket as empty as it was').toBe(DROP);
    expect(bucket('back').tat_ns, 'a drop writes nothing').toBe(tat);
    advance(5 * ms + ms);
    expect(send(frame)).toBe(PASS);
  });

  it('passes a GSO super-packet costlier than the burst when the bucket is full, and charges every segment', () => {
    install({ name: 'gso', port: 4005, direction: 'ingress', rateBps: rate, burstNs: 2 * ms }); // 2000-byte burst
    const frame = frameOf(1500, 4005);
    // 45 segments: 44 more sets of Ethernet + IPv4 + UDP headers (42 bytes) on the wire.
    const gso = skbContext({ ifindex: LO, gsoSegs: 45, gsoSize: 1458 });
    const wire = 1500 + 44 * 42;
    const before = counters('gso');
    expect(send(frame, gso)).toBe(PASS);
    expect(counters('gso').pass_bytes - before.pass_bytes).toBe(BigInt(wire));
    expect(ahead('gso')).toBe(BigInt(wire * 1000)); // in debt by cost - burst: its whole cost is ahead
    expect(send(frame, gso)).toBe(DROP);
    // It passes again once the bucket is full again: exactly its cost later.
    advance(wire * 1000 - 1);
    expect(send(frame, gso)).toBe(DROP);
    advance(1);
    expect(send(frame, gso)).toBe(PASS);
  });

  it('changes rate and burst in place: same slot, bucket clock and counters kept', () => {
    install({ name: 'change', port: 4006, direction: 'ingress', rateBps: rate, burstNs: 10 * ms });
    const frame = frameOf(1000, 4006);
    for (let i = 0; i < 4; i++) send(frame);
    const slot = slots.get('change/ingress');
    const stateBefore = bucket('change');
    const countersBefore = counters('change');
    install({ name: 'change', port: 4006, direction: 'ingress', rateBps: rate / 2, burstNs: 20 * ms });
    expect(slots.get('change/ingress')).toBe(slot);
    expect(bucket('change')).toEqual(stateBefore);
    expect(counters('change')).toEqual(countersBefore);
    // The 4 ms of admitted work stay ahead (time, so rate-independent); the
    // credit is the new burst minus them: 16 ms, and at half the rate a
    // 1000-byte frame costs 2 ms.
    expect(Array.from({ length: 9 }, () => send(frame))).toEqual([...Array(8).fill(PASS), DROP]);
  });

  it('monitor mode drops nothing but counts what it would have dropped', () => {
    install({ name: 'mon', port: 4007, direction: 'ingress', rateBps: rate, burstNs: 3 * ms, mode: 'monitor' });
    const frame = frameOf(1000, 4007);
    expect(Array.from({ length: 5 }, () => send(frame))).toEqual(Array(5).fill(PASS));
    expect(counters('mon')).toMatchObject({ pass_pkts: 5n, over_pkts: 2n, drop_pkts: 0n, over_bytes: 2000n });
  });

  it('police with an ECN band: ECT packets past the burst are marked CE and pass, others drop; drops write nothing', () => {
    install({ name: 'band', port: 4009, direction: 'ingress', rateBps: rate, burstNs: 2 * ms, ecnNs: 3 * ms });
    const ect = frameOf(1000, 4009, ECT0);
    const plain = frameOf(1000, 4009);
    expect([judge(ect), judge(ect)].map((r) => r.ecn), 'within the burst: passed unmarked').toEqual([ECT0, ECT0]);
    const tat = bucket('band').tat_ns;
    expect(send(plain), 'not ECN-capable, past the burst: dropped').toBe(DROP);
    expect(bucket('band').tat_ns, 'the drop left the bucket as it was').toBe(tat);
    const marked = [judge(ect), judge(ect), judge(ect)];
    expect(marked.map((r) => [r.verdict, r.ecn]), '3 ms band: three 1 ms packets marked').toEqual([
      [PASS, CE],
      [PASS, CE],
      [PASS, CE],
    ]);
    expect(judge(ect).verdict, 'past burst + band: dropped even when ECN-capable').toBe(DROP);
    expect(counters('band')).toMatchObject({ pass_pkts: 5n, mark_pkts: 3n, mark_bytes: 3000n, drop_pkts: 2n });
  });

  it('shape: sets the class as skb->priority, queues virtually, marks CE past the ECN delay and drops past the horizon', () => {
    install({ name: 'shp', port: 4010, direction: 'egress', rateBps: rate, burstNs: 2 * ms, ecnNs: 3 * ms, horizonNs: 6 * ms, mode: 'shape' });
    // The reconciler gave the bucket class minor 1 (the first shaped bucket here); the rule carries its class id.
    const slot = slots.get('shp/egress')!;
    const classOf = psRule.decode(t.dp.maps.ps_rules.get(slot)!).classid;
    expect(classOf >>> 16, 'class major is portshaper\'s HTB root 5053:').toBe(0x5053);
    // Egress frames carry the port as their source port (side: local).
    const out = (ecn: number) => buildFrame({ ip: 4, l4: 'udp', sport: 4010, dport: 9, payload: 1000 - 42, ecn });
    const seen = Array.from({ length: 12 }, () => judge(out(ECT0), 'egress'));
    // Each 1 ms packet joins the virtual queue: the first 2 ride the burst, the
    // k-th waits k-2 ms; marked past 3 ms of wait, dropped past 6 ms.
    expect(seen.map((r) => r.verdict)).toEqual([...Array(9).fill(PASS), DROP, DROP, DROP]);
    expect(seen.map((r) => r.ecn)).toEqual([...Array(6).fill(ECT0), CE, CE, CE, ECT0, ECT0, ECT0]);
    expect(seen.slice(0, 9).every((r) => r.priority === classOf), 'every admitted packet carries the class id').toBe(true);
    expect(judge(out(0), 'egress').verdict, 'not ECN-capable, past the horizon: dropped too').toBe(DROP);
    // After 3.5 ms the queue has drained to 3.5 ms of wait: admitted again, marked.
    advance(3.5 * ms);
    const later = judge(out(ECT0), 'egress');
    expect([later.verdict, later.ecn]).toEqual([PASS, CE]);
    // A lone packet on an empty queue always goes, even costlier than the horizon.
    advance(1000 * ms);
    const gso = skbContext({ ifindex: LO, gsoSegs: 45, gsoSize: 1458 });
    expect(t.dp.testRun('egress', out(0), gso).retval, '64 KB on an idle shaped bucket').toBe(PASS);
    const c = readCounters(t.dp, [slot]).get(slot)!;
    expect(c).toMatchObject({ pass_pkts: 11n, drop_pkts: 4n, mark_pkts: 4n, drop_bytes: 4000n });
  });

  it('an unlimited rule (rate 0) counts and never drops', () => {
    install({ name: 'free', port: 4008, direction: 'ingress', rateBps: 0, burstNs: 0 });
    const frame = frameOf(1000, 4008);
    expect(Array.from({ length: 50 }, () => send(frame))).toEqual(Array(50).fill(PASS));
    expect(counters('free')).toMatchObject({ pass_pkts: 50n, drop_pkts: 0n });
  });
});
