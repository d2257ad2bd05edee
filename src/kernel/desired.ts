/**
 * The contract between planning (pure, src/policy/plan.ts) and applying
 * (src/kernel, the only code that touches the kernel): what the data plane
 * should hold, with no slot numbers and nothing read from the kernel.
 */

export type Direction = 'ingress' | 'egress';
export type Protocol = 'tcp' | 'udp';
export type Side = 'local' | 'remote';
export type Mode = 'enforce' | 'monitor';

/** One token bucket. A rule has one per direction (and per port for a per-port range). */
export interface DesiredBucket {
  /** Stable identity, kept across restarts: `${rule}/${direction}` or `${rule}/${direction}/${port}`. */
  key: string;
  /** Name of the rule the bucket belongs to. */
  rule: string;
  direction: Direction;
  /** Set for the buckets of a per-port range. */
  port?: number;
  /** Bits per second of wire bytes; 0 = unlimited (count only). */
  rateBps: number;
  /** Bucket depth in nanoseconds of transmission at rateBps. */
  burstNs: number;
  mode: Mode;
}

/** Ports [from, to] of one (profile, direction, protocol, side) that lead to buckets. */
export interface DesiredPortRange {
  profile: number;
  direction: Direction;
  protocol: Protocol;
  side: Side;
  from: number;
  to: number;
  /** Key of the shared bucket; with perPort, port p uses bucket `${bucket}/${p}`. */
  bucket: string;
  perPort: boolean;
}

/** An interface to attach to, and the rule profile its traffic is judged by. */
export interface DesiredInterface {
  name: string;
  profile: number;
  ingress: boolean;
  egress: boolean;
}

/** Everything the data plane should enforce. */
export interface DesiredState {
  buckets: DesiredBucket[];
  ports: DesiredPortRange[];
  interfaces: DesiredInterface[];
}
