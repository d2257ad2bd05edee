import { describe, expect, it } from 'vitest';
import { planPolicy } from '../../../src/policy/index.js';
import { lines, validate, withRules } from './helpers.js';

/** A bucket with no packet or connection limit. */
const NO_EVENTS = { pktCostNs: 0, pktBurstNs: 0, synCostNs: 0, synBurstNs: 0 };

/** The plan of a policy that must be valid. */
function plan(text: string) {
  const { policy, diagnostics } = validate(text);
  expect(diagnostics.filter((d) => d.severity === 'error'), 'policy validates').toEqual([]);
  if (!policy) throw new Error('no policy');
  return planPolicy(policy);
}

describe('planPolicy: buckets and port ranges', () => {
  it('plans one shared bucket for a range, per direction', () => {
    const state = plan(withRules('  - { name: web, port: "8000-8099", protocol: tcp, direction: ingress, rate: 10mbit, burst: 64kb }'));
    expect(state.buckets).toEqual([
      // Ingress has no queue: the default mode (shape) polices there, with an ECN band as deep as the burst.
      { key: 'web/ingress', rule: 'web', direction: 'ingress', rateBps: 10e6, burstNs: 52_428_800, mode: 'police', ecnNs: 52_428_800, horizonNs: 0, ...NO_EVENTS },
    ]);
    expect(state.ports).toEqual([
      { profile: 0, direction: 'ingress', protocol: 'tcp', side: 'local', from: 8000, to: 8099, bucket: 'web/ingress', perPort: false },
    ]);
    expect(state.interfaces).toEqual([
      { name: 'lo', profile: 0, ingress: true, egress: true, remote: { ingress: false, egress: false }, shaped: [], replaceQdisc: false, countUnmatched: false },
    ]);
  });

  it('shapes egress by default: a 10 ms burst, 2 ms ECN delay, 50 ms horizon (raised to two 64 KiB packets at low rates); polices ingress', () => {
    const state = plan(
      withRules(
        '  - { name: web, port: 443, protocol: tcp, rate: 100mbit }',
        '  - { name: slow, port: 25, protocol: tcp, direction: egress, rate: 1mbit }',
        '  - { name: cut, port: 26, protocol: tcp, direction: egress, rate: 1mbit, mode: enforce }',
      ),
    );
    expect(state.buckets.map((b) => [b.key, b.mode, b.burstNs, b.ecnNs, b.horizonNs])).toEqual([
      ['cut/egress', 'police', 300_000_000, 300_000_000, 0],
      ['slow/egress', 'shape', 24_224_000, 2_000_000, 1_048_576_000],
      ['web/ingress', 'police', 300_000_000, 300_000_000, 0],
      ['web/egress', 'shape', 10_000_000, 2_000_000, 50_000_000],
    ]);
    expect(state.interfaces[0]?.shaped).toEqual(['slow/egress', 'web/egress']);
  });

  it('lists shaped per-port buckets for the egress of the interfaces a rule applies to, and remote-side lookups per direction', () => {
    const state = plan(
      lines(
        'interfaces: [{ name: lo }, { name: eth0, egress: false }]',
        'rules:',
        '  - { name: g, port: "7000-7002", protocol: udp, direction: egress, buckets: per-port, rate: 1mbit, interfaces: [lo] }',
        '  - { name: c, port: 443, protocol: tcp, side: remote, direction: egress, rate: 1mbit, ecn: off, horizon: 2s }',
      ),
    );
    const lo = state.interfaces.find((i) => i.name === 'lo')!;
    const eth0 = state.interfaces.find((i) => i.name === 'eth0')!;
    expect(lo.shaped).toEqual(['c/egress', 'g/egress/7000', 'g/egress/7001', 'g/egress/7002']);
    expect(eth0.shaped, 'no egress hook on eth0: nothing to shape there').toEqual([]);
    expect(lo.remote).toEqual({ ingress: false, egress: true });
    expect(state.buckets.find((b) => b.key === 'c/egress')).toMatchObject({ mode: 'shape', ecnNs: 0, horizonNs: 2_000_000_000 });
  });

  it('plans one bucket per port for a per-port range, keyed by port', () => {
    const state = plan(
      withRules('  - { name: games, port: "27015-27017", protocol: udp, direction: egress, buckets: per-port, rate: 1mbit, mode: monitor }'),
    );
    expect(state.buckets.map((b) => [b.key, b.port, b.direction, b.mode])).toEqual([
      ['games/egress/27015', 27015, 'egress', 'monitor'],
      ['games/egress/27016', 27016, 'egress', 'monitor'],
      ['games/egress/27017', 27017, 'egress', 'monitor'],
    ]);
    expect(state.ports).toEqual([
      { profile: 0, direction: 'egress', protocol: 'udp', side: 'local', from: 27015, to: 27017, bucket: 'games/egress', perPort: true },
    ]);
  });

  it('points the tcp and udp ranges of protocol any at the same bucket', () => {
    const state = plan(withRules('  - { port: 53, direction: ingress, rate: 1mbit }'));
    expect(state.buckets.map((b) => b.key)).toEqual(['any-53/ingress']);
    expect(state.ports.map((p) => [p.protocol, p.bucket])).toEqual([
      ['tcp', 'any-53/ingress'],
      ['udp', 'any-53/ingress'],
    ]);
  });

  it('gives direction both one bucket per direction', () => {
    const state = plan(withRules('  - { port: 22, protocol: tcp, side: remote, rate: 1mbit }'));
    expect(state.buckets.map((b) => b.key)).toEqual(['tcp-22/ingress', 'tcp-22/egress']);
    expect(state.ports.map((p) => [p.direction, p.side, p.bucket])).toEqual([
      ['ingress', 'remote', 'tcp-22/ingress'],
      ['egress', 'remote', 'tcp-22/egress'],
    ]);
  });

  it('plans an unlimited rule as a counting bucket (rate 0, burst 0)', () => {
    const state = plan(withRules('  - { port: 80, protocol: tcp, direction: ingress, rate: unlimited }'));
    expect(state.buckets).toEqual([
      { key: 'tcp-80/ingress', rule: 'tcp-80', direction: 'ingress', rateBps: 0, burstNs: 0, mode: 'police', ecnNs: 0, horizonNs: 0, ...NO_EVENTS },
    ]);
  });

  it('plans an empty rule list as interfaces only', () => {
    expect(plan(lines('interfaces: [{ name: eth0, egress: false }]', 'rules: []'))).toEqual({
      buckets: [],
      ports: [],
      interfaces: [
        { name: 'eth0', profile: 0, ingress: true, egress: false, remote: { ingress: false, egress: false }, shaped: [], replaceQdisc: false, countUnmatched: false },
      ],
    });
  });
});

describe('planPolicy: packet, connection and per-client limits', () => {
  it('plans pps on every direction, connections on ingress only, and per-client limits with a /64 default', () => {
    const state = plan(
      withRules(
        '  - { name: api, port: 443, protocol: tcp, rate: 100mbit, mode: police, pps: 10kpps, connections: 50/s,',
        '      client: { rate: 1mbit, pps: 100pps, connections: 2/s } }',
      ),
    );
    const [ingress, egress] = state.buckets;
    expect(ingress).toMatchObject({ key: 'api/ingress', pktCostNs: 100_000, pktBurstNs: 300_000_000, synCostNs: 20_000_000, synBurstNs: 300_000_000 });
    expect(egress).toMatchObject({ key: 'api/egress', pktCostNs: 100_000, synCostNs: 0, synBurstNs: 0 });
    expect(ingress?.client).toEqual({
      rateBps: 1e6,
      burstNs: 300_000_000,
      ecnNs: 300_000_000,
      pktCostNs: 10_000_000,
      pktBurstNs: 300_000_000,
      synCostNs: 500_000_000,
      synBurstNs: 1_000_000_000,
      ipv6Prefix: 64,
    });
    expect(egress?.client?.synCostNs, 'no SYN limit on egress').toBe(0);
  });

  it('gives a packet limit with an unlimited bit rate a 300 ms burst, at least two packets', () => {
    const [b] = plan(withRules('  - { port: 53, protocol: udp, direction: ingress, rate: unlimited, pps: 1pps }')).buckets;
    expect(b).toMatchObject({ rateBps: 0, pktCostNs: 1e9, pktBurstNs: 2e9 });
  });
});

describe('planPolicy: profiles', () => {
  const text = lines(
    'interfaces:',
    '  - name: eth2',
    '  - name: eth0',
    '  - name: eth1',
    '  - name: lo',
    '  - name: eth3',
    'rules:',
    '  - { name: all, port: 80, protocol: tcp, direction: ingress, rate: 1mbit }',
    '  - { name: edge, port: 443, protocol: tcp, direction: ingress, rate: 1mbit, interfaces: [eth0, eth1] }',
    '  - { name: lab, port: 5201, protocol: tcp, direction: ingress, rate: 1mbit, interfaces: [lo] }',
    '  - { name: odd, port: 8080, protocol: tcp, direction: ingress, rate: 1mbit, interfaces: [eth3] }',
  );

  it('shares a profile between interfaces with the same rules, numbered by first appearance', () => {
    expect(plan(text).interfaces.map(({ name, profile, ingress, egress }) => ({ name, profile, ingress, egress }))).toEqual([
      { name: 'eth0', profile: 1, ingress: true, egress: true },
      { name: 'eth1', profile: 1, ingress: true, egress: true },
      { name: 'eth2', profile: 0, ingress: true, egress: true },
      { name: 'eth3', profile: 3, ingress: true, egress: true },
      { name: 'lo', profile: 2, ingress: true, egress: true },
    ]);
  });

  it('maps each profile to its own rules, the shared ones in every profile', () => {
    expect(plan(text).ports.map((p) => `${p.profile}:${p.from}:${p.bucket}`)).toEqual([
      '0:80:all/ingress',
      '1:80:all/ingress',
      '1:443:edge/ingress',
      '2:80:all/ingress',
      '2:5201:lab/ingress',
      '3:80:all/ingress',
      '3:8080:odd/ingress',
    ]);
  });

  it('keeps one bucket per rule, whatever the number of profiles using it', () => {
    expect(plan(text).buckets.map((b) => b.key)).toEqual(['all/ingress', 'edge/ingress', 'lab/ingress', 'odd/ingress']);
  });
});

describe('planPolicy: determinism', () => {
  const rules = [
    '  - { name: zeta, port: "100-102", buckets: per-port, rate: 1mbit }',
    '  - { name: alpha, port: 9000, protocol: udp, rate: 2mbit }',
    '  - { name: mid, port: 22, side: remote, protocol: tcp, direction: egress, rate: 3mbit }',
    '  - { port: 5000, rate: unlimited }',
  ];

  it('returns the same plan for the same policy', () => {
    expect(plan(withRules(...rules))).toEqual(plan(withRules(...rules)));
  });

  it('returns the same plan whatever the order of the rules', () => {
    expect(plan(withRules(...[...rules].reverse()))).toEqual(plan(withRules(...rules)));
    expect(plan(withRules(rules[2] ?? '', rules[0] ?? '', rules[3] ?? '', rules[1] ?? ''))).toEqual(plan(withRules(...rules)));
  });

  it('sorts buckets by rule, direction and port, and ranges as the kernel port table', () => {
    const state = plan(withRules(...rules));
    expect(state.buckets.map((b) => b.key)).toEqual([
      'alpha/ingress',
      'alpha/egress',
      'any-5000/ingress',
      'any-5000/egress',
      'mid/egress',
      'zeta/ingress/100',
      'zeta/ingress/101',
      'zeta/ingress/102',
      'zeta/egress/100',
      'zeta/egress/101',
      'zeta/egress/102',
    ]);
    expect(state.ports.map((p) => `${p.direction} ${p.protocol} ${p.side} ${p.from}`)).toEqual([
      'ingress tcp local 100',
      'ingress tcp local 5000',
      'ingress udp local 100',
      'ingress udp local 5000',
      'ingress udp local 9000',
      'egress tcp local 100',
      'egress tcp local 5000',
      'egress tcp remote 22',
      'egress udp local 100',
      'egress udp local 5000',
      'egress udp local 9000',
    ]);
  });
});

describe('planPolicy: scale', () => {
  it('plans 65,536 rules: every tcp port 1..65535 and one udp port (policed: more buckets than HTB classes)', () => {
    const ruleLines = Array.from({ length: 65535 }, (_, i) => `  - { port: ${i + 1}, protocol: tcp, rate: 1mbit, mode: police }`);
    ruleLines.push('  - { port: 53, protocol: udp, rate: 1mbit, mode: police }');
    const state = plan(`${withRules()}${ruleLines.join('\n')}\n`);
    expect(state.buckets).toHaveLength(65536 * 2);
    expect(state.ports).toHaveLength(65536 * 2);
    expect(state.ports[0]).toMatchObject({ direction: 'ingress', protocol: 'tcp', from: 1, bucket: 'tcp-1/ingress' });
    expect(state.ports.at(-1)).toMatchObject({ direction: 'egress', protocol: 'udp', from: 53, bucket: 'udp-53/egress' });
  }, 60_000);
});
