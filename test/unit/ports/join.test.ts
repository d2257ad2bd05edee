/**
 * The join behind GET /v1/ports: listeners with the rules covering their
 * port (single ports, ranges, protocol any, side remote), unmatched traffic,
 * ephemeral ports, and the three flags; the unmatched-traffic sampler's rates.
 */
import { describe, expect, it } from 'vitest';
import { joinPorts, UnmatchedSampler } from '../../../src/api/ports.js';
import type { OwnedSocket } from '../../../src/api/socket-table.js';
import type { UnmatchedRow } from '../../../src/kernel/unmatched.js';
import { fakeRule } from '../api/fake.js';

const nginx = { pid: 10, command: 'nginx', cgroup: '/system.slice/nginx.service' };
const sock = (protocol: 'tcp' | 'udp', address: string, port: number, uid = 0, process?: OwnedSocket['process']): OwnedSocket => ({
  protocol,
  family: address.includes(':') ? 6 : 4,
  address,
  port,
  scope: address === '0.0.0.0' || address === '::' ? 'wildcard' : address.startsWith('127.') || address === '::1' ? 'loopback' : 'specific',
  uid,
  inode: port,
  ...(process ? { process } : {}),
});
const ephemeral = [32768, 60999] as const;

describe('joinPorts', () => {
  it('joins a listener with the rule on its port, per direction, with rates and counters', () => {
    const web = { ...fakeRule('web', 80), direction: 'both' as const };
    web.counters.egress = { ...web.counters.ingress!, markedPackets: 3 };
    web.observed.egress = { ...web.observed.ingress!, bitsPerSecond: 1_000_000 };
    const [e, ...rest] = joinPorts({ sockets: [sock('tcp', '0.0.0.0', 80, 0, nginx), sock('tcp', '::', 80, 0, nginx)], rules: [web], unmatched: [], ephemeral });
    expect(rest).toEqual([]);
    expect(e).toMatchObject({ port: 80, protocol: 'tcp', side: 'local', ephemeral: false, flags: [] });
    expect(e!.listeners.map((l) => [l.address, l.scope, l.process?.command])).toEqual([['0.0.0.0', 'wildcard', 'nginx'], ['::', 'wildcard', 'nginx']]);
    expect(e!.ingress).toMatchObject({ source: 'rule', rules: [{ name: 'web', rate: '10mbit', rateBitsPerSecond: 10_000_000 }], bitsPerSecond: 8000, droppedPackets: 2 });
    expect(e!.egress).toMatchObject({ source: 'rule', bitsPerSecond: 1_000_000, markedPackets: 3 });
  });

  it('flags a rule whose port nothing listens on (a likely typo)', () => {
    const [e] = joinPorts({ sockets: [sock('tcp', '0.0.0.0', 8080)], rules: [fakeRule('api', 8081)], unmatched: [], ephemeral });
    expect(e).toMatchObject({ port: 8080, flags: [{ code: 'wildcard-unlimited' }] });
    const typo = joinPorts({ sockets: [sock('tcp', '0.0.0.0', 8080)], rules: [fakeRule('api', 8081)], unmatched: [], ephemeral })[1]!;
    expect(typo).toMatchObject({ port: 8081, listeners: [] });
    expect(typo.flags).toEqual([{ code: 'no-listener', message: 'rule "api" names 8081/tcp but nothing listens on it: a typo in the policy, or a service that is down?' }]);
  });

  it('flags a wildcard listener no rule limits, but not a loopback one nor a limited one', () => {
    const flags = joinPorts({
      sockets: [sock('udp', '::', 53, 0), sock('tcp', '127.0.0.1', 5432), sock('tcp', '0.0.0.0', 80)],
      rules: [fakeRule('web', 80), { ...fakeRule('count', 53, 'unlimited'), protocol: 'udp' }],
      unmatched: [],
      ephemeral,
    }).map((e) => [e.port, e.protocol, e.flags.map((f) => f.code)]);
    expect(flags).toEqual([[53, 'udp', ['wildcard-unlimited']], [80, 'tcp', []], [5432, 'tcp', []]]);
  });

  it('flags a port below 1024 held by a non-root user', () => {
    const [e] = joinPorts({ sockets: [sock('tcp', '10.0.0.5', 443, 33, { pid: 7, command: 'caddy' })], rules: [fakeRule('tls', 443)], unmatched: [], ephemeral });
    expect(e!.flags).toEqual([
      { code: 'privileged-port-non-root', message: '443/tcp is below 1024 but held by uid 33 (caddy, pid 7): it had CAP_NET_BIND_SERVICE or a lowered net.ipv4.ip_unprivileged_port_start' },
    ]);
  });

  it('shows a range rule once, with the listeners inside it; protocol any on tcp and udp', () => {
    const games = { ...fakeRule('games', 30000), port: '30000-30999', to: 30999, protocol: 'any' as const };
    const entries = joinPorts({ sockets: [sock('udp', '0.0.0.0', 30005)], rules: [games], unmatched: [], ephemeral });
    expect(entries.map((e) => [e.port, e.range, e.protocol, e.listeners.length, e.flags.map((f) => f.code)])).toEqual([
      [30000, '30000-30999', 'tcp', 0, ['no-listener']],
      [30000, '30000-30999', 'udp', 1, []],
    ]);
  });

  it('lists remote-side rules apart, never flagged for lacking a listener', () => {
    const [e] = joinPorts({ sockets: [], rules: [{ ...fakeRule('crawler', 443), side: 'remote' as const, direction: 'egress' as const }], unmatched: [], ephemeral });
    expect(e).toMatchObject({ port: 443, side: 'remote', listeners: [], flags: [] });
  });

  it('shows unmatched traffic on unlimited ports, and marks listener-less ports in the ephemeral range', () => {
    const entries = joinPorts({
      sockets: [sock('udp', '0.0.0.0', 9000)],
      rules: [],
      unmatched: [
        { direction: 'ingress', protocol: 'udp', port: 9000, packets: 10, bytes: 10_000, bitsPerSecond: 16_000, packetsPerSecond: 2 },
        { direction: 'egress', protocol: 'tcp', port: 41000, packets: 5, bytes: 500, bitsPerSecond: 800, packetsPerSecond: 1 },
        { direction: 'egress', protocol: 'tcp', port: 7000, packets: 5, bytes: 500, bitsPerSecond: 800, packetsPerSecond: 1 },
      ],
      ephemeral,
    });
    expect(entries.map((e) => [e.port, e.ephemeral, e.ingress.source, e.egress.source, e.ingress.bitsPerSecond + e.egress.bitsPerSecond])).toEqual([
      [7000, false, 'none', 'unmatched', 800],
      [9000, false, 'unmatched', 'none', 16_000],
      [41000, true, 'none', 'unmatched', 800],
    ]);
  });
});

describe('UnmatchedSampler', () => {
  it('gives rates over the window of its samples and reads nothing while off', () => {
    let reads = 0;
    let counting = true;
    let ms = 0;
    let rows: UnmatchedRow[] = [];
    const s = new UnmatchedSampler(() => (reads++, rows), () => counting, () => ms);
    rows = [{ direction: 'ingress', protocol: 'udp', port: 9000, packets: 100, bytes: 100_000 }];
    s.sample();
    expect(s.traffic()[0]).toMatchObject({ packets: 100, bitsPerSecond: 0 });
    ms = 2000;
    rows = [
      { direction: 'ingress', protocol: 'udp', port: 9000, packets: 300, bytes: 300_000 },
      { direction: 'egress', protocol: 'tcp', port: 22, packets: 4, bytes: 1000 },
    ];
    s.sample();
    expect(s.windowSeconds()).toBe(2);
    expect(s.traffic()).toEqual([
      { direction: 'ingress', protocol: 'udp', port: 9000, packets: 300, bytes: 300_000, bitsPerSecond: 800_000, packetsPerSecond: 100 },
      { direction: 'egress', protocol: 'tcp', port: 22, packets: 4, bytes: 1000, bitsPerSecond: 4000, packetsPerSecond: 2 },
    ]);
    counting = false;
    s.sample();
    expect(reads).toBe(2);
    expect(s.traffic()).toEqual([]);
  });
});
