/**
 * Every key of the policy file, defined once: type, allowed values, pattern,
 * default and description. The validator's key, type and enum checks and the
 * published JSON Schema (docs/policy.schema.json) are both derived from it;
 * after a change, regenerate the file with
 * `npx vitest run test/unit/policy/schema.test.ts -u`.
 */
import { DEFAULT_BURST, DURATION_UNITS, RATE_UNITS, SIZE_UNITS } from './units.js';

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
  /** Strings read by the units module; its parser checks them, the schema gets a pattern from its units. */
  units?: 'rate' | 'burst';
  /** Added to type, pattern and missing-key errors: how to write a correct value. */
  hint?: string;
  /** Children of an object. */
  keys?: Readonly<Record<string, KeySpec>>;
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
      '60 s of traffic and at least 3028 bytes (2 full-size frames). The default, and a burst from ' +
      'defaults, are raised to 3028 bytes at low rates.',
    hint: 'write a size such as "64kb" or a time such as "10ms"',
  },
  mode: {
    type: 'string',
    enum: ['enforce', 'monitor'],
    default: 'enforce',
    description: '"enforce" drops traffic over the limit; "monitor" only counts what would be dropped.',
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
    interfaces: {
      type: 'array',
      minItems: 1,
      description: 'Interfaces to attach to. A missing interface is a warning: the agent attaches when it appears.',
      hint: 'list at least one interface, e.g. "- name: eth0"',
      items: {
        type: 'object',
        description: 'One interface and the hooks to attach on it.',
        required: ['name'],
        keys: {
          name: INTERFACE_NAME,
          ingress: { type: 'boolean', default: true, description: 'Attach on tc ingress (traffic arriving).' },
          egress: { type: 'boolean', default: true, description: 'Attach on tc egress (traffic leaving).' },
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
function unitsPattern(kind: 'rate' | 'burst'): string {
  const units = kind === 'rate' ? Object.keys(RATE_UNITS) : [...Object.keys(SIZE_UNITS), ...Object.keys(DURATION_UNITS)];
  // Longest first, so that an alternation engine never stops at a prefix ("m" of "mbit").
  const alternatives = [...new Set(units)].sort((a, b) => b.length - a.length || (a < b ? -1 : 1)).map(anyCase);
  const quantity = `\\s*[0-9]+(\\.[0-9]+)?\\s*(${alternatives.join('|')})\\s*`;
  return kind === 'rate' ? `^(${quantity}|\\s*${anyCase('unlimited')}\\s*)$` : `^${quantity}$`;
}

function anyCase(word: string): string {
  return [...word].map((c) => (/[a-z]/.test(c) ? `[${c}${c.toUpperCase()}]` : c)).join('');
}
