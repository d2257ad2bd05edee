/**
 * Rule sets of N per-port limits, rendered for every system compared: the
 * portshaper DesiredState and policy YAML, linear nftables rules, an
 * nftables map of named limits, and linear u32 filters. The same list feeds
 * every renderer, so the sets are equivalent by construction.
 *
 * Every rule limits the local (source) port of traffic leaving the device,
 * at one rate and depth. The rule for the measured traffic (UDP to
 * TEST_PORT) comes last: the worst case for a linear list.
 */
import type { DesiredState } from '../../src/kernel/desired.js';
import { DEFAULT_ECN, DEFAULT_HORIZON, parseDuration } from '../../src/policy/units.js';
import { desiredFrom } from '../../test/helpers/dataplane.js';
import { TEST_PORT } from './traffic.js';

/** One per-port limit. */
export interface PortRule {
  protocol: 'tcp' | 'udp';
  port: number;
}

/** Largest rule count: every UDP port and one TCP port. */
export const MAX_RULES = 65_536;

/** N rules: UDP ports other than the test port, then TCP ports if needed, then UDP TEST_PORT last. */
export function ruleSet(count: number, testPort = TEST_PORT): PortRule[] {
  if (!Number.isInteger(count) || count < 1 || count > MAX_RULES) throw new Error(`rule count ${count} outside 1..${MAX_RULES}`);
  const rules: PortRule[] = [];
  for (let port = 1; port <= 65535 && rules.length < count - 1; port++) if (port !== testPort) rules.push({ protocol: 'udp', port });
  for (let port = 1; rules.length < count - 1; port++) rules.push({ protocol: 'tcp', port });
  rules.push({ protocol: 'udp', port: testPort });
  return rules;
}

/** The limit every rule of a set carries. */
export interface LimitParams {
  rateBps: number;
  burstNs: number;
}

const burstBytes = (l: LimitParams) => Math.max(1, Math.round((l.rateBps * l.burstNs) / 8e9));
const ruleName = (r: PortRule) => `${r.protocol}-${r.port}`;

/** How the measured rule (the last) of a set limits: police like the rest, or shape with the policy's ECN and horizon defaults. */
export type LastRule = 'police' | 'shape';

/** The data plane's desired state for the set (egress, local port; rules only, no interface). */
export function desiredState(rules: readonly PortRule[], limit: LimitParams, last: LastRule = 'police'): DesiredState {
  const shaping = { mode: 'shape', ecnNs: parseDuration(DEFAULT_ECN), horizonNs: parseDuration(DEFAULT_HORIZON) } as const;
  return desiredFrom(
    rules.map((r, i) => ({
      name: ruleName(r),
      port: r.port,
      protocol: r.protocol,
      direction: 'egress',
      ...limit,
      ...(last === 'shape' && i === rules.length - 1 ? shaping : {}),
    })),
  );
}

/** A policy file with the set, on one interface: what an operator would write. */
export function policyYaml(rules: readonly PortRule[], ifname: string, rate: string, burst: string, mode?: string): string {
  const lines = [
    'interfaces:',
    `  - name: ${ifname}`,
    '    ingress: false',
    '    egress: true',
    'defaults:',
    '  direction: egress',
    `  rate: ${rate}`,
    `  burst: ${burst}`,
    ...(mode ? [`  mode: ${mode}`] : []),
    'rules:',
  ];
  for (const r of rules) lines.push(`  - name: ${ruleName(r)}`, `    port: ${r.port}`, `    protocol: ${r.protocol}`);
  return lines.join('\n') + '\n';
}

/** nftables table names the benchmark creates (inside its own namespaces). */
export const NFT_TABLES = { linear: 'psbench_linear', map: 'psbench_map' } as const;

/** nftables: one `limit rate over` rule per port, in order, on netdev egress of dev. */
export function nftLinear(rules: readonly PortRule[], dev: string, limit: LimitParams): string {
  const over = `limit rate over ${Math.round(limit.rateBps / 8)} bytes/second burst ${burstBytes(limit)} bytes drop`;
  const body = rules.map((r) => `    ${r.protocol} sport ${r.port} ${over}`);
  return [
    `table netdev ${NFT_TABLES.linear} {`,
    '  chain egress {',
    `    type filter hook egress device "${dev}" priority 0;`,
    ...body,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** nftables: one named limit per port and a port → limit map per protocol: O(1) per packet. */
export function nftMap(rules: readonly PortRule[], dev: string, limit: LimitParams): string {
  const spec = `rate over ${Math.round(limit.rateBps / 8)} bytes/second burst ${burstBytes(limit)} bytes`;
  const out = [`table netdev ${NFT_TABLES.map} {`];
  for (const r of rules) out.push(`  limit ${r.protocol}_${r.port} {`, `    ${spec}`, '  }');
  const chain = [`  chain egress {`, `    type filter hook egress device "${dev}" priority 0;`];
  for (const protocol of ['tcp', 'udp'] as const) {
    const mine = rules.filter((r) => r.protocol === protocol);
    if (!mine.length) continue;
    out.push(`  map ${protocol}_limits {`, '    type inet_service : limit', `    elements = { ${mine.map((r) => `${r.port} : "${protocol}_${r.port}"`).join(', ')} }`, '  }');
    chain.push(`    limit name ${protocol} sport map @${protocol}_limits drop`);
  }
  out.push(...chain, '  }', '}', '');
  return out.join('\n');
}

/** u32 priority the benchmark's filters share (deleted together by priority). */
export const U32_PRIO = 10;

/**
 * `tc -batch` lines: one u32 filter per port on the clsact egress hook of
 * dev. This kernel has no gact/police actions, so a match only classifies
 * (the packet passes): it measures the cost of the linear match, which is
 * what grows with the rule count. One key per filter (the port field, which
 * TCP and UDP share): inserting u32 filters is quadratic in their number, and
 * a second key (the protocol) made 65,536 filters take minutes here.
 */
export function u32Batch(rules: readonly PortRule[], dev: string): string {
  return rules.map((r) => `filter add dev ${dev} egress prio ${U32_PRIO} protocol ip u32 match ip sport ${r.port} 0xffff classid 1:1`).join('\n') + '\n';
}
