/**
 * Shapes of GET /v1/ports (TypeBox: validation, types, serialisation and
 * OpenAPI from one definition): every listening socket joined with the rules
 * that cover its port and the traffic seen on it.
 */
import { Type, type Static } from '@sinclair/typebox';

const Protocol = Type.Union([Type.Literal('tcp'), Type.Literal('udp')]);

export const PortListener = Type.Object({
  family: Type.Union([Type.Literal(4), Type.Literal(6)]),
  address: Type.String(),
  scope: Type.Union([Type.Literal('wildcard'), Type.Literal('loopback'), Type.Literal('specific')], {
    description: 'wildcard: every address of the host (0.0.0.0, ::); loopback: this host only; specific: one address.',
  }),
  uid: Type.Integer({ description: 'User that created the socket.' }),
  inode: Type.Integer(),
  process: Type.Optional(
    Type.Object({
      pid: Type.Integer(),
      command: Type.String(),
      cgroup: Type.Optional(Type.String()),
      container: Type.Optional(Type.String({ description: 'Container id (12 hex digits) named by the cgroup.' })),
    }),
  ),
});
export type PortListener = Static<typeof PortListener>;

export const PortRuleRef = Type.Object({
  name: Type.String(),
  mode: Type.String(),
  rate: Type.String({ description: 'Configured rate in tc notation, or "unlimited".' }),
  rateBitsPerSecond: Type.Number(),
});
export type PortRuleRef = Static<typeof PortRuleRef>;

/** One direction of a port: the rules that judge it and what was seen. */
export const PortTraffic = Type.Object({
  rules: Type.Array(PortRuleRef),
  source: Type.Union([Type.Literal('rule'), Type.Literal('unmatched'), Type.Literal('none')], {
    description: 'rule: counters of the rule (a range rule\'s whole range); unmatched: the per-port accounting of traffic no rule matched (interfaces[].countUnmatched); none: nothing measured.',
  }),
  bitsPerSecond: Type.Number({ description: 'Passed wire bits per second over the last seconds.' }),
  packetsPerSecond: Type.Number(),
  droppedPacketsPerSecond: Type.Number(),
  packets: Type.Number({ description: 'Packets passed since counting began.' }),
  bytes: Type.Number(),
  droppedPackets: Type.Number(),
  markedPackets: Type.Number({ description: 'Packets passed with ECN CE set by portshaper.' }),
});
export type PortTraffic = Static<typeof PortTraffic>;

export const PortFlag = Type.Object({
  code: Type.Union([Type.Literal('wildcard-unlimited'), Type.Literal('no-listener'), Type.Literal('privileged-port-non-root')]),
  message: Type.String(),
});
export type PortFlag = Static<typeof PortFlag>;

export const PortEntry = Type.Object({
  port: Type.Integer({ description: 'The port, or the first port of a range rule.' }),
  range: Type.Optional(Type.String({ description: 'from-to, for a rule that covers a port range.' })),
  protocol: Protocol,
  side: Type.Union([Type.Literal('local'), Type.Literal('remote')], { description: 'remote: a port of the peer (rules with side: remote), which has no local listener.' }),
  listeners: Type.Array(PortListener),
  ephemeral: Type.Boolean({ description: 'No listener and inside net.ipv4.ip_local_port_range: most likely the local end of outbound connections.' }),
  ingress: PortTraffic,
  egress: PortTraffic,
  flags: Type.Array(PortFlag),
});
export type PortEntry = Static<typeof PortEntry>;

export const PortsView = Type.Object({
  ports: Type.Array(PortEntry),
  countingUnmatched: Type.Boolean({ description: 'Some interface counts unmatched traffic per port (interfaces[].countUnmatched).' }),
  windowSeconds: Type.Number({ description: 'Window of the rates.' }),
});
export type PortsView = Static<typeof PortsView>;

/** Traffic no rule matched on one (direction, protocol, local port), as the service reports it. */
export interface UnmatchedTraffic {
  direction: 'ingress' | 'egress';
  protocol: 'tcp' | 'udp';
  port: number;
  packets: number;
  bytes: number;
  bitsPerSecond: number;
  packetsPerSecond: number;
}

export const PortsQuery = Type.Object({
  all: Type.Optional(Type.Boolean({ description: 'Include ephemeral ports (no listener, in ip_local_port_range).', default: false })),
});
export type PortsQuery = Static<typeof PortsQuery>;
