/**
 * Every key of the policy file, defined once: type, allowed values, pattern,
 * default and description. The validator's key, type and enum checks and the
 * published JSON Schema (docs/policy.schema.json) are both derived from it;
 * after a change, regenerate the file with
 * `npx vitest run test/unit/policy/schema.test.ts -u`.
 */
import {
  CONNECTION_RATE_UNITS,
  DEFAULT_BURST,
  DEFAULT_ECN,
  DEFAULT_HORIZON,
  DEFAULT_SHAPE_BURST,
  DURATION_UNITS,
  PACKET_RATE_UNITS,
  RATE_UNITS,
  SIZE_UNITS,
} from './units.js';

type ScalarType = 'string' | 'integer' | 'boolean';

/** One key of the policy file. */
export interface KeySpec {
  /** JSON types accepted; objects and arrays describe their children with `keys` and `items`. */
  type: ScalarType | readonly ScalarType[] | 'object' | 'array';
  description: string;
  default?: string | number | boolean;
  enum?: readonly string[];
  /** ECMA-262 pattern a string value must match. */
  pattern?: string;
  /** Bounds of an integer value. */
  minimum?: number;
  maximum?: number;
  /** Strings read by the units module; its parser checks them, the schema gets a pattern from its units. "duration" also takes "off". */
  units?: 'rate' | 'burst' | 'duration' | 'pps' | 'connections';
  /** Added to type, pattern and missing-key errors: how to write a correct value. */
  hint?: string;
  /** Children of an object. */
  keys?: Readonly<Record<string, KeySpec>>;
  /** An object that may be written as a bare value of this key ("- eth0" for "- name: eth0"). */
  shorthand?: string;
  required?: readonly string[];
  /** Keys that belong elsewhere, with the message that says where: reported instead of "unknown key". */
  elsewhere?: Readonly<Record<string, string>>;
  /** Element of an array. */
  items?: KeySpec;
  minItems?: number;
}

const ABSOLUTE_PATH: Pick<KeySpec, 'type' | 'pattern' | 'hint'> = {
  type: 'string',
  pattern: '^/',
  hint: 'write an absolute path, starting with "/"',
};

/** Linux dev_valid_name(): 1..15 bytes (IFNAMSIZ - 1), no "/", ":" or whitespace, not "." or "..". */
const INTERFACE_NAME: KeySpec = {
  type: 'string',
  pattern: '^(?!\\.\\.?$)[^/:\\s]{1,15}$',
  description: 'Network interface name, as shown by "ip -br link".',
  hint: 'interface names are 1 to 15 characters without "/", ":" or spaces',
};

/** Keys of one rule; all but name, port and interfaces may also be set in `defaults`. */
export const RULE_KEYS: Readonly<Record<string, KeySpec>> = {
  name: {
    type: 'string',
    pattern: '^[a-z0-9][a-z0-9._-]{0,62}$',
    description:
      'Unique rule name, used in bucket keys, counters and the API. Derived from protocol and port when ' +
      'absent ("tcp-8080", "any-30000-30999"); set it when two rules would derive the same name.',
    hint: 'use 1 to 63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit',
  },
  port: {
    type: ['integer', 'string'],
    minimum: 1,
    maximum: 65535,
    pattern: '^[0-9]+(-[0-9]+)?$',
    description: 'Port 1..65535, or an inclusive range written as a string: "30000-30999".',
    hint: 'write a port 1..65535 or a range such as "30000-30999"',
  },
  protocol: {
    type: 'string',
    enum: ['tcp', 'udp', 'any'],
    default: 'any',
    description: 'Transport protocol; "any" matches tcp and udp with one bucket shared by both.',
  },
  direction: {
    type: 'string',
    enum: ['ingress', 'egress', 'both'],
    default: 'both',
    description: 'Traffic direction; "both" limits each direction independently, with one bucket per direction.',
  },
  side: {
    type: 'string',
    enum: ['local', 'remote'],
    default: 'local',
    description:
      'Which port the rule names: "local" is the service port on this host (ingress destination, egress ' +
      'source); "remote" the peer\'s port (ingress source, egress destination), to limit outbound clients.',
  },
  rate: {
    type: 'string',
    units: 'rate',
    description:
      'Limit in tc notation: bit, kbit, mbit, gbit, tbit (x1000), kibit..tibit (x1024), or kbit/s, Mbit/s, ' +
      'Gbit/s; 8kbit to 400gbit. "unlimited" only counts. Required here or in defaults.',
    hint: 'write a rate such as "10mbit", or "unlimited"',
  },
  burst: {
    type: 'string',
    units: 'burst',
    default: DEFAULT_BURST,
    description:
      'Bucket depth: bytes (b, kb, mb, kib, mib; kb = 1024) or time at the rate (ns, us, ms, s); at most ' +
      `60 s of traffic and at least 3028 bytes (2 full-size frames). Default ${DEFAULT_BURST} when policing ` +
      `(TCP through a policer needs a bucket deeper than its 200 ms minimum RTO) and ${DEFAULT_SHAPE_BURST} when ` +
      'shaping (how far ahead of the rate a flow may start). The default, and a burst from defaults, are ' +
      'raised to 3028 bytes at low rates.',
    hint: 'write a size such as "64kb" or a time such as "10ms"',
  },
  mode: {
    type: 'string',
    enum: ['shape', 'police', 'monitor', 'enforce'],
    default: 'shape',
    description:
      '"shape" queues traffic over the limit in an HTB class of its own and releases it at the rate (TCP sees ' +
      'delay, not loss); ingress has no queue, so there it polices. "police" drops what exceeds rate and ' +
      'burst ("enforce" is its former name). "monitor" only counts what police would drop.',
  },
  ecn: {
    type: ['string', 'boolean'],
    units: 'duration',
    default: DEFAULT_ECN,
    description:
      'ECN: shaped traffic that waits longer than this in the queue is marked CE instead of queueing on ' +
      '(default ' +
      DEFAULT_ECN +
      '); when policing, ECN-capable packets up to this much past the burst are marked instead of dropped ' +
      '(default: as deep as the burst). "off" (or false) never marks. Packets that are not ECN-capable are ' +
      'queued, or dropped, as without it.',
    hint: 'write a delay such as "2ms", or "off"',
  },
  horizon: {
    type: 'string',
    units: 'duration',
    default: DEFAULT_HORIZON,
    description:
      'Shaping only: a packet that would wait longer than this is dropped, which bounds the queue (and the ' +
      'delay) of senders that TCP small queues do not hold back, such as forwarded traffic. At least two ' +
      '64 KiB packets at the rate (raised at low rates); at most 10s.',
    hint: 'write a delay such as "50ms"',
  },
  pps: {
    type: 'string',
    units: 'pps',
    description:
      'Packet-rate limit (tc units: pps, kpps, mpps), alone or with a bit rate: both must admit a packet. ' +
      'Policed (dropped over the limit) in every mode but monitor; a burst as deep as the policing burst, at least 2 packets.',
    hint: 'write a packet rate such as "10kpps"',
  },
  connections: {
    type: 'string',
    units: 'connections',
    description:
      'New TCP connections per second (/s) or minute (/min) on ingress: a SYN over the limit is dropped and ' +
      'counted; established connections are not affected. Needs protocol tcp or any and direction ingress or both.',
    hint: 'write a connection rate such as "100/s"',
  },
  client: {
    type: 'object',
    description:
      'Limits for each client: every remote address (IPv6: every prefix of ipv6Prefix bits) gets buckets of its ' +
      'own, policed (ECN-capable packets are marked in a band as deep as the burst before they drop), under the ' +
      "rule's own limits when it has any (both must admit). Clients live in a table of clientTable entries; when it " +
      'is full the least recently seen client is forgotten and starts again with full buckets (counted as evictions).',
    keys: {
      rate: {
        type: 'string',
        units: 'rate',
        description: 'Bit rate of each client, in tc notation.',
        hint: 'write a rate such as "10mbit"',
      },
      burst: {
        type: 'string',
        units: 'burst',
        default: DEFAULT_BURST,
        description: 'Depth of each client\'s buckets: a size or a time at its rate (default 300ms, raised to 3028 bytes).',
        hint: 'write a size such as "64kb" or a time such as "100ms"',
      },
      pps: {
        type: 'string',
        units: 'pps',
        description: 'Packet rate of each client (pps, kpps, mpps).',
        hint: 'write a packet rate such as "1kpps"',
      },
      connections: {
        type: 'string',
        units: 'connections',
        description: 'New TCP connections of each client per second (/s) or minute (/min), on ingress.',
        hint: 'write a connection rate such as "10/s"',
      },
      ipv6Prefix: {
        type: 'integer',
        minimum: 1,
        maximum: 128,
        default: 64,
        description: 'Leading bits of an IPv6 address that name one client (a /64 is one subscriber\'s network).',
      },
    },
  },
  interfaces: {
    type: 'array',
    items: INTERFACE_NAME,
    minItems: 1,
    description: 'Restrict the rule to these interfaces, each listed under the top-level interfaces; default all.',
    hint: 'list one or more interfaces, e.g. [eth0]',
  },
  buckets: {
    type: 'string',
    enum: ['shared', 'per-port'],
    default: 'shared',
    description: 'Port ranges only: "shared" is one bucket for the whole range, "per-port" one bucket per port.',
  },
};

/** Rule keys that cannot have a default: they identify a rule or where it applies. */
const RULE_ONLY_KEYS: readonly string[] = ['name', 'port', 'interfaces'];

/** The whole policy file. */
export const POLICY_SPEC: KeySpec = {
  type: 'object',
  description: 'portshaper policy: per-port rate limits enforced by an eBPF program on tc ingress and egress.',
  required: ['interfaces'],
  keys: {
    pinDir: {
      ...ABSOLUTE_PATH,
      default: '/sys/fs/bpf/portshaper',
      description: 'Directory on the BPF filesystem where maps are pinned, so limits survive agent restarts.',
    },
    clientTable: {
      type: 'integer',
      minimum: 1024,
      maximum: 16_777_216,
      default: 65536,
      description:
        'Entries of the per-client table shared by every rule with a client: section (about 130 bytes of kernel ' +
        'memory each, allocated up front). Read when the pinned maps are created: a change takes effect after ' +
        '"portshaper detach --purge" and a restart.',
    },
    interfaces: {
      type: 'array',
      minItems: 1,
      description: 'Interfaces to attach to. A missing interface is a warning: the agent attaches when it appears.',
      hint: 'list at least one interface, e.g. "- name: eth0"',
      items: {
        type: 'object',
        description: 'One interface and the hooks to attach on it; a bare name ("- eth0", or [eth0, eth1]) is short for "- name: eth0".',
        required: ['name'],
        shorthand: 'name',
        keys: {
          name: INTERFACE_NAME,
          ingress: { type: 'boolean', default: true, description: 'Attach on tc ingress (traffic arriving).' },
          egress: { type: 'boolean', default: true, description: 'Attach on tc egress (traffic leaving).' },
          qdisc: {
            type: 'string',
            enum: ['keep', 'replace'],
            default: 'keep',
            description:
              'Shaping installs an HTB root qdisc on the interface. "keep" never replaces a root qdisc that ' +
              'another tool configured: shaping there is refused (PS_QDISC_FOREIGN) and nothing changes. ' +
              '"replace" replaces it; on detach the kernel\'s default qdisc comes back, not the replaced one.',
          },
          countUnmatched: {
            type: 'boolean',
            default: false,
            description:
              'Count traffic that no rule matches per local port, direction and protocol (shown by "portshaper top" ' +
              'and GET /v1/ports), to see what to limit before limiting it. Off by default: it adds a per-CPU counter ' +
              'update to every unmatched packet.',
          },
        },
      },
    },
    api: {
      type: 'object',
      description: 'REST API of the agent.',
      keys: {
        listen: {
          type: 'string',
          pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
          default: '127.0.0.1:9180',
          description: 'host:port to listen on; an IPv6 address goes in brackets: "[::1]:9180".',
          hint: 'write host:port such as "127.0.0.1:9180" or "[::1]:9180"',
        },
        tokenFile: {
          ...ABSOLUTE_PATH,
          default: '/var/lib/portshaper/token',
          description: 'File holding the bearer token that writes (and, unless readsOpen, reads) require.',
        },
        readsOpen: { type: 'boolean', default: true, description: 'Allow reads without a token.' },
        tls: {
          type: 'object',
          description: 'Serve HTTPS; give both cert and key, or leave tls out for plain HTTP.',
          required: ['cert', 'key'],
          keys: {
            cert: { ...ABSOLUTE_PATH, description: 'PEM certificate chain.', hint: 'tls needs both cert and key' },
            key: { ...ABSOLUTE_PATH, description: 'PEM private key.', hint: 'tls needs both cert and key' },
          },
        },
      },
    },
    metrics: {
      type: 'object',
      description: 'Prometheus metrics and health checks.',
      keys: {
        listen: {
          type: 'string',
          pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[A-Za-z0-9.-]+):[0-9]{1,5}$',
          description:
            'host:port of a second listener serving only GET /metrics, /healthz and /readyz, without a token ' +
            '(off when absent): lets Prometheus and probes reach the agent on the node\'s address while the API ' +
            'and its writes stay on loopback. "portshaper agent --metrics-listen" overrides it.',
          hint: 'write host:port such as "0.0.0.0:9181" or "[::]:9181"',
        },
        maxRules: {
          type: 'integer',
          minimum: 0,
          maximum: 1_000_000,
          default: 200,
          description:
            'Rules with their own series in /metrics (about 16 each), in policy order; the rest only count in ' +
            'the all-rules totals, and portshaper_metrics_rules_omitted says how many were left out.',
        },
      },
    },
    defaults: {
      type: 'object',
      description: 'Values for rule keys that a rule leaves out (any rule key but name, port and interfaces).',
      keys: Object.fromEntries(Object.entries(RULE_KEYS).filter(([key]) => !RULE_ONLY_KEYS.includes(key))),
      elsewhere: Object.fromEntries(
        RULE_ONLY_KEYS.map((key) => [key, `"${key}" cannot have a default; set it on each rule`]),
      ),
    },
    rules: {
      type: 'array',
      description: 'Per-port limits. Two rules may not share a port for the same protocol, direction, side and interface.',
      items: { type: 'object', description: 'One limit.', required: ['port'], keys: RULE_KEYS },
    },
  },
};

/** The JSON Schema (draft 2020-12) of the policy file, derived from POLICY_SPEC. */
export function policyJsonSchema(): Record<string, unknown> {
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    title: 'portshaper policy',
    ...toJsonSchema(POLICY_SPEC),
  };
}

function toJsonSchema(spec: KeySpec): Record<string, unknown> {
  const short = spec.shorthand !== undefined ? spec.keys?.[spec.shorthand] : undefined;
  if (short) {
    const { shorthand: _, ...full } = spec;
    return { description: spec.description, anyOf: [toJsonSchema(short), toJsonSchema(full)] };
  }
  const out: Record<string, unknown> = { description: spec.description };
  if (spec.type === 'object') {
    out.type = 'object';
    out.properties = Object.fromEntries(Object.entries(spec.keys ?? {}).map(([k, v]) => [k, toJsonSchema(v)]));
    if (spec.required?.length) out.required = spec.required;
    out.additionalProperties = false;
  } else if (spec.type === 'array') {
    out.type = 'array';
    if (spec.items) out.items = toJsonSchema(spec.items);
    if (spec.minItems !== undefined) out.minItems = spec.minItems;
  } else {
    out.type = spec.type;
    if (spec.enum) out.enum = spec.enum;
    const pattern = spec.units ? unitsPattern(spec.units) : spec.pattern;
    if (pattern !== undefined) out.pattern = pattern;
    if (spec.minimum !== undefined) out.minimum = spec.minimum;
    if (spec.maximum !== undefined) out.maximum = spec.maximum;
  }
  if (spec.default !== undefined) out.default = spec.default;
  return out;
}

/** A pattern accepting what the units parser reads (case-insensitively; JSON Schema has no flags). */
function unitsPattern(kind: NonNullable<KeySpec['units']>): string {
  const units = {
    rate: Object.keys(RATE_UNITS),
    duration: Object.keys(DURATION_UNITS),
    burst: [...Object.keys(SIZE_UNITS), ...Object.keys(DURATION_UNITS)],
    pps: Object.keys(PACKET_RATE_UNITS),
    connections: Object.keys(CONNECTION_RATE_UNITS),
  }[kind];
  // Longest first, so that an alternation engine never stops at a prefix ("m" of "mbit").
  const alternatives = [...new Set(units)].sort((a, b) => b.length - a.length || (a < b ? -1 : 1)).map(anyCase);
  const quantity = `\\s*[0-9]+(\\.[0-9]+)?\\s*(${alternatives.join('|')})\\s*`;
  if (kind === 'rate') return `^(${quantity}|\\s*${anyCase('unlimited')}\\s*)$`;
  if (kind === 'duration') return `^(${quantity}|\\s*${anyCase('off')}\\s*)$`;
  return `^${quantity}$`;
}

function anyCase(word: string): string {
  return [...word].map((c) => (/[a-z]/.test(c) ? `[${c}${c.toUpperCase()}]` : c)).join('');
}
