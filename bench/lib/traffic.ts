/**
 * The traffic every section offers, built on the test helpers' iperf3
 * wrapper. The server in namespace B sends (-R) to the client in A, so the
 * limited direction is B's egress (and A's ingress), as for a local service.
 */
import type { Topology } from '../../test/helpers/net.js';
import { runIperf, tcpGoodputBitsPerSecond, udpWireBitsPerSecond, udpWireBytes, type IperfResult } from '../../test/helpers/traffic.js';

/** The service port every limiter is configured for. */
export const TEST_PORT = 5201;
/** UDP payload of the accuracy runs: 1442 bytes on the wire. */
export const UDP_LEN = 1400;
/** Payload of the small-packet runs: 64 + 8 + 20 + 14 = 106 bytes on the wire. */
export const SMALL_LEN = 64;

/** TCP goodput (payload bits/s) over a run and its parts. */
export interface TcpOutcome {
  goodputBps: number;
  firstSecondBps: number;
  /** Every interval after the first. */
  steadyBps: number;
  retransmits: number;
  /** Receiver's payload rate per reporting second. */
  perSecondBps: number[];
  /** TCP's own smoothed RTT at the sender, mean over the run (ms; mean over the streams). */
  rttMs: number;
  /** Largest smoothed RTT the sender saw (ms). */
  maxRttMs: number;
  /** Payload bytes each stream delivered (receiver side). */
  streamBytes: number[];
}

/** UDP delivered in wire bits/s, what was offered, and loss. */
export interface UdpOutcome {
  deliveredWireBps: number;
  offeredWireBps: number;
  loss: number;
  receivedPps: number;
  /** Datagrams the sender sent (passed through the sender's egress hook). */
  sentPackets: number;
  seconds: number;
}

const rateOf = (bytes: number, seconds: number) => (seconds > 0 ? (bytes * 8) / seconds : NaN);

/** Which TCP run: by default one stream that the server in B sends to the client in A. */
export interface TcpRunOptions {
  port?: number;
  parallel?: number;
}

/** TCP runs the server in B sends (-R) for `seconds`, reported each second. */
export async function tcpRun(topo: Topology, seconds: number, opts: TcpRunOptions = {}): Promise<TcpOutcome> {
  const r = await runIperf({
    nsClient: topo.nsA,
    nsServer: topo.nsB,
    serverIp: topo.ipB,
    port: opts.port ?? TEST_PORT,
    reverse: true,
    seconds,
    intervalSeconds: 1,
    ...(opts.parallel ? { parallel: opts.parallel } : {}),
  });
  return tcpOutcome(r);
}

type StreamEnd = { sender?: { mean_rtt?: number; max_rtt?: number }; receiver?: { bytes?: number } };
const streamsOf = (json: IperfResult['raw'] | undefined) => ((json?.end as { streams?: StreamEnd[] } | undefined)?.streams ?? []);

/** Goodput, its parts, retransmits and RTT of any TCP iperf3 result. */
export function tcpOutcome(r: IperfResult): TcpOutcome {
  const [first, ...rest] = r.intervals;
  const restBytes = rest.reduce((a, i) => a + i.bytes, 0);
  const restSeconds = rest.reduce((a, i) => a + (i.end - i.start), 0);
  // Only the sending side knows the RTT: the server's JSON (--get-server-output) for -R, else the client's.
  const senders = streamsOf(r.reverse ? r.raw.server_output_json : r.raw).map((s) => s.sender ?? {});
  const receivers = streamsOf(r.reverse ? r.raw : r.raw.server_output_json).map((s) => s.receiver?.bytes ?? 0);
  const rtts = senders.map((s) => s.mean_rtt).filter((v): v is number => v !== undefined && v > 0);
  return {
    goodputBps: tcpGoodputBitsPerSecond(r),
    firstSecondBps: first ? rateOf(first.bytes, first.end - first.start) : NaN,
    steadyBps: rateOf(restBytes, restSeconds),
    retransmits: r.retransmits ?? 0,
    perSecondBps: r.intervals.map((i) => rateOf(i.bytes, i.end - i.start)),
    // iperf3 reports microseconds.
    rttMs: rtts.length ? rtts.reduce((a, b) => a + b, 0) / rtts.length / 1000 : NaN,
    maxRttMs: senders.length ? Math.max(...senders.map((s) => s.max_rtt ?? 0)) / 1000 : NaN,
    streamBytes: receivers,
  };
}

/** Jain's fairness index of per-flow throughputs: 1 = equal shares, 1/n = one flow takes everything. */
export function jainIndex(xs: readonly number[]): number {
  const sum = xs.reduce((a, b) => a + b, 0);
  const squares = xs.reduce((a, b) => a + b * b, 0);
  return squares > 0 ? (sum * sum) / (xs.length * squares) : NaN;
}

/** One UDP stream from B at `bitrate` (iperf3 counts payload; 0 = as fast as it can). */
export async function udpRun(topo: Topology, seconds: number, bitrate: number, length: number, port = TEST_PORT): Promise<UdpOutcome> {
  const r: IperfResult = await runIperf({
    nsClient: topo.nsA,
    nsServer: topo.nsB,
    serverIp: topo.ipB,
    port,
    udp: true,
    reverse: true,
    bitrate,
    length,
    seconds,
  });
  const sentPackets = Math.round(r.sentBytes / length);
  const lost = r.lostPackets ?? 0;
  const received = r.receivedPackets ?? 0;
  return {
    deliveredWireBps: udpWireBitsPerSecond(r, length),
    offeredWireBps: (sentPackets * udpWireBytes(length) * 8) / r.seconds,
    loss: received + lost > 0 ? lost / (received + lost) : NaN,
    receivedPps: received / r.seconds,
    sentPackets,
    seconds: r.seconds,
  };
}
