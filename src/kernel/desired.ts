/**
 * The contract between planning (pure, src/policy/plan.ts) and applying
 * (src/kernel, the only code that touches the kernel): what the data plane
 * should hold, with no slot numbers and nothing read from the kernel.
 */

export type Direction = 'ingress' | 'egress';
export type Protocol = 'tcp' | 'udp';
export type Side = 'local' | 'remote';
/** What a bucket does over its rate: police (drop), monitor (count), shape (queue in an HTB class; egress only). */
export type Mode = 'police' | 'monitor' | 'shape';

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
  /** shape: queueing delay past which ECT packets are marked CE; police: band past the burst where they are; 0 = never. */
  ecnNs: number;
  /** shape: queueing delay past which packets are dropped (0 for other modes). */
  horizonNs: number;
  /** Packet-rate limit: ns a packet costs (1e9 / pps) and the depth; 0 = none. */
  pktCostNs: number;
  pktBurstNs: number;
  /** New-connection limit (TCP SYN on ingress): ns a connection costs and the depth; 0 = none. */
  synCostNs: number;
  synBurstNs: number;
  /** Per-client limits, each client policed in buckets of its own. */
  client?: DesiredClientLimit;
}

/** The limits every client of a bucket gets (0 = none for each kind). */
export interface DesiredClientLimit {
  rateBps: number;
  burstNs: number;
  /** Band past the burst where ECN-capable packets are marked instead of dropped. */
  ecnNs: number;
  pktCostNs: number;
  pktBurstNs: number;
  synCostNs: number;
  synBurstNs: number;
  /** Leading bits of an IPv6 address that name one client. */
  ipv6Prefix: number;
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
  /** The profile has side: remote rules in that direction (else the program skips that lookup). */
  remote: { ingress: boolean; egress: boolean };
  /** Keys of the shaped buckets whose HTB classes this interface's egress needs. */
  shaped: string[];
  /** Replace a root qdisc another tool configured (else shaping there is refused). */
  replaceQdisc: boolean;
  /** Count traffic no rule matched per port (ps_unmatched). */
  countUnmatched: boolean;
}

/** Everything the data plane should enforce. */
export interface DesiredState {
  buckets: DesiredBucket[];
  ports: DesiredPortRange[];
  interfaces: DesiredInterface[];
}
