/**
 * Every shape the REST API receives or sends, defined once with TypeBox: the
 * same object validates requests (ajv), types the handlers and the service
 * (Static<>), serialises responses (fast-json-stringify) and is copied into
 * the OpenAPI document. Rule keys, enums and descriptions come from the
 * policy's key table, so the API and the file cannot drift apart. The values
 * of a rule body are the exception: the policy validator judges them, so
 * that the API refuses a value with the file's reason (input.ts).
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { policyJudged } from './input.js';
import { RULE_KEYS } from '../policy/schema.js';

const describe = (key: string): string => RULE_KEYS[key]?.description ?? key;
/** A string enum as JSON Schema "enum" (not anyOf of constants: fast-json-stringify serialises that far faster). */
const enumOf = (key: string) => Type.Unsafe<string>({ type: 'string', enum: [...(RULE_KEYS[key]?.enum ?? [])], description: describe(key) });

/** A rule's name, as in the policy file. */
export const RuleName = Type.String({ pattern: RULE_KEYS.name?.pattern ?? '', description: describe('name') });

export const RuleNameParams = Type.Object({ name: RuleName });
export type RuleNameParams = Static<typeof RuleNameParams>;

export const PortParams = Type.Object({ port: Type.Integer({ minimum: 1, maximum: 65535, description: 'Port 1..65535.' }) });
export type PortParams = Static<typeof PortParams>;

/** The keys of one rule as written in the policy file (the name comes from the URL). */
const ruleFields = {
  port: Type.Union([Type.Integer({ minimum: 1, maximum: 65535 }), Type.String({ pattern: RULE_KEYS.port?.pattern ?? '' })], {
    description: describe('port'),
  }),
  protocol: enumOf('protocol'),
  direction: enumOf('direction'),
  side: enumOf('side'),
  rate: Type.String({ description: describe('rate'), examples: ['10mbit', 'unlimited'] }),
  burst: Type.String({ description: describe('burst'), examples: ['64kb', '300ms'] }),
  mode: enumOf('mode'),
  ecn: Type.Union([Type.String(), Type.Boolean()], { description: describe('ecn'), examples: ['2ms', 'off'] }),
  horizon: Type.String({ description: describe('horizon'), examples: ['50ms'] }),
  pps: Type.String({ description: describe('pps'), examples: ['10kpps'] }),
  connections: Type.String({ description: describe('connections'), examples: ['100/s'] }),
  client: Type.Object(
    {
      rate: Type.Optional(Type.String({ examples: ['10mbit'] })),
      burst: Type.Optional(Type.String({ examples: ['100ms'] })),
      pps: Type.Optional(Type.String({ examples: ['1kpps'] })),
      connections: Type.Optional(Type.String({ examples: ['10/s'] })),
      ipv6Prefix: Type.Optional(Type.Integer({ minimum: 1, maximum: 128 })),
    },
    { additionalProperties: false, description: describe('client') },
  ),
  interfaces: Type.Array(Type.String(), { minItems: 1, description: describe('interfaces') }),
  buckets: enumOf('buckets'),
};

/** PUT /v1/rules/{name}: the whole rule; keys left out take the policy's defaults. */
export const RuleBody = policyJudged(Type.Object(
  {
    port: ruleFields.port,
    protocol: Type.Optional(ruleFields.protocol),
    direction: Type.Optional(ruleFields.direction),
    side: Type.Optional(ruleFields.side),
    rate: Type.Optional(ruleFields.rate),
    burst: Type.Optional(ruleFields.burst),
    mode: Type.Optional(ruleFields.mode),
    ecn: Type.Optional(ruleFields.ecn),
    horizon: Type.Optional(ruleFields.horizon),
    pps: Type.Optional(ruleFields.pps),
    connections: Type.Optional(ruleFields.connections),
    client: Type.Optional(ruleFields.client),
    interfaces: Type.Optional(ruleFields.interfaces),
    buckets: Type.Optional(ruleFields.buckets),
  },
  { additionalProperties: false, description: 'A rule as in the policy file; the name is the one in the URL. Validated exactly as the file is.' },
));
export type RuleBody = Static<typeof RuleBody>;

const removable = <T extends TSchema>(schema: T) => Type.Optional(Type.Union([schema, Type.Null()]));

/** PATCH /v1/rules/{name}: a JSON merge patch (RFC 7396) of the rule's keys; null removes a key (back to the default). */
export const RulePatch = policyJudged(Type.Object(
  {
    port: Type.Optional(ruleFields.port),
    protocol: removable(ruleFields.protocol),
    direction: removable(ruleFields.direction),
    side: removable(ruleFields.side),
    rate: removable(ruleFields.rate),
    burst: removable(ruleFields.burst),
    mode: removable(ruleFields.mode),
    ecn: removable(ruleFields.ecn),
    horizon: removable(ruleFields.horizon),
    pps: removable(ruleFields.pps),
    connections: removable(ruleFields.connections),
    client: removable(ruleFields.client),
    interfaces: removable(ruleFields.interfaces),
    buckets: removable(ruleFields.buckets),
  },
  { additionalProperties: false, minProperties: 1, description: 'Keys to change; null removes a key so the default applies. The result is validated exactly as the file is.' },
));
export type RulePatch = Static<typeof RulePatch>;

/** GET /v1/rules/{name}/clients query. */
export const ClientsQuery = Type.Object({
  top: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 20, description: 'How many clients to list.' })),
  by: Type.Optional(
    Type.Union([Type.Literal('bytes'), Type.Literal('drops')], { default: 'bytes', description: 'Rank by passed bytes or by dropped packets.' }),
  ),
});
export type ClientsQuery = Static<typeof ClientsQuery>;

/** The clients of a rule with per-client limits. */
export const ClientsView = Type.Object({
  rule: Type.String(),
  clients: Type.Integer({ description: 'Clients the table holds now for this rule.' }),
  added: Type.Integer({ description: 'Clients added since the rule was created (first seen, or seen again after eviction).' }),
  evicted: Type.Integer({ description: 'added - clients: forgotten because the client table (clientTable) was full.' }),
  by: Type.Union([Type.Literal('bytes'), Type.Literal('drops')]),
  top: Type.Array(
    Type.Object({
      address: Type.String({ description: 'IPv4 address, or IPv6 prefix (ipv6Prefix bits).' }),
      direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
      passedPackets: Type.Number(),
      passedBytes: Type.Number(),
      droppedPackets: Type.Number(),
      droppedBytes: Type.Number(),
      idleSeconds: Type.Number({ description: 'Seconds since its last packet.' }),
    }),
  ),
});
export type ClientsView = Static<typeof ClientsView>;

/** Packets and bytes of one direction of a rule since its buckets were created. */
export const DirectionCounters = Type.Object({
  passedPackets: Type.Number(),
  passedBytes: Type.Number(),
  droppedPackets: Type.Number(),
  droppedBytes: Type.Number(),
  overLimitPackets: Type.Number({ description: 'Monitor mode: passed although over the limit.' }),
  overLimitBytes: Type.Number(),
  markedPackets: Type.Number({ description: 'Passed with ECN CE set by portshaper (shaping past the ecn delay, or policing in the ECN band).' }),
  markedBytes: Type.Number(),
  synDrops: Type.Number({ description: 'New connections (SYN) refused by a connection limit (included in droppedPackets).' }),
  newClients: Type.Number({ description: 'Clients added to the per-client table (see GET /v1/rules/{name}/clients).' }),
});
export type DirectionCounters = Static<typeof DirectionCounters>;

/** Rates from counter deltas over at least the last 5 s (src/controller/rule-counters.ts defines them). */
export const ObservedRate = Type.Object(
  {
    bitsPerSecond: Type.Number({ description: 'Passed wire bits per second.' }),
    packetsPerSecond: Type.Number({ description: 'Passed packets per second.' }),
    droppedBitsPerSecond: Type.Number(),
    droppedPacketsPerSecond: Type.Number(),
    windowSeconds: Type.Number({
      description: 'Seconds between the background reading the rates compare with and the reading of this response: 5-6 s up to 16,384 buckets, up to 5 s + buckets/16,384 s above (5-9 s at 65,536); 0 until a background reading exists.',
    }),
  },
  {
    description:
      "The rule's counters read for this response minus the agent's background reading of the same buckets that is the newest at least 5 s older, divided by the time between them. The agent reads at most 16,384 buckets a second in the background, in turn, while the API, the metrics listener or its stats log runs.",
  },
);
export type ObservedRate = Static<typeof ObservedRate>;

/** A rule as the agent enforces it, with its counters and observed rates. */
export const RuleView = Type.Object({
  name: RuleName,
  port: Type.Union([Type.Integer(), Type.String()], { description: 'Port, or range "from-to".' }),
  from: Type.Integer(),
  to: Type.Integer(),
  protocol: ruleFields.protocol,
  direction: ruleFields.direction,
  side: ruleFields.side,
  rate: Type.String({ description: 'Configured rate in tc notation, or "unlimited".' }),
  rateBitsPerSecond: Type.Number({ description: 'Configured rate; 0 = unlimited.' }),
  burstBytes: Type.Number({ description: 'Bucket depth in bytes at the rate.' }),
  burstNanoseconds: Type.Number({ description: 'Bucket depth in ns of traffic at the rate.' }),
  mode: ruleFields.mode,
  buckets: ruleFields.buckets,
  interfaces: Type.Optional(Type.Array(Type.String())),
  counters: Type.Object({ ingress: Type.Optional(DirectionCounters), egress: Type.Optional(DirectionCounters) }),
  observed: Type.Object({ ingress: Type.Optional(ObservedRate), egress: Type.Optional(ObservedRate) }),
});
export type RuleView = Static<typeof RuleView>;

export const RuleList = Type.Object({ rules: Type.Array(RuleView) });

/** A socket bound to a port on this host, from /proc/net. */
export const Listener = Type.Object({
  protocol: Type.Union([Type.Literal('tcp'), Type.Literal('udp')]),
  address: Type.String(),
  port: Type.Integer(),
  inode: Type.Integer(),
  process: Type.Optional(Type.Object({ pid: Type.Integer(), command: Type.String() })),
});
export type Listener = Static<typeof Listener>;

export const PortView = Type.Object({
  port: Type.Integer(),
  rules: Type.Array(RuleView, { description: 'Rules whose port or range includes the port.' }),
  listeners: Type.Array(Listener, {
    description: 'TCP sockets listening and UDP sockets bound on the port in the agent\'s network namespace; the process is given where /proc lets the agent read it.',
  }),
});
export type PortView = Static<typeof PortView>;

const GlobalKind = Type.Object({ packets: Type.Number(), bytes: Type.Number() });
/** Traffic no rule accounts for, per interface and direction. */
export const GlobalRow = Type.Object({
  interface: Type.String(),
  ifindex: Type.Integer(),
  direction: Type.Union([Type.Literal('ingress'), Type.Literal('egress')]),
  nonIp: GlobalKind,
  unparsed: GlobalKind,
  fragment: GlobalKind,
  unmatched: GlobalKind,
});
export type GlobalRow = Static<typeof GlobalRow>;
export const StatsView = Type.Object({ interfaces: Type.Array(GlobalRow) });
export type StatsView = Static<typeof StatsView>;

export const InterfaceStatus = Type.Object({
  name: Type.String(),
  ifindex: Type.Integer(),
  ingress: Type.Boolean({ description: 'Attached (or not wanted) on ingress.' }),
  egress: Type.Boolean({ description: 'Attached (or not wanted) on egress.' }),
  registered: Type.Boolean({ description: 'Present in the pinned interface map.' }),
  error: Type.Optional(Type.String()),
});
export const ReadyView = Type.Object({
  ready: Type.Boolean(),
  reason: Type.Optional(Type.String()),
  interfaces: Type.Array(InterfaceStatus),
});
export type ReadyView = Static<typeof ReadyView>;

export const HealthView = Type.Object({ status: Type.Literal('ok') });

/** The policy in force: its file text and the same document as JSON. */
export const PolicyView = Type.Object({
  file: Type.String(),
  sha256: Type.String(),
  inForce: Type.Boolean({ description: 'False when the file was edited and not (yet) applied, e.g. because it is invalid.' }),
  policy: Type.Unknown({ description: 'The policy file as JSON (see docs/policy.schema.json).' }),
});
export type PolicyView = Static<typeof PolicyView>;

/** Outcome of a write. */
export const ApplyView = Type.Object({
  applied: Type.Boolean(),
  rules: Type.Integer(),
  ms: Type.Number({ description: 'Time to apply the change to the kernel.' }),
  warnings: Type.Array(Type.String()),
});
export type ApplyView = Static<typeof ApplyView>;

/** One problem with a request: the field it concerns and why. */
export const FieldError = Type.Object({
  field: Type.String({ description: 'Body key, URL parameter, or policy path such as "rules[2].rate".' }),
  reason: Type.String(),
});
export type FieldError = Static<typeof FieldError>;

/** Every error response. */
export const ErrorView = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  code: Type.String({ description: 'Stable error code (docs/errors.md).' }),
  message: Type.String(),
  requestId: Type.String({ description: 'Quote it when reporting a 5xx: the agent logged the details under it.' }),
  errors: Type.Optional(Type.Array(FieldError)),
});
export type ErrorView = Static<typeof ErrorView>;
