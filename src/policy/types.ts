/**
 * A validated policy: every default applied, every unit converted. Planning
 * (plan.ts) and the rest of the agent read this, never the YAML.
 */
import type { Mode, Side } from '../kernel/desired.js';

/** A rule's protocol as written: "any" is tcp and udp sharing one bucket. */
export type RuleProtocol = 'tcp' | 'udp' | 'any';
/** A rule's direction as written: "both" is one bucket per direction. */
export type RuleDirection = 'ingress' | 'egress' | 'both';

/** An interface to attach to and the hooks to attach on. */
export interface PolicyInterface {
  name: string;
  ingress: boolean;
  egress: boolean;
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
  /** Bucket depth in ns of transmission at rateBps; 0 when unlimited. */
  burstNs: number;
  mode: Mode;
  /** Interfaces the rule is restricted to; undefined = every interface of the policy. */
  interfaces?: string[];
  /** One bucket per port of the range instead of one for the whole range. */
  perPort: boolean;
  /** Line of the rule in the policy file, for messages. */
  line: number;
}

/** A policy that passed validation. */
export interface ValidPolicy {
  pinDir: string;
  interfaces: PolicyInterface[];
  api: ApiSettings;
  metrics: MetricsSettings;
  rules: PolicyRule[];
}

/** What validation may ask of the running system; injected so that validation needs no kernel. */
export interface PolicyEnv {
  interfaceExists(name: string): boolean;
}
