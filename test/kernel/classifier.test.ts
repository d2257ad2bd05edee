/**
 * The classifier on crafted frames (BPF_PROG_TEST_RUN, the real object in the
 * real kernel): every header shape × direction × port side, and malformed
 * frames that must pass whatever the rules say.
 *
 * Buckets use the test clock frozen in time with a 1 ns burst: a matching
 * rule passes the first packet (full bucket) and drops the second, so one
 * pair of runs proves both the match and the verdict.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyDesired } from '../../src/kernel/apply.js';
import { readCounters, readGlobal, type GlobalCounters } from '../../src/kernel/counters.js';
import type { Direction, Side } from '../../src/kernel/desired.js';
import { describeKernel } from '../helpers/env.js';
import { openTestDataPlane, desiredFrom, type TestRule } from '../helpers/dataplane.js';
import { buildFrame, skbContext, type FrameSpec } from '../helpers/frames.js';

const PASS = -1; // TC_ACT_UNSPEC: let lower-priority filters see the packet
const DROP = 2; // TC_ACT_SHOT
const LO = 1; // BPF_PROG_TEST_RUN runs on the caller's loopback unless told otherwise
const ctx = skbContext({ ifindex: LO });
const tight = { rateBps: 8000, burstNs: 1 };

interface MatrixCase {
  name: string;
  ip: 4 | 6;
  l4: 'tcp' | 'udp';
  direction: Direction;
  side: Side;
  vlan: number[];
  port: number;
}

const cases: MatrixCase[] = [];
for (const ip of [4, 6] as const)
  for (const l4 of ['tcp', 'udp'] as const)
    for (const direction of ['ingress', 'egress'] as const)
      for (const side of ['local', 'remote'] as const)
        for (const vlan of [[], [100], [100, 200]])
          cases.push({
            name: `ipv${ip}/${l4}/${direction}/${side}/vlan${vlan.length}`,
            ip,
            l4,
            direction,
            side,
            vlan,
            port: 1000 + cases.length,
          });

/** The frame whose local or remote port (for that direction) is c.port; the other port has no rule. */
function matrixFrame(c: MatrixCase): Buffer {
  const portIsDst = (c.direction === 'ingress') === (c.side === 'local');
  const other = 50000;
  return buildFrame({
    ip: c.ip,
    l4: c.l4,
    vlan: c.vlan,
    sport: portIsDst ? other : c.port,
    dport: portIsDst ? c.port : other,
  });
}

// Malformed or portless frames aimed at port 80, which has a rule that would
// drop the second packet: they must pass every time, counted by kind.
// BPF_PROG_TEST_RUN itself refuses a frame whose EtherType is IPv4/IPv6 but
// whose L3 header is incomplete (EINVAL), so truncated L3 headers are sent
// behind a VLAN tag: the kernel does not look past it, our parser must.
const NO_DROP: { name: string; spec: FrameSpec; kind: keyof GlobalCounters }[] = [
  { name: 'ARP', spec: { ip: 'arp' }, kind: 'nonIp' },
  { name: 'VLAN tag with nothing after it', spec: { ip: 4, dport: 80, vlan: [7], truncate: 18 }, kind: 'unparsed' },
  { name: 'VLAN tag cut short', spec: { ip: 4, dport: 80, vlan: [7], truncate: 16 }, kind: 'unparsed' },
  { name: 'IPv4 header cut short (behind a VLAN tag)', spec: { ip: 4, dport: 80, vlan: [7], truncate: 28 }, kind: 'unparsed' },
  { name: 'IPv4 with version 6 nibble', spec: { ip: 4, dport: 80, badVersion: true }, kind: 'unparsed' },
  { name: 'IPv4 IHL below 5', spec: { ip: 4, dport: 80, badIhl: true }, kind: 'unparsed' },
  { name: 'TCP header cut short', spec: { ip: 4, l4: 'tcp', dport: 80, truncate: 44 }, kind: 'unparsed' },
  { name: 'UDP header cut short', spec: { ip: 6, l4: 'udp', dport: 80, truncate: 58 }, kind: 'unparsed' },
  { name: 'TCP data offset below 5', spec: { ip: 4, l4: 'tcp', dport: 80, tcpDoff: 4 }, kind: 'unparsed' },
  { name: 'IPv4 non-first fragment', spec: { ip: 4, dport: 80, fragment: 'later' }, kind: 'fragment' },
  { name: 'IPv6 non-first fragment', spec: { ip: 6, dport: 80, ext: ['frag-later'] }, kind: 'fragment' },
  {
    name: 'IPv6 with 7 extension headers (over the walk bound)',
    spec: { ip: 6, dport: 80, ext: ['hop', 'dst', 'routing', 'dst', 'routing', 'dst', 'dst'] },
    kind: 'unparsed',
  },
  { name: 'IPv6 extension header cut short', spec: { ip: 6, dport: 80, ext: ['hop'], truncate: 56 }, kind: 'unparsed' },
  { name: 'IPv6 header cut short (behind a VLAN tag)', spec: { ip: 6, dport: 80, vlan: [7], truncate: 44 }, kind: 'unparsed' },
  { name: 'three VLAN tags', spec: { ip: 4, dport: 80, vlan: [1, 2, 3] }, kind: 'unparsed' },
  { name: 'ICMP (no ports)', spec: { ip: 4, l4: 'icmp' }, kind: 'unmatched' },
  { name: 'UDP to a port without a rule', spec: { ip: 4, dport: 81 }, kind: 'unmatched' },
];

// Shapes that do carry ports and must be matched: each has a port of its own.
const MATCHED: { name: string; spec: FrameSpec; port: number }[] = [
  { name: 'IPv4 with 40 bytes of options', spec: { ip: 4, l4: 'udp', ipv4Options: 40, dport: 2001 }, port: 2001 },
  { name: 'IPv4 first fragment', spec: { ip: 4, l4: 'udp', fragment: 'first', dport: 2002 }, port: 2002 },
  {
    name: 'IPv6 hop-by-hop, destination, routing, AH and first fragment',
    spec: { ip: 6, l4: 'tcp', ext: ['hop', 'dst', 'routing', 'ah', 'frag-first'], dport: 2003 },
    port: 2003,
  },
  { name: 'IPv6 six extension headers (at the walk bound)', spec: { ip: 6, l4: 'udp', ext: ['hop', 'dst', 'routing', 'dst', 'routing', 'dst'], dport: 2004 }, port: 2004 },
  { name: 'TCP with options (data offset 15)', spec: { ip: 4, l4: 'tcp', tcpDoff: 15, dport: 2005 }, port: 2005 },
];

describeKernel('classifier verdicts on crafted frames (BPF_PROG_TEST_RUN)', () => {
  let t: ReturnType<typeof openTestDataPlane>;
  let slots: Map<string, number>;

  beforeAll(() => {
    t = openTestDataPlane('cls', { testClock: true });
    t.dp.setTestNow(1_000_000_000_000n);
    t.dp.setInterface(LO, 0);
    const rules: TestRule[] = [
      ...cases.map((c) => ({ name: c.name.replaceAll('/', '-'), port: c.port, protocol: c.l4, direction: c.direction, side: c.side, ...tight })),
      { name: 'port80', port: 80, ...tight },
      ...MATCHED.map((m) => ({ name: `m${m.port}`, port: m.port, ...tight })),
      { name: 'other-profile', port: 3000, profile: 1, ...tight },
    ];
    slots = applyDesired(t.dp, desiredFrom(rules)).slots;
  });
  afterAll(() => t?.dispose());

  for (const c of cases) {
    it(`${c.name}: rule on port ${c.port} passes the first packet and drops the second`, () => {
      const frame = matrixFrame(c);
      const slot = slots.get(`${c.name.replaceAll('/', '-')}/${c.direction}`)!;
      const other: Direction = c.direction === 'ingress' ? 'egress' : 'ingress';
      // The same frame seen by the other direction's program matches nothing.
      expect(t.dp.testRun(other, frame, ctx).retval, `${other} ignores a ${c.direction} rule`).toBe(PASS);
      expect(t.dp.testRun(c.direction, frame, ctx).retval, 'first packet (full bucket)').toBe(PASS);
      expect(t.dp.testRun(c.direction, frame, ctx).retval, 'second packet (empty bucket)').toBe(DROP);
      const n = readCounters(t.dp, [slot]).get(slot)!;
      expect(n).toMatchObject({ pass_pkts: 1n, drop_pkts: 1n, pass_bytes: BigInt(frame.length), drop_bytes: BigInt(frame.length) });
    });
  }

  for (const m of MATCHED) {
    it(`${m.name} is parsed to its port`, () => {
      const frame = buildFrame(m.spec);
      expect(t.dp.testRun('ingress', frame, ctx).retval).toBe(PASS);
      expect(t.dp.testRun('ingress', frame, ctx).retval).toBe(DROP);
    });
  }

  for (const n of NO_DROP) {
    it(`${n.name} always passes and is counted as ${n.kind}`, () => {
      const frame = buildFrame(n.spec);
      const before = readGlobal(t.dp, 1, 'ingress')[n.kind].pkts;
      for (let i = 0; i < 3; i++) expect(t.dp.testRun('ingress', frame, ctx).retval, `run ${i + 1}`).toBe(PASS);
      expect(readGlobal(t.dp, 1, 'ingress')[n.kind].pkts - before).toBe(3n);
    });
  }

  it('an interface that is not registered is passed and counted in row 0', () => {
    t.dp.removeInterface(LO);
    try {
      const frame = buildFrame({ ip: 4, dport: 80 });
      const before = readGlobal(t.dp, 0, 'egress').unmatched.pkts;
      for (let i = 0; i < 3; i++) expect(t.dp.testRun('egress', frame, ctx).retval).toBe(PASS);
      expect(readGlobal(t.dp, 0, 'egress').unmatched.pkts - before).toBe(3n);
    } finally {
      t.dp.setInterface(LO, 0);
    }
  });

  it('a rule of another profile does not apply to this interface', () => {
    const frame = buildFrame({ ip: 4, dport: 3000 });
    for (let i = 0; i < 3; i++) expect(t.dp.testRun('ingress', frame, ctx).retval).toBe(PASS);
    const slot = slots.get('other-profile/ingress')!;
    expect(readCounters(t.dp, [slot]).get(slot)!.pass_pkts).toBe(0n);
  });
});
