/**
 * Packet-rate, connection-rate and per-client limits in the real program,
 * over simulated time (BPF_PROG_TEST_RUN with the object's test clock): every
 * limit that applies must admit a packet, a refused packet charges none of
 * them, each client (IPv4 address, IPv6 prefix) has buckets of its own, and
 * a full client table forgets the least recently seen client.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyDesired } from '../../src/kernel/apply.js';
import { readBucket, readClients, readCounters } from '../../src/kernel/counters.js';
import { DataPlane } from '../../src/kernel/dataplane.js';
import { removePins } from '../../src/kernel/pins.js';
import type { DesiredClientLimit } from '../../src/kernel/desired.js';
import { describeKernel } from '../helpers/env.js';
import { desiredFrom, openTestDataPlane, type TestRule } from '../helpers/dataplane.js';
import { buildFrame, skbContext } from '../helpers/frames.js';

const PASS = -1;
const DROP = 2;
const MS = 1_000_000;
const LO = 1;
/** 8 Mbit/s: a 1000-byte frame costs exactly 1 ms. */
const RATE = 8_000_000;

const noClientEvents = { pktCostNs: 0, pktBurstNs: 0, synCostNs: 0, synBurstNs: 0, ecnNs: 0, ipv6Prefix: 64 };
const clientLimit = (c: Partial<DesiredClientLimit>): DesiredClientLimit => ({ rateBps: 0, burstNs: 0, ...noClientEvents, ...c });

describeKernel('packet, connection and per-client limits over simulated time', () => {
  let t: ReturnType<typeof openTestDataPlane>;
  let now = 10_000n * BigInt(MS);
  let rules: TestRule[] = [];
  const slots = new Map<string, number>();
  const ctx = skbContext({ ifindex: LO });

  const udp = (port: number, src: number | Buffer = 1, ip: 4 | 6 = 4) => buildFrame({ ip, l4: 'udp', dport: port, src, payload: 1000 - (ip === 4 ? 42 : 62) });
  const tcp = (port: number, flags: number) => buildFrame({ ip: 4, l4: 'tcp', dport: port, tcpFlags: flags, payload: 1000 - 54 });
  const send = (frame: Buffer) => t.dp.testRun('ingress', frame, ctx).retval;
  const burst = (frame: Buffer, n: number) => Array.from({ length: n }, () => send(frame));
  const advance = (ns: number) => {
    now += BigInt(ns);
    t.dp.setTestNow(now);
  };
  const install = (...add: TestRule[]) => {
    rules = [...rules.filter((r) => !add.some((a) => a.name === r.name)), ...add];
    for (const [k, v] of applyDesired(t.dp, desiredFrom(rules)).slots) slots.set(k, v);
  };
  const slot = (name: string) => slots.get(`${name}/ingress`)!;
  const counters = (name: string) => readCounters(t.dp, [slot(name)]).get(slot(name))!;

  beforeAll(() => {
    t = openTestDataPlane('clients', { testClock: true });
    t.dp.setInterface(LO, 0);
    t.dp.setTestNow(now);
  });
  afterAll(() => t?.dispose());

  it('holds a packet rate: burst packets, then one per cost', () => {
    install({ name: 'pps', port: 5001, protocol: 'udp', direction: 'ingress', rateBps: 0, burstNs: 0, pktCostNs: MS, pktBurstNs: 5 * MS });
    expect(burst(udp(5001), 7)).toEqual([...Array(5).fill(PASS), DROP, DROP]);
    advance(MS);
    expect(burst(udp(5001), 2)).toEqual([PASS, DROP]);
  });

  it('needs bit rate and packet rate to admit; a packet one refuses charges neither', () => {
    install({ name: 'both', port: 5002, protocol: 'udp', direction: 'ingress', rateBps: RATE, burstNs: 10 * MS, pktCostNs: MS, pktBurstNs: 3 * MS });
    expect(burst(udp(5002), 5)).toEqual([PASS, PASS, PASS, DROP, DROP]);
    const b = readBucket(t.dp, slot('both'))!;
    expect(b.tat_ns - now, 'bytes charged for the 3 admitted packets only').toBe(3n * BigInt(MS));
    expect(b.pkt_tat_ns - now).toBe(3n * BigInt(MS));
  });

  it('limits new connections (SYN without ACK) and counts the refused ones; other segments pass', () => {
    install({ name: 'syn', port: 5003, protocol: 'tcp', direction: 'ingress', rateBps: 0, burstNs: 0, synCostNs: 100 * MS, synBurstNs: 200 * MS });
    const SYN = 0x02;
    const ACK = 0x10;
    expect(burst(tcp(5003, SYN), 4)).toEqual([PASS, PASS, DROP, DROP]);
    expect(burst(tcp(5003, ACK), 20), 'established traffic is not a new connection').toEqual(Array(20).fill(PASS));
    expect(burst(tcp(5003, SYN | ACK), 3), 'a SYN-ACK is not a new connection either').toEqual(Array(3).fill(PASS));
    expect(counters('syn')).toMatchObject({ syn_drops: 2n, drop_pkts: 2n });
    advance(100 * MS);
    expect(burst(tcp(5003, SYN), 2)).toEqual([PASS, DROP]);
  });

  it('gives each client its own bucket; another client is unaffected', () => {
    install({ name: 'pc', port: 5004, protocol: 'udp', direction: 'ingress', rateBps: 0, burstNs: 0, client: clientLimit({ rateBps: RATE, burstNs: 3 * MS }) });
    expect(burst(udp(5004, 10), 5), 'client .10').toEqual([PASS, PASS, PASS, DROP, DROP]);
    expect(burst(udp(5004, 11), 3), 'client .11 has its own full bucket').toEqual([PASS, PASS, PASS]);
    const mine = readClients(t.dp, new Set([slot('pc')]));
    const by = Object.fromEntries(mine.map((c) => [c.address, c.state]));
    expect(Object.keys(by).sort()).toEqual(['198.18.0.10', '198.18.0.11']);
    expect(by['198.18.0.10']).toMatchObject({ pass_pkts: 3n, drop_pkts: 2n, pass_bytes: 3000n });
    expect(counters('pc').new_clients).toBe(2n);
  });

  it('with an aggregate too, both must admit: a client refused by the aggregate keeps its own credit', () => {
    install({ name: 'agg', port: 5005, protocol: 'udp', direction: 'ingress', rateBps: RATE, burstNs: 4 * MS, client: clientLimit({ rateBps: RATE, burstNs: 3 * MS }) });
    expect(burst(udp(5005, 20), 4), 'client .20: its own 3 ms').toEqual([PASS, PASS, PASS, DROP]);
    expect(burst(udp(5005, 21), 3), 'client .21: the aggregate has 1 ms left').toEqual([PASS, DROP, DROP]);
    const c21 = readClients(t.dp, new Set([slot('agg')])).find((c) => c.address === '198.18.0.21')!;
    expect(c21.state.tat_ns - now, 'charged for its one admitted packet only').toBe(BigInt(MS));
  });

  it('keeps per-client state across an agent restart (pins adopted, not reset)', () => {
    const before = readClients(t.dp, new Set([slot('pc')]));
    t.dp.close();
    const again = DataPlane.open({ pinDir: t.pinDir, testClock: true, clientTable: 4096 });
    t = { ...t, dp: again, dispose: () => (again.close(), removePins(t.pinDir)) };
    expect(again.adopted).toBe(true);
    expect(again.clientTable, 'the pinned table keeps its size whatever the policy says').toBe(65536);
    t.dp.setTestNow(now);
    expect(readClients(t.dp, new Set([slot('pc')])).map((c) => [c.address, c.state.tat_ns])).toEqual(before.map((c) => [c.address, c.state.tat_ns]));
    expect(send(udp(5004, 10)), 'client .10 is still out of credit').toBe(DROP);
  });

  it('treats an IPv6 /64 as one client by default', () => {
    install({ name: 'v6', port: 5006, protocol: 'udp', direction: 'ingress', rateBps: 0, burstNs: 0, client: clientLimit({ rateBps: RATE, burstNs: 2 * MS }) });
    const addr = (net: number, host: number) => {
      const a = Buffer.alloc(16);
      a.writeUInt16BE(0xfd00, 0);
      a.writeUInt16BE(net, 6);
      a.writeUInt16BE(host, 14);
      return a;
    };
    expect(burst(udp(5006, addr(1, 1), 6), 2)).toEqual([PASS, PASS]);
    expect(send(udp(5006, addr(1, 2), 6)), 'another host of the same /64 shares its bucket').toBe(DROP);
    expect(send(udp(5006, addr(2, 1), 6)), 'another /64 is another client').toBe(PASS);
    const seen = readClients(t.dp, new Set([slot('v6')])).map((c) => c.address).sort();
    expect(seen).toEqual(['fd00:0:0:1::', 'fd00:0:0:2::']);
  });
});

describeKernel('a full client table', () => {
  let t: ReturnType<typeof openTestDataPlane>;
  const ctx = skbContext({ ifindex: LO });
  beforeAll(() => {
    t = openTestDataPlane('clientlru', { testClock: true, clientTable: 1024 });
    t.dp.setInterface(LO, 0);
    t.dp.setTestNow(10_000n * BigInt(MS));
  });
  afterAll(() => t?.dispose());

  it('forgets the least recently seen clients, counts them, and a returning client starts with a full bucket', () => {
    const { slots } = applyDesired(
      t.dp,
      desiredFrom([{ name: 'lru', port: 6000, protocol: 'udp', direction: 'ingress', rateBps: 0, burstNs: 0, client: clientLimit({ rateBps: RATE, burstNs: 1 * MS }) }]),
    );
    const slot = slots.get('lru/ingress')!;
    // 4096 clients (IPv6 /64s, so the key space is large) into 1024 entries; each spends its whole bucket.
    const frame = (n: number) => {
      const a = Buffer.alloc(16);
      a.writeUInt16BE(0xfd00, 0);
      a.writeUInt16BE(n, 6);
      return buildFrame({ ip: 6, l4: 'udp', dport: 6000, src: a, payload: 1000 - 62 });
    };
    for (let n = 1; n <= 4096; n++) expect(t.dp.testRun('ingress', frame(n), ctx).retval).toBe(PASS);
    expect(t.dp.testRun('ingress', frame(4096), ctx).retval, 'the last client is remembered: empty bucket').toBe(DROP);
    const live = readClients(t.dp, new Set([slot])).length;
    const added = readCounters(t.dp, [slot]).get(slot)!.new_clients;
    console.info(`client table of 1024: ${added} clients added, ${live} alive, ${Number(added) - live} evicted`);
    expect(live).toBeLessThanOrEqual(1024);
    expect(added).toBe(4096n);
    // The kernel's LRU is approximate (per-CPU free lists; the test process may move between CPUs), so
    // judge the oldest clients as a group: most were forgotten and start again with a full bucket.
    const returning = Array.from({ length: 100 }, (_, i) => t.dp.testRun('ingress', frame(i + 1), ctx).retval);
    const forgotten = returning.filter((r) => r === PASS).length;
    expect(forgotten, 'the oldest clients were forgotten: full bucket again').toBeGreaterThan(50);
    expect(readCounters(t.dp, [slot]).get(slot)!.new_clients, 'and counted as added again').toBe(4096n + BigInt(forgotten));
  });
});
