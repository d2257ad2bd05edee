/**
 * A validated policy: every default applied, every unit converted. Planning
 * (plan.ts) and the rest of the agent read this, never the YAML.
 */
import type { Side } from '../kernel/desired.js';

/** A rule's protocol as written: "any" is tcp and udp sharing one bucket. */
export type RuleProtocol = 'tcp' | 'udp' | 'any';
/** A rule's direction as written: "both" is one bucket per direction. */
export type RuleDirection = 'ingress' | 'egress' | 'both';
/** A rule's mode ("enforce", the 0.1 name, is read as police). shape polices on ingress, where there is no queue. */
export type RuleMode = 'shape' | 'police' | 'monitor';

/** An interface to attach to and the hooks to attach on. */
export interface PolicyInterface {
  name: string;
  ingress: boolean;
  egress: boolean;
  /** qdisc: replace — portshaper may replace a root qdisc another tool configured. */
  replaceQdisc: boolean;
  /** Count unmatched traffic per port (ps_unmatched). */
  countUnmatched: boolean;
}

/** Settings of the REST API. */
export interface ApiSettings {
  /** Host without brackets ("::1") and port. */
  listen: { host: string; port: number };
  tokenFile: string;
  readsOpen: boolean;
  tls?: { cert: string; key: string };
}

/** Settings of /metrics and of its own listener. */
export interface MetricsSettings {
  /** The metrics-only listener; undefined = off. */
  listen?: { host: string; port: number };
  /** Rules with per-rule series. */
  maxRules: number;
}

/** One rule with its defaults applied. */
export interface PolicyRule {
  name: string;
  /** Ports [from, to]; a single port has from === to. */
  from: number;
  to: number;
  protocol: RuleProtocol;
  direction: RuleDirection;
  side: Side;
  /** Bits per second; 0 = unlimited (count only). */
  rateBps: number;
  /** Bucket depth in ns of transmission at rateBps for policed and monitored buckets; 0 when unlimited. */
  burstNs: number;
  /** Depth of shaped buckets: the same as burstNs when the policy sets a burst, else the shaping default. */
  shapeBurstNs: number;
  mode: RuleMode;
  /** ecn as written: ns, 0 for "off", undefined for the default of each mode. */
  ecnNs?: number;
  /** Queueing delay past which a shaped bucket drops (already raised to two 64 KiB packets at the rate). */
  horizonNs: number;
  /** Packets per second; undefined = no packet-rate limit. */
  pps?: number;
  /** New TCP connections per second on ingress; undefined = none. */
  connections?: number;
  /** Limits of each client (remote address or IPv6 prefix). */
  client?: ClientLimit;
  /** Interfaces the rule is restricted to; undefined = every interface of the policy. */
  interfaces?: string[];
  /** One bucket per port of the range instead of one for the whole range. */
  perPort: boolean;
  /**
   * Line of the rule in the policy file, for validation messages. After API
   * writes that add or remove lines above it, a rule keeps the line it was
   * validated at (nothing reads it after validation).
   */
  line: number;
}

/** Per-client limits of a rule, units converted. */
export interface ClientLimit {
  /** Bits per second of each client; 0 = no bit-rate limit. */
  rateBps: number;
  /** Depth of each client's buckets, in ns at rateBps (or of the packet/connection buckets). */
  burstNs: number;
  pps?: number;
  connections?: number;
  /** Leading bits of an IPv6 address that name one client. */
  ipv6Prefix: number;
}

/** A policy that passed validation. */
export interface ValidPolicy {
  pinDir: string;
  /** Entries of the per-client table (when the pins are created). */
  clientTable: number;
  interfaces: PolicyInterface[];
  api: ApiSettings;
  metrics: MetricsSettings;
  rules: PolicyRule[];
}

/** What validation may ask of the running system; injected so that validation needs no kernel. */
export interface PolicyEnv {
  interfaceExists(name: string): boolean;
}
