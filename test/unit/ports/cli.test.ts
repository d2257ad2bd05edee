/** The text of `portshaper ports` and the screen of `portshaper top` (80×24), from a canned GET /v1/ports view. */
import { describe, expect, it } from 'vitest';
import type { PortEntry, PortsView, PortTraffic } from '../../../src/api/ports-schemas.js';
import { portsTable } from '../../../src/cli/ports.js';
import { renderTop, sortRows, topRows } from '../../../src/cli/top.js';

const none: PortTraffic = { rules: [], source: 'none', bitsPerSecond: 0, packetsPerSecond: 0, droppedPacketsPerSecond: 0, packets: 0, bytes: 0, droppedPackets: 0, markedPackets: 0 };
const web: PortEntry = {
  port: 443, protocol: 'tcp', side: 'local', ephemeral: false, flags: [],
  listeners: [{ family: 4, address: '0.0.0.0', scope: 'wildcard', uid: 0, inode: 1, process: { pid: 812, command: 'nginx', container: '3f2a9c1d0b7e' } }],
  ingress: none,
  egress: { ...none, source: 'rule', rules: [{ name: 'web', mode: 'shape', rate: '200mbit', rateBitsPerSecond: 200e6 }], bitsPerSecond: 187_400_000, droppedPacketsPerSecond: 12, markedPackets: 100 },
};
const dns: PortEntry = {
  port: 53, protocol: 'udp', side: 'local', ephemeral: false,
  flags: [{ code: 'wildcard-unlimited', message: 'named listens on every address (::) on 53/udp and no rule limits it' }],
  listeners: [{ family: 6, address: '::', scope: 'wildcard', uid: 0, inode: 2, process: { pid: 90, command: 'named' } }],
  ingress: { ...none, source: 'unmatched', bitsPerSecond: 2_400_000 }, egress: none,
};
const typo: PortEntry = {
  port: 8081, protocol: 'tcp', side: 'local', ephemeral: false, listeners: [],
  flags: [{ code: 'no-listener', message: 'rule "api" names 8081/tcp but nothing listens on it: a typo in the policy, or a service that is down?' }],
  ingress: { ...none, source: 'rule', rules: [{ name: 'api', mode: 'police', rate: '10mbit', rateBitsPerSecond: 10e6 }] }, egress: none,
};
const view: PortsView = { ports: [dns, web, typo], countingUnmatched: true, windowSeconds: 5 };

describe('portshaper ports', () => {
  it('prints one line per port and the flags under the table', () => {
    const text = portsTable(view);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^PORT\s+PROTO\s+LISTEN\s+PROCESS\s+IN LIMIT\s+IN RATE\s+OUT LIMIT\s+OUT RATE\s+DROPS$/);
    expect(lines[1]).toMatch(/^53\s+udp\s+\*\s+named\[90\]\s+-\s+2.4mbit\s+-\s+-\s+0$/);
    expect(lines[2]).toMatch(/^443\s+tcp\s+\*\s+nginx\[812\] 3f2a9c1d0b7e\s+-\s+-\s+200mbit\s+187.4mbit\s+0$/);
    expect(lines[3]).toMatch(/^8081\s+tcp\s+-\s+-\s+10mbit\s+0bit\s+-\s+-\s+0$/);
    expect(text).toContain('! no-listener: rule "api" names 8081/tcp');
    expect(text).toContain('! wildcard-unlimited: named listens on every address');
  });
});

describe('portshaper top', () => {
  it('fits 80×24: busiest first, cut to the width, and says how many ports did not fit', () => {
    const many: PortEntry[] = Array.from({ length: 40 }, (_, i) => ({ ...dns, port: 10000 + i, flags: [], ingress: { ...dns.ingress, bitsPerSecond: 1000 * i } }));
    const rows = sortRows(topRows({ ...view, ports: [...view.ports, ...many] }, undefined, 0), 'rate');
    const screen = renderTop(rows, { width: 80, height: 24, sort: 'rate', time: '12:00:00', countingUnmatched: true });
    expect(screen.length).toBeLessThanOrEqual(24);
    for (const line of screen) expect(line.length).toBeLessThanOrEqual(80);
    expect(screen[1]).toMatch(/^PORT\s+PROTO\s+DIR\s+RATE\s+LIMIT\s+DROP\/s\s+ECN\/s\s+LISTEN\s+PROCESS/);
    expect(screen[2]).toMatch(/^443\s+tcp\s+out\s+187.4mbit\s+200mbit\s+12\s+0\s+\*\s+nginx/);
    expect(screen[3]).toMatch(/^53\s+udp\s+in\s+2.4mbit\s+-/);
    expect(screen[23]).toBe(`${rows.length - 21} more ports`);
  });

  it('computes ECN marks per second from the previous view and sorts by drops or port', () => {
    const later = { ...view, ports: [dns, { ...web, egress: { ...web.egress, markedPackets: 150 } }, typo] };
    const rows = topRows(later, view, 2);
    expect(rows.find((r) => r.port === 443)?.marksPerSecond).toBe(25);
    expect(sortRows(rows, 'drops')[0]!.port).toBe(443);
    expect(sortRows(rows, 'port').map((r) => r.port)).toEqual([53, 443, 8081]);
  });
});
