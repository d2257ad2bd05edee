/**
 * Token-bucket arithmetic in the real program, over simulated time: the
 * object is loaded with its test clock on (.rodata ps_test_clock = 1) and
 * each test sets ps_test_now between BPF_PROG_TEST_RUN calls, so results are
 * exact rather than subject to scheduling.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyDesired } from '../../src/kernel/apply.js';
import { readBucket, readCounters } from '../../src/kernel/counters.js';
import { describeKernel } from '../helpers/env.js';
import { desiredFrom, openTestDataPlane, type TestRule } from '../helpers/dataplane.js';
import { buildFrame, skbContext } from '../helpers/frames.js';

const PASS = -1;
const DROP = 2;
const NS = 1_000_000_000;
const LO = 1;

/** A UDP/IPv4 frame of exactly `size` bytes to `port`. */
function frameOf(size: number, port: number): Buffer {
  return buildFrame({ ip: 4, l4: 'udp', dport: port, payload: size - 42 });
}

describeKernel('token bucket over simulated time', () => {
  let t: ReturnType<typeof openTestDataPlane>;
  let now = 10n * BigInt(NS);
  let rules: TestRule[] = [];
  const slots = new Map<string, number>();

  const ctx = skbContext({ ifindex: LO });
  const send = (frame: Buffer, c: Buffer = ctx) => t.dp.testRun('ingress', frame, c).retval;
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
    expect(bucket('idle').credit_ns).toBeGreaterThanOrEqual(0n);
    expect(bucket('idle').credit_ns).toBeLessThan(1000n);
  });

  it('never refills backwards when another CPU stored a later time', () => {
    install({ name: 'back', port: 4004, direction: 'ingress', rateBps: rate, burstNs: 2 * ms });
    const frame = frameOf(1000, 4004);
    expect([send(frame), send(frame), send(frame)]).toEqual([PASS, PASS, DROP]);
    const last = bucket('back').last_ns;
    advance(-5 * ms);
    expect(send(frame)).toBe(DROP);
    expect(bucket('back').last_ns).toBe(last);
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
    expect(bucket('gso').credit_ns).toBe(BigInt(2 * ms - wire * 1000)); // in debt by cost - burst
    expect(send(frame, gso)).toBe(DROP);
    // It passes again once the bucket is full again: exactly its cost later.
    advance(wire * 1000 - 1);
    expect(send(frame, gso)).toBe(DROP);
    advance(1);
    expect(send(frame, gso)).toBe(PASS);
  });

  it('changes rate and burst in place: same slot, credit and counters kept', () => {
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
    // 6 ms of credit left; at half the rate a 1000-byte frame costs 2 ms.
    expect([send(frame), send(frame), send(frame), send(frame)]).toEqual([PASS, PASS, PASS, DROP]);
  });

  it('monitor mode drops nothing but counts what it would have dropped', () => {
    install({ name: 'mon', port: 4007, direction: 'ingress', rateBps: rate, burstNs: 3 * ms, mode: 'monitor' });
    const frame = frameOf(1000, 4007);
    expect(Array.from({ length: 5 }, () => send(frame))).toEqual(Array(5).fill(PASS));
    expect(counters('mon')).toMatchObject({ pass_pkts: 5n, over_pkts: 2n, drop_pkts: 0n, over_bytes: 2000n });
  });

  it('an unlimited rule (rate 0) counts and never drops', () => {
    install({ name: 'free', port: 4008, direction: 'ingress', rateBps: 0, burstNs: 0 });
    const frame = frameOf(1000, 4008);
    expect(Array.from({ length: 50 }, () => send(frame))).toEqual(Array(50).fill(PASS));
    expect(counters('free')).toMatchObject({ pass_pkts: 50n, drop_pkts: 0n });
  });
});
