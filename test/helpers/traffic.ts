/**
 * iperf3 (3.12, single-threaded, `--json`) traffic runs between namespaces,
 * reported from the receiver's point of view: a shaper is judged by what got
 * through, not by what the sender offered.
 */
import { nsExec, startProcess, type RunningProcess } from './net.js';

/** Options for startIperfServer. */
export interface IperfServerOptions {
  /** Address to bind (`-B`); default all addresses of the namespace. */
  bind?: string;
  /** Hard kill after this long. Default 60 s. */
  timeoutMs?: number;
}

/** A one-off iperf3 server (`-s -1`) running in a namespace. */
export interface IperfServer {
  readonly ns: string;
  readonly port: number;
  readonly process: RunningProcess;
  /** Kill the server if still running; resolves when it has exited. */
  stop(): Promise<void>;
}

/** Start `iperf3 -s -1 -p PORT --json` in ns and wait until it listens. */
export async function startIperfServer(ns: string, port: number, opts: IperfServerOptions = {}): Promise<IperfServer> {
  const args = ['netns', 'exec', ns, 'iperf3', '-s', '-1', '-p', String(port), '--json'];
  if (opts.bind) args.push('-B', opts.bind);
  const proc = startProcess('ip', args, { ns, timeoutMs: opts.timeoutMs ?? 60_000 });
  const server: IperfServer = {
    ns,
    port,
    process: proc,
    async stop() {
      await proc.stop(1000);
    },
  };
  // With --json the server prints nothing until the test ends, so readiness
  // is polled from the socket table instead of stdout.
  const deadline = Date.now() + 5000;
  for (;;) {
    const ss = await nsExec(ns, ['ss', '-Hltn', `sport = :${port}`], { timeoutMs: 5000 });
    if (ss.stdout.trim()) return server;
    const exited = await Promise.race([proc.result, sleep(50).then(() => undefined)]);
    if (exited) throw new Error(`iperf3 server in ${ns} exited before listening: ${exited.stderr || exited.stdout}`);
    if (Date.now() > deadline) {
      await server.stop();
      throw new Error(`iperf3 server in ${ns} not listening on ${port} after 5 s`);
    }
  }
}

/** Options for runIperf. */
export interface IperfOptions {
  /** Namespace the client runs in. */
  nsClient: string;
  /** Server address (IPv4 or IPv6). */
  serverIp: string;
  port: number;
  /** If set, a one-off server is started (and stopped) in this namespace. */
  nsServer?: string;
  udp?: boolean;
  /** Target bitrate in bits/s (`-b`); iperf3's UDP default is only 1 Mbit/s. */
  bitrate?: number;
  /** Measured duration in whole seconds (`-t`; iperf3 3.12 parses it as an integer). */
  seconds: number;
  /** Server sends, client receives (`-R`). */
  reverse?: boolean;
  /** Write size; for UDP the datagram payload in bytes (`-l`). */
  length?: number;
  /** Parallel streams (`-P`); still one thread in iperf3 3.12. */
  parallel?: number;
  /** Client source address (iperf3 -B), e.g. a second address of the sender. */
  bind?: string;
  /** Pin the client to this CPU (`taskset -c N`). */
  cpu?: number;
  /** Whole seconds of warm-up excluded from all numbers (`-O`; 3.12 has no fractions). */
  omitSeconds?: number;
  /** Reporting interval in seconds (`-i`, fractions allowed). */
  intervalSeconds?: number;
  /** Hard kill of client (and server) after this; default (omit + seconds) + 15 s. */
  timeoutMs?: number;
}

/** One receiver-side reporting interval. */
export interface IperfInterval {
  start: number;
  end: number;
  bytes: number;
  /** UDP datagrams received in the interval (UDP only). */
  packets: number | undefined;
}

/** iperf3 outcome from the receiver's point of view. */
export interface IperfResult {
  protocol: 'tcp' | 'udp';
  family: 4 | 6;
  /** Write size / UDP payload bytes actually used (iperf3's blksize). */
  length: number;
  reverse: boolean;
  /** Receiver's measured duration. */
  seconds: number;
  /** Payload bytes received. */
  receivedBytes: number;
  /** UDP datagrams received (sent sequence space minus loss); undefined for TCP. */
  receivedPackets: number | undefined;
  /** UDP datagrams lost; undefined for TCP. */
  lostPackets: number | undefined;
  /** Payload bytes sent. */
  sentBytes: number;
  /** TCP retransmissions reported by the sender; undefined for UDP. */
  retransmits: number | undefined;
  /** Receiver's per-interval numbers, omitted (warm-up) intervals excluded. */
  intervals: IperfInterval[];
  /** The client's full JSON (with server_output_json). */
  raw: IperfJson;
}

interface IperfSum {
  start: number;
  end: number;
  seconds: number;
  bytes: number;
  bits_per_second: number;
  retransmits?: number;
  packets?: number;
  lost_packets?: number;
  omitted?: boolean;
}

/** The parts of iperf3 3.12's JSON output this module reads. */
export interface IperfJson {
  error?: string;
  start?: { test_start?: { protocol?: string; blksize?: number; reverse?: number } };
  intervals?: Array<{ sum: IperfSum }>;
  end?: { sum?: IperfSum; sum_sent?: IperfSum; sum_received?: IperfSum };
  server_output_json?: IperfJson;
}

/** Run an iperf3 client (optionally with its own one-off server) and parse the result. */
export async function runIperf(o: IperfOptions): Promise<IperfResult> {
  if (!Number.isInteger(o.seconds) || o.seconds < 1) throw new Error(`seconds must be a whole number >= 1, got ${o.seconds}`);
  const omit = o.omitSeconds ?? 0;
  if (!Number.isInteger(omit) || omit < 0) throw new Error(`omitSeconds must be a whole number (iperf3 3.12), got ${omit}`);
  const timeoutMs = o.timeoutMs ?? (omit + o.seconds) * 1000 + 15_000;

  const server = o.nsServer ? await startIperfServer(o.nsServer, o.port, { timeoutMs: timeoutMs + 5000 }) : undefined;
  try {
    const argv = ['iperf3', '-c', o.serverIp, '-p', String(o.port), '--json', '--get-server-output', '-t', String(o.seconds)];
    if (o.udp) argv.push('-u');
    if (o.bitrate !== undefined) argv.push('-b', String(Math.round(o.bitrate)));
    if (o.length !== undefined) argv.push('-l', String(o.length));
    if (o.reverse) argv.push('-R');
    if (o.parallel !== undefined) argv.push('-P', String(o.parallel));
    if (o.bind !== undefined) argv.push('-B', o.bind);
    if (omit > 0) argv.push('-O', String(omit));
    if (o.intervalSeconds !== undefined) argv.push('-i', String(o.intervalSeconds));
    const full = o.cpu !== undefined ? ['taskset', '-c', String(o.cpu), ...argv] : argv;
    // iperf3 reports its own errors inside the JSON (and exits 1), so parse first.
    const r = await nsExec(o.nsClient, full, { timeoutMs, allowFailure: true });
    let json: IperfJson;
    try {
      json = JSON.parse(r.stdout) as IperfJson;
    } catch {
      throw new Error(`iperf3 client in ${o.nsClient} gave no JSON (exit ${r.code}${r.timedOut ? ', timed out' : ''}): ${r.stderr || r.stdout}`);
    }
    if (json.error) throw new Error(`iperf3 client in ${o.nsClient}: ${json.error}`);
    if (r.code !== 0) throw new Error(`iperf3 client in ${o.nsClient} exited ${r.code}: ${r.stderr}`);
    return parseIperf(json, o.serverIp.includes(':') ? 6 : 4);
  } finally {
    if (server) {
      // A -1 server exits on its own right after the test; only kill a stuck one.
      await Promise.race([server.process.result, sleep(2000)]);
      await server.stop();
    }
  }
}

/** Turn an iperf3 3.12 client JSON into a receiver-side IperfResult. */
export function parseIperf(json: IperfJson, family: 4 | 6): IperfResult {
  const ts = json.start?.test_start;
  const udp = ts?.protocol === 'UDP';
  const reverse = ts?.reverse === 1;
  const received = json.end?.sum_received;
  const sent = json.end?.sum_sent;
  if (!received || !sent) throw new Error('iperf3 JSON lacks end.sum_received/sum_sent');
  // The client's sum_received is the receiver's own report in both
  // directions (the server sends its numbers back at the end of a test).
  // Per-interval data exists only in the receiver's JSON: the client's own
  // for -R, else the server's, fetched with --get-server-output.
  const receiverJson = reverse ? json : json.server_output_json;
  const intervals = (receiverJson?.intervals ?? [])
    .map((i) => i.sum)
    .filter((s) => !s.omitted)
    .map((s) => ({ start: s.start, end: s.end, bytes: s.bytes, packets: udp ? (s.packets ?? 0) : undefined }));
  const lost = udp ? (received.lost_packets ?? 0) : undefined;
  return {
    protocol: udp ? 'udp' : 'tcp',
    family,
    length: ts?.blksize ?? 0,
    reverse,
    seconds: received.seconds,
    receivedBytes: received.bytes,
    receivedPackets: udp ? (received.packets ?? 0) - (lost ?? 0) : undefined,
    lostPackets: lost,
    sentBytes: sent.bytes,
    retransmits: udp ? undefined : (sent.retransmits ?? 0),
    intervals,
    raw: json,
  };
}

/** Bytes a UDP datagram of this payload occupies at L2 as tc sees it (no FCS/preamble). */
export function udpWireBytes(length: number, family: 4 | 6 = 4): number {
  return length + 8 + (family === 6 ? 40 : 20) + 14;
}

/** Received UDP rate on the wire: packets × (payload + UDP + IP + Ethernet) × 8 / seconds. */
export function udpWireBitsPerSecond(result: IperfResult, length: number = result.length): number {
  if (result.receivedPackets === undefined) throw new Error('udpWireBitsPerSecond needs a UDP result');
  return (result.receivedPackets * udpWireBytes(length, result.family) * 8) / result.seconds;
}

/** Received TCP payload rate in bits/s. */
export function tcpGoodputBitsPerSecond(result: IperfResult): number {
  return (result.receivedBytes * 8) / result.seconds;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
