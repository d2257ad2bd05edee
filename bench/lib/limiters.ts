/**
 * The limiters compared, behind one interface: set up a limit on one port of
 * the sender's traffic, tear it down again. Each says what it counts, so
 * that its ratios can be read against the right ideal.
 */
import { nsExec, run } from '../../test/helpers/net.js';
import { desiredFrom } from '../../test/helpers/dataplane.js';
import { attachAt, clearRules, detachFrom, ends, setRules, type BenchContext } from './context.js';
import { ControlledDevice, planRules, type Device } from './controlled.js';
import { nftFile, tempFile } from './host.js';

/** A limit on one port of the traffic B sends to A. */
export interface LimitSpec {
  protocol: 'tcp' | 'udp';
  port: number;
  rateBps: number;
  /** Bucket depth in ns of transmission at the rate (converted to bytes where a tool wants bytes). */
  burstNs: number;
}

/** One way to limit a port. */
export interface Limiter {
  id: string;
  /** Where and how, for the report. */
  description: string;
  /** What one packet costs against the limit. */
  counts: string;
  /** Set for shapers, whose bucket is their own (they queue instead of dropping): the depth used whatever is asked. */
  fixedBurstNs?: number;
  /** Bytes the limiter charges for one UDP datagram whose frame is `wireBytes` long. */
  chargedUdpBytes(wireBytes: number): number;
  setup(spec: LimitSpec): Promise<void>;
  teardown(): Promise<void>;
}

const ETH_HLEN = 14;
const bytesOf = (s: LimitSpec) => Math.round((s.rateBps * s.burstNs) / 8e9);
/** Shapers queue instead of dropping at once; their bucket is 10 ms at the rate, at least two full frames. */
const SHAPER_BURST_NS = 10_000_000;
const shaperBurstBytes = (rateBps: number) => Math.max(3028, Math.round((rateBps * SHAPER_BURST_NS) / 8e9));

/** portshaper policing on B's egress, local (source) port. */
export function portshaperLimiter(ctx: BenchContext): Limiter {
  const { sender } = ends(ctx.topo);
  return {
    id: 'portshaper police',
    description: 'portshaper, mode: police, tc clsact egress of the sender, local port',
    counts: 'wire bytes: skb->len at tc (Ethernet header included) plus the headers of the other segments of a GSO skb',
    chargedUdpBytes: (wire) => wire,
    async setup(s) {
      setRules(ctx.dp, desiredFrom([{ name: 'bench', port: s.port, protocol: s.protocol, direction: 'egress', rateBps: s.rateBps, burstNs: s.burstNs }]));
      attachAt(ctx.dp, sender, { ingress: false, egress: true });
    },
    async teardown() {
      detachFrom(ctx.dp, sender);
      clearRules(ctx.dp);
    },
  };
}

/**
 * portshaper shaping on B's egress, local port, through the controller as the
 * agent applies a policy: HTB root 5053: with a class for the rule, the
 * program classifies the port into it; ECN delay and horizon at their
 * defaults (2 ms, 50 ms).
 */
export function portshaperShapeLimiter(ctx: BenchContext): Limiter {
  const { sender } = ends(ctx.topo);
  const device = new ControlledDevice(ctx.dp, sender);
  return {
    id: 'portshaper shape',
    description: "portshaper, mode: shape, tc clsact egress of the sender sets skb->priority to the rule's class under our HTB root",
    counts: 'qdisc_pkt_len in its HTB class (wire bytes, as HTB); the program charges its virtual queue the same wire bytes',
    chargedUdpBytes: (wire) => wire,
    async setup(s) {
      device.enforce(planRules(sender.ifname, [shapeRule('bench', s)]));
    },
    async teardown() {
      device.release();
    },
  };
}

/** A policy rule line shaping one port of a limit spec (egress, local port unless said). */
export function shapeRule(name: string, s: LimitSpec, extra = ''): string {
  return `{ name: ${name}, port: ${s.port}, protocol: ${s.protocol}, direction: egress, rate: ${s.rateBps}bit, burst: ${s.burstNs / 1e6}ms, mode: shape${extra} }`;
}

/** nftables `limit rate over … bytes/second` on a netdev hook: egress of B, or ingress of A (remote port). */
export function nftLimiter(ctx: BenchContext, hook: 'egress' | 'ingress'): Limiter {
  const { sender, receiver } = ends(ctx.topo);
  const end = hook === 'egress' ? sender : receiver;
  const table = `psbench_${hook}`;
  return {
    id: `nft-${hook}`,
    description:
      hook === 'egress'
        ? 'nftables limit, netdev egress of the sender, source port'
        : 'nftables limit, netdev ingress of the receiver, source (remote) port',
    counts:
      hook === 'egress'
        ? 'skb->len at netdev egress: the frame with its Ethernet header, one set of headers per GSO skb'
        : 'skb->len at netdev ingress: the IP packet (Ethernet header already pulled), one set of headers per GRO skb',
    chargedUdpBytes: (wire) => (hook === 'egress' ? wire : wire - ETH_HLEN),
    async setup(s) {
      const text = [
        `table netdev ${table} {`,
        `  chain police {`,
        `    type filter hook ${hook} device "${end.ifname}" priority 0;`,
        `    ${s.protocol} sport ${s.port} limit rate over ${Math.round(s.rateBps / 8)} bytes/second burst ${bytesOf(s)} bytes drop`,
        '  }',
        '}',
        '',
      ].join('\n');
      await nftFile(end.ns, tempFile(`${table}.nft`, text));
    },
    async teardown() {
      await nsExec(end.ns, ['nft', 'delete', 'table', 'netdev', table]);
    },
  };
}

/** HTB on B's root, one class at the rate, a u32 filter sending the port there; all else unshaped. */
export function htbLimiter(ctx: BenchContext): Limiter {
  const { sender } = ends(ctx.topo);
  return htbOn(sender, 'sport');
}

/**
 * HTB as root of a device: a class at the rate (10 ms burst, HTB's default
 * pfifo leaf) that a u32 filter on the source or destination port selects,
 * and a 100 Gbit/s default class for everything else.
 */
export function htbOn(device: Device, match: 'sport' | 'dport'): Limiter {
  const tc = (...args: string[]) => run('tc', ['-n', device.ns, ...args]);
  return {
    id: 'htb',
    description: `HTB root qdisc of the ${match === 'sport' ? 'sender' : 'router'}, u32 filter on the ${match === 'sport' ? 'source' : 'destination'} port to a class at the rate (10 ms burst)`,
    counts: 'qdisc_pkt_len: skb->len with the Ethernet header plus the headers of the other GSO segments (wire bytes)',
    fixedBurstNs: SHAPER_BURST_NS,
    chargedUdpBytes: (wire) => wire,
    async setup(s) {
      const burst = String(shaperBurstBytes(s.rateBps));
      await tc('qdisc', 'add', 'dev', device.ifname, 'root', 'handle', '1:', 'htb', 'default', '20');
      await tc('class', 'add', 'dev', device.ifname, 'parent', '1:', 'classid', '1:10', 'htb', 'rate', `${s.rateBps}bit`, 'ceil', `${s.rateBps}bit`, 'burst', burst, 'cburst', burst);
      await tc('class', 'add', 'dev', device.ifname, 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '100gbit');
      const proto = s.protocol === 'tcp' ? '6' : '17';
      await tc('filter', 'add', 'dev', device.ifname, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32', 'match', 'ip', 'protocol', proto, '0xff', 'match', 'ip', match, String(s.port), '0xffff', 'flowid', '1:10');
    },
    async teardown() {
      await tc('qdisc', 'del', 'dev', device.ifname, 'root');
    },
  };
}

/**
 * TBF on B's root. TBF has no classifier and this kernel has no prio qdisc,
 * so it shapes the whole device; the test port is the only traffic on it.
 */
export function tbfLimiter(ctx: BenchContext): Limiter {
  const { sender } = ends(ctx.topo);
  const tc = (...args: string[]) => run('tc', ['-n', sender.ns, ...args]);
  return {
    id: 'tbf',
    description: 'TBF root qdisc of the sender (whole device: no prio qdisc here to select the port), 10 ms burst, 50 ms queue',
    counts: 'qdisc_pkt_len (wire bytes, as HTB)',
    fixedBurstNs: SHAPER_BURST_NS,
    chargedUdpBytes: (wire) => wire,
    async setup(s) {
      await tc('qdisc', 'add', 'dev', sender.ifname, 'root', 'tbf', 'rate', `${s.rateBps}bit`, 'burst', String(shaperBurstBytes(s.rateBps)), 'latency', '50ms');
    },
    async teardown() {
      await tc('qdisc', 'del', 'dev', sender.ifname, 'root');
    },
  };
}

/** Every limiter of the accuracy section. */
export function allLimiters(ctx: BenchContext): Limiter[] {
  return [portshaperLimiter(ctx), portshaperShapeLimiter(ctx), nftLimiter(ctx, 'egress'), nftLimiter(ctx, 'ingress'), htbLimiter(ctx), tbfLimiter(ctx)];
}
