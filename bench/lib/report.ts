/**
 * The report: one Markdown file (a table per section, the targets of issues
 * 5, 9 and 10 checked against the numbers), the JSON with every sample's summary and the
 * load log, and SVG charts, all under bench/results/.
 */
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AccuracyResult } from '../sections/accuracy.js';
import type { AgentResult, AgentRun } from '../sections/agent.js';
import { TCP_WIRE_IDEAL } from '../sections/accuracy.js';
import type { ControlPlaneResult } from '../sections/controlplane.js';
import type { FairnessResult } from '../sections/fairness.js';
import type { ForwardedResult } from '../sections/forwarded.js';
import type { OverheadResult } from '../sections/overhead.js';
import type { MultiPortResult, PerPacketResult } from '../sections/perpacket.js';
import { BUSY_LIMITS, type LoadSample } from './load.js';
import type { Summary } from './stats.js';
import { lineChart } from './svg.js';
import { DEFAULT_ECN, DEFAULT_HORIZON, parseDuration } from '../../src/policy/units.js';

/** Everything one run produced. */
export interface BenchResults {
  started: string;
  finished: string;
  host: string;
  kernel: string;
  cpus: number;
  quick: boolean;
  reps: number;
  accuracy?: AccuracyResult;
  fairness?: FairnessResult;
  forwarded?: ForwardedResult;
  overhead?: OverheadResult;
  perpacket?: PerPacketResult;
  controlplane?: ControlPlaneResult;
  agent?: AgentResult;
  sectionErrors: Record<string, string>;
  /** Every measured run: raw value and load. */
  runs: { id: string; rep: number; load: LoadSample; value: unknown }[];
}

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'results');

// ---------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------

/** A summary with a number in it. */
const ok = (s: Summary | undefined): s is Summary => !!s && !s.refused && Number.isFinite(s.median);

/** "0.957 (0.955–0.958)", or why there is no number. */
function cell(s: Summary | undefined, digits = 3, scale = 1): string {
  if (!s) return '—';
  const f = (v: number) => (v * scale).toFixed(digits);
  // A busy run's value is shown in italics beside the refusal so the table is not blank, and never counts as a result.
  if (s.refused || !Number.isFinite(s.median)) return `n/a (${s.refused ?? 'no value'}${s.busyMedian !== undefined ? `; busy runs: *${f(s.busyMedian)}*` : ''})`;
  const spread = s.used > 1 ? ` (${f(s.min)}–${f(s.max)})` : '';
  const partial = s.used < s.runs ? ` [${s.used}/${s.runs} runs]` : '';
  return `${f(s.median)}${spread}${partial}`;
}

const mbit = (bps: number) => `${bps / 1e6}`;
const table = (head: string[], rows: string[][]) =>
  [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');

// ---------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------

/** One target of an issue and what this run says about it. */
export interface TargetCheck {
  issue: number;
  target: string;
  measured: string;
  /** "reported": the issue asks for the number, with no bar to pass. */
  verdict: 'met' | 'not met' | 'not measured' | 'reported';
}

function verdict(pass: boolean | undefined): TargetCheck['verdict'] {
  return pass === undefined ? 'not measured' : pass ? 'met' : 'not met';
}

/** Evaluate the targets of issues 5, 9 and 10 on this run's numbers (medians of quiet runs). */
export function checkTargets(r: BenchResults): TargetCheck[] {
  return [
    ...issue5Targets(r).map((t) => ({ issue: 5, ...t })),
    ...issue9Targets(r).map((t) => ({ issue: 9, ...t })),
    ...issue10Targets(r.agent, r.controlplane).map((t) => ({ issue: 10, ...t })),
  ];
}

const POLICE = 'portshaper police';
const SHAPE = 'portshaper shape';

/** Issue 5 (the policer): its targets, measured on the policer's rows. */
function issue5Targets(r: BenchResults): Omit<TargetCheck, 'issue'>[] {
  const out: Omit<TargetCheck, 'issue'>[] = [];
  const acc = r.accuracy;
  for (const rate of [10e6, 100e6]) {
    const row = acc?.udp.find((u) => u.limiter === POLICE && u.rateBps === rate);
    const has = ok(row?.delivered);
    out.push({
      target: `UDP delivered/configured within ±1% of the wire-byte ideal at ${mbit(rate)} Mbit/s`,
      measured: row ? `${cell(row.delivered, 4)} (ideal ${row.ideal.toFixed(4)})` : 'not run',
      verdict: verdict(has ? Math.abs(row!.delivered.median / row!.ideal - 1) <= 0.01 : undefined),
    });
  }
  for (const rate of acc?.rates ?? []) {
    const ps = acc?.tcp.find((t) => t.limiter === POLICE && t.rateBps === rate);
    const htb = acc?.tcp.find((t) => t.limiter === 'htb' && t.rateBps === rate);
    const has = ok(ps?.whole) && ok(htb?.whole);
    out.push({
      target: `Policer: TCP goodput/configured at least as close to ${TCP_WIRE_IDEAL.toFixed(3)} as HTB's, ${mbit(rate)} Mbit/s (300 ms burst)`,
      measured: `portshaper ${cell(ps?.whole)}, HTB ${cell(htb?.whole)}`,
      verdict: verdict(has ? Math.abs(ps!.whole.median - TCP_WIRE_IDEAL) <= Math.abs(htb!.whole.median - TCP_WIRE_IDEAL) : undefined),
    });
    out.push({
      target: `Policer: TCP first second ≤ 1.05× configured, ${mbit(rate)} Mbit/s`,
      measured: `portshaper ${cell(ps?.firstSecond)}`,
      verdict: verdict(ok(ps?.firstSecond) ? ps!.firstSecond.median <= 1.05 : undefined),
    });
  }
  const pp = r.perpacket;
  const psRows = pp?.rows.filter((x) => x.system === POLICE) ?? [];
  const costs = psRows.map((x) => x.bpfNsPerPacket).filter(ok);
  const empty = pp?.emptyProgram.bpfNsPerPacket;
  if (pp) {
    const worst = costs.length ? Math.max(...costs.map((c) => c.median)) : NaN;
    out.push({
      target: 'Policer: per-packet cost ≤ empty program + 40 ns (every rule count)',
      measured: `portshaper ${psRows.map((x) => `${x.rules}: ${cell(x.bpfNsPerPacket, 1)}`).join('; ')} ns; empty ${cell(empty, 1)} ns`,
      verdict: verdict(costs.length === psRows.length && costs.length > 0 && ok(empty) ? worst <= empty.median + 40 : undefined),
    });
    const first = psRows[0]?.bpfNsPerPacket;
    const last = psRows[psRows.length - 1]?.bpfNsPerPacket;
    out.push({
      target: `Per-packet cost flat within 10% from ${psRows[0]?.rules ?? 1} to ${psRows[psRows.length - 1]?.rules ?? 65536} rules`,
      measured: ok(first) && ok(last) ? `${(last.median / first.median).toFixed(3)}× (${first.median.toFixed(1)} → ${last.median.toFixed(1)} ns)` : 'n/a',
      verdict: verdict(costs.length === psRows.length && costs.length > 0 ? Math.max(...costs.map((c) => c.median)) <= 1.1 * Math.min(...costs.map((c) => c.median)) : undefined),
    });
  }
  for (const row of r.overhead?.rows ?? []) {
    out.push({
      target: `Overhead when not limiting ≥ 0.97 of no program (no shaped rule): ${row.traffic}`,
      measured: cell(row.ratio),
      verdict: verdict(ok(row.ratio) ? row.ratio.median >= 0.97 : undefined),
    });
  }
  const cp = r.controlplane;
  const max = cp ? Math.max(...cp.counts) : 0;
  const apply = cp?.rows.find((x) => x.operation === 'portshaper policy file' && x.rules === max);
  const planApply = cp?.rows.find((x) => x.operation === 'portshaper plan+apply' && x.rules === max);
  const nft = cp?.rows.find((x) => x.operation === 'nft -f map' && x.rules === max);
  if (cp) {
    out.push({
      target: `Applying ${max.toLocaleString('en-US')} rules ≥ 2× faster than \`nft -f\` of an equivalent map (from the policy file)`,
      measured: `${cell(apply?.ms, 0)} ms vs ${cell(nft?.ms, 0)} ms: ${cell(apply?.vsNftMap, 3)} of nft's time`,
      verdict: verdict(ok(apply?.vsNftMap) ? apply!.vsNftMap.median <= 0.5 : undefined),
    });
    out.push({
      target: `(same, plan+apply of a validated policy)`,
      measured: `${cell(planApply?.ms, 0)} ms: ${cell(planApply?.vsNftMap, 3)} of nft's time`,
      verdict: verdict(ok(planApply?.vsNftMap) ? planApply!.vsNftMap.median <= 0.5 : undefined),
    });
  }
  return out;
}

/** Issue 9 (shaping): the numbers its closing note gives, and their bars. */
function issue9Targets(r: BenchResults): Omit<TargetCheck, 'issue'>[] {
  const out: Omit<TargetCheck, 'issue'>[] = [];
  const acc = r.accuracy;
  for (const rate of acc?.rates ?? []) {
    const at = (id: string) => acc?.tcp.find((t) => t.limiter === id && t.rateBps === rate);
    const shape = at(SHAPE);
    const htb = at('htb');
    const police = at(POLICE);
    out.push({
      target: `Shape: TCP goodput/configured at least as close to ${TCP_WIRE_IDEAL.toFixed(3)} as HTB's, ${mbit(rate)} Mbit/s`,
      measured: `shape ${cell(shape?.whole)}, HTB ${cell(htb?.whole)}, police ${cell(police?.whole)}`,
      verdict: verdict(ok(shape?.whole) && ok(htb?.whole) ? Math.abs(shape!.whole.median - TCP_WIRE_IDEAL) <= Math.abs(htb!.whole.median - TCP_WIRE_IDEAL) + 0.001 : undefined),
    });
    out.push({
      target: `Shape: TCP first second at the receiver ≤ 1.02× configured, ${mbit(rate)} Mbit/s`,
      measured: `shape ${cell(shape?.firstSecond)}, HTB ${cell(htb?.firstSecond)}, police ${cell(police?.firstSecond)}`,
      verdict: verdict(ok(shape?.firstSecond) ? shape!.firstSecond.median <= 1.02 : undefined),
    });
    out.push({
      target: `Shape: TCP retransmits no worse than HTB's, ${mbit(rate)} Mbit/s`,
      measured: `shape ${cell(shape?.retransmits, 0)}, HTB ${cell(htb?.retransmits, 0)}, police ${cell(police?.retransmits, 0)}`,
      verdict: verdict(ok(shape?.retransmits) && ok(htb?.retransmits) ? shape!.retransmits.median <= htb!.retransmits.median : undefined),
    });
  }
  const pp = r.perpacket;
  const empty = pp?.emptyProgram.bpfNsPerPacket;
  for (const system of [POLICE, SHAPE]) {
    for (const rules of [1, 65_536]) {
      const row = pp?.rows.find((x) => x.system === system && x.rules === rules);
      if (!pp) continue;
      const star = system === SHAPE && rules > 1 ? ' (the measured rule shaped, the others policing)' : '';
      out.push({
        target: `${system === SHAPE ? 'Shape' : 'Police'}: matched path ≤ empty program + 40 ns, ${rules.toLocaleString('en-US')} rule(s)${star}`,
        measured:
          `${cell(row?.bpfNsPerPacket, 1)} ns vs empty ${cell(empty, 1)} ns` +
          (ok(row?.bpfNsPerPacket) && ok(empty) ? `: +${(row!.bpfNsPerPacket.median - empty.median).toFixed(1)} ns` : ''),
        verdict: verdict(ok(row?.bpfNsPerPacket) && ok(empty) ? row!.bpfNsPerPacket.median <= empty.median + 40 : undefined),
      });
    }
  }
  const random = pp?.multiport?.rows.find((x) => x.ports === 'random' && x.rules > 1);
  const one = pp?.multiport?.rows.find((x) => x.ports === 'one' && x.rules === random?.rules);
  if (pp) {
    out.push({
      target: 'Multi-port workload (random remote ports, a bucket per port): cost over the empty program, against one port',
      measured: `random ports +${cell(random?.addedNs, 1)} ns, one port +${cell(one?.addedNs, 1)} ns`,
      verdict: ok(random?.addedNs) ? 'reported' : 'not measured',
    });
  }
  for (const row of r.overhead?.rows ?? []) {
    out.push({
      target: `Unshaped traffic on a device with a shaped rule (HTB root, direct queue) ≥ 0.97 of no program: ${row.traffic}`,
      measured: cell(row.shapedRatio),
      verdict: verdict(ok(row.shapedRatio) ? row.shapedRatio.median >= 0.97 : undefined),
    });
  }
  const fwd = r.forwarded;
  if (fwd) {
    const find = (limiter: string, ecn: boolean) => fwd.rows.find((x) => x.limiter === limiter && x.ecn === ecn);
    const plain = find(SHAPE, false);
    const ecn = find(SHAPE, true);
    out.push({
      target: `Forwarded, no ECN: the shaped flow's RTT bounded by the horizon (max RTT < ${FORWARDED_HORIZON_MS} + 5 ms)`,
      measured: `mean ${cell(plain?.rttMs, 2)} ms, max ${cell(plain?.maxRttMs, 2)} ms; HTB alone: mean ${cell(find('htb', false)?.rttMs, 2)} ms`,
      verdict: verdict(ok(plain?.maxRttMs) ? plain!.maxRttMs.median < FORWARDED_HORIZON_MS + 5 : undefined),
    });
    out.push({
      target: `Forwarded, ECN on both ends: mean RTT near the ${FORWARDED_ECN_MS} ms marking delay (< ${2 * FORWARDED_ECN_MS} ms)`,
      measured: `mean ${cell(ecn?.rttMs, 2)} ms, max ${cell(ecn?.maxRttMs, 2)} ms; HTB alone: mean ${cell(find('htb', true)?.rttMs, 2)} ms`,
      verdict: verdict(ok(ecn?.rttMs) ? ecn!.rttMs.median < 2 * FORWARDED_ECN_MS : undefined),
    });
  }
  const fair = r.fairness;
  if (fair) {
    const at = (id: string) => fair.rows.find((x) => x.limiter === id);
    out.push({
      target: `Fairness: Jain's index of ${fair.flows} TCP flows on one shaped port (${mbit(fair.rateBps)} Mbit/s)`,
      measured: `shape ${cell(at(SHAPE)?.jain)}, HTB ${cell(at('htb')?.jain)}, police ${cell(at(POLICE)?.jain)}`,
      verdict: ok(at(SHAPE)?.jain) ? 'reported' : 'not measured',
    });
  }
  return out;
}

/** The policy defaults the forwarded case runs with (src/policy/units.ts). */
const FORWARDED_HORIZON_MS = parseDuration(DEFAULT_HORIZON) / 1e6;
const FORWARDED_ECN_MS = parseDuration(DEFAULT_ECN) / 1e6;

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

function accuracySection(a: AccuracyResult, tcpChart: string): string {
  const parts = [
    '## 1. Accuracy: one port limited at ' + a.rates.map(mbit).join(', ') + ' Mbit/s',
    '',
    `The server in namespace B sends to the client in A over the veth pair; every limiter is set on B's side of the link ` +
      `(nftables also on A's ingress). TCP: one stream, ${a.tcpSeconds} s, goodput (payload) / configured rate. ` +
      `UDP: ${a.udpSeconds} s, 1400-byte payloads (1442-byte frames) offered at 2× the rate; delivered in wire bytes / configured. ` +
      'Cells: median (min–max) over the quiet runs.',
    '',
    'What each limiter counts against its rate:',
    '',
    table(['limiter', 'where', 'counts'], a.limiters.map((l) => [l.id, l.description, l.counts])),
    '',
    `TCP through a policer collapses unless the bucket is deeper than TCP's minimum RTO (200 ms): portshaper police and nftables ` +
      `are configured with a 300 ms burst (the policing default); one row shows the policer with 10 ms. The shapers queue ` +
      `instead of dropping: portshaper shape with a 10 ms burst (the shaping default; ECN 2 ms and horizon 50 ms, their ` +
      `defaults, though iperf3's TCP here does not negotiate ECN), HTB and TBF with a 10 ms bucket. "RTT" is TCP's own ` +
      `smoothed RTT at the sender (iperf3's mean_rtt), the queueing delay the limiter adds. The ideal TCP ratio for a limiter counting wire bytes is ` +
      `1448/1514 = ${TCP_WIRE_IDEAL.toFixed(3)}; limiters that count one set of headers per GSO skb (nftables) let ` +
      'more payload through at the same configured rate.',
    '',
    '### TCP goodput / configured',
    '',
    table(
      ['limiter', 'Mbit/s', 'burst', 'whole run', 'first second (receiver)', 'steady state', 'retransmits', 'RTT ms'],
      a.tcp.map((t) => [t.limiter, mbit(t.rateBps), `${t.burstNs / 1e6} ms`, cell(t.whole), cell(t.firstSecond), cell(t.steady), cell(t.retransmits, 0), cell(t.rttMs, 2)]),
    ),
    '',
    'A policer whose bucket starts full may pass rate × (1 s + burst) in the first second: up to 1.3× with a 300 ms ' +
      'burst, 1.01× with 10 ms, and the start credit also lifts the whole-run ratio of a short run by up to ' +
      'burst / run length (300 ms / 6 s = 5%); seconds after a loss recovery, in which TCP sent less than the rate, ' +
      'refill the bucket too, so a policer\'s "steady state" sits above the wire ideal where a shaper\'s does not. ' +
      'The first-second target (≤ 1.05×) and the 300 ms burst TCP needs are therefore in ' +
      "tension; what portshaper's first second shows is how much of the start credit TCP's slow start actually uses. " +
      'nftables adds a whole second of credit on top of its burst (nft_limit), hence its ~2× first second.',
    '',
    `![TCP goodput per second](${tcpChart})`,
    '',
    '### UDP offered at 2× the rate',
    '',
    table(
      ['limiter', 'Mbit/s', 'burst', 'delivered / configured (wire)', 'ideal', 'offered / configured', 'loss'],
      a.udp.map((u) => [u.limiter, mbit(u.rateBps), `${u.burstNs / 1e6} ms`, cell(u.delivered, 4), u.ideal.toFixed(4), cell(u.offered, 2), cell(u.loss, 3)]),
    ),
    '',
    '"ideal": delivered / configured of a limiter exact in what it counts (nftables at ingress counts IP bytes, so it passes 1442/1428 more wire bytes). ' +
      "The shapers (portshaper shape, HTB, TBF) sit on the sender's own host: their queue pushes back on the socket (the sender " +
      'blocks), so iperf3 cannot offer 2× through them and their loss stays near 0; the policers (portshaper police, nftables) see the full 2× and drop the excess. ' +
      "nftables' extra second of credit lifts a 3 s run by a third.",
  ];
  return parts.join('\n');
}

function overheadSection(o: OverheadResult): string {
  return [
    '## 4. Overhead when not limiting',
    '',
    `portshaper attached on ingress and egress of both veth ends with an unlimited rule (rate 0: counted, never dropped) ` +
      `on the test port, local and remote side ("no shaped rule": clsact and our program only), against no program and no ` +
      `clsact qdisc at all. "Shaped device": the same through the controller plus \`${o.shapedRule}\` on the sender, ` +
      "which installs our HTB root (no default class) and that rule's class: the measured traffic, which no shaped rule " +
      `names, passes through HTB's direct queue. ${o.seconds} s runs, the three interleaved in every repetition; ratios ` +
      'are paired by repetition.',
    '',
    table(
      ['traffic', 'unit', 'no program', 'no shaped rule', '/ no program', 'shaped device', '/ no program'],
      o.rows.map((r) => [r.traffic, r.unit, cell(r.none, 2), cell(r.portshaper, 2), cell(r.ratio, 3), cell(r.shapedDevice, 2), cell(r.shapedRatio, 3)]),
    ),
  ].join('\n');
}

function fairnessSection(f: FairnessResult): string {
  return [
    `## 2. Fairness: ${f.flows} TCP flows on one port limited to ${mbit(f.rateBps)} Mbit/s`,
    '',
    `The server in B sends ${f.flows} parallel streams (iperf3 -P ${f.flows}, ${f.seconds} s) from the limited port. ` +
      "Jain's index over the bytes each stream delivered (1 = equal shares, " +
      `${(1 / f.flows).toFixed(2)} = one flow takes everything); "worst share": the smallest stream's bytes / an equal share; ` +
      'aggregate: all streams\' goodput / configured (wire ideal 0.956). RTT: mean of the streams\' smoothed RTT.',
    '',
    table(
      ['limiter', 'burst', "Jain's index", 'worst share', 'aggregate', 'retransmits', 'RTT ms'],
      f.rows.map((r) => [r.limiter, `${r.burstNs / 1e6} ms`, cell(r.jain, 4), cell(r.worstShare, 3), cell(r.aggregate), cell(r.retransmits, 0), cell(r.rttMs, 2)]),
    ),
    '',
    "portshaper shape and HTB queue all four flows in one class's FIFO (bfifo / pfifo): how evenly they share it is TCP's " +
      'doing, with no per-flow scheduler (this kernel has no fq_codel or sfq).',
  ].join('\n');
}

function forwardedSection(f: ForwardedResult): string {
  return [
    `## 3. Forwarded traffic: RTT of a shaped flow through a router, ${mbit(f.rateBps)} Mbit/s`,
    '',
    `A (sender, Reno) → R → B (iperf3 server), ${f.seconds} s, one stream. portshaper on R's egress towards B: ` +
      `\`${f.rule}\` (ECN marking past ${FORWARDED_ECN_MS} ms, drop past the ${FORWARDED_HORIZON_MS} ms horizon: the defaults). ` +
      "HTB alone: an HTB root on the same device, a u32 filter on the destination port to a class at the rate (10 ms burst, HTB's " +
      'default pfifo leaf of txqueuelen packets). "ECN": net.ipv4.tcp_ecn=1 in A and B, so the flow is ECN-capable. RTT is TCP\'s ' +
      'own smoothed RTT at the sender (iperf3 mean_rtt and max_rtt); the path adds well under 1 ms without a queue.',
    '',
    table(
      ['limiter', 'ECN', 'goodput / configured', 'mean RTT ms', 'max RTT ms', 'retransmits', 'CE marks', 'drops'],
      f.rows.map((r) => [r.limiter, r.ecn ? 'on' : 'off', cell(r.goodput), cell(r.rttMs, 2), cell(r.maxRttMs, 2), cell(r.retransmits, 0), r.marks ? cell(r.marks, 0) : '—', r.drops ? cell(r.drops, 0) : '—']),
    ),
    '',
    'No TCP small-queue limit holds a forwarded sender back: without ECN the queue grows until something drops. ' +
      "portshaper's horizon drops first, so the RTT stays within it; HTB alone lets it grow to its leaf queue's length. " +
      'With ECN the program marks CE past the marking delay, and Reno backs off with no loss.',
  ].join('\n');
}

function perPacketSection(p: PerPacketResult, chart: string): string {
  const ps = p.rows.filter((r) => r.system === POLICE);
  const shapeAt = (n: number) => p.rows.find((r) => r.system === SHAPE && r.rules === n)?.bpfNsPerPacket;
  const minusEmpty = (x: Summary | undefined) =>
    ok(x) && ok(p.emptyProgram.bpfNsPerPacket) ? (x.median - p.emptyProgram.bpfNsPerPacket.median).toFixed(1) : 'n/a';
  return [
    '## 5. Per-packet cost and its growth with the rule count',
    '',
    `UDP, 64-byte payloads, as fast as iperf3 sends, ${p.seconds} s per run, through the sender's egress. Each rule set ` +
      'holds N per-port limits at a rate far above the traffic (80 Gbit/s), so nothing is dropped but every packet pays ' +
      "the lookup and the bucket; the measured port's rule is last (worst case for a linear list).",
    '',
    '### BPF run time per packet (`kernel.bpf_stats_enabled`, restored afterwards)',
    '',
    table(
      ['rules', 'police ns/packet', 'police − empty', 'shape ns/packet', 'shape − empty', 'empty cls_bpf ns/packet (same run)'],
      ps.map((r) => [
        r.rules.toLocaleString('en-US'),
        cell(r.bpfNsPerPacket, 1),
        minusEmpty(r.bpfNsPerPacket),
        cell(shapeAt(r.rules), 1),
        minusEmpty(shapeAt(r.rules)),
        cell(p.emptyProgram.bpfNsPerPacket, 1),
      ]),
    ),
    '',
    'Shape: the measured rule is shaped (the program classifies the packet into its HTB class, which at 80 Gbit/s never ' +
      'queues, and advances its virtual queue), the other N−1 rules police: a device holds 65,533 HTB classes (16-bit ' +
      'class ids), so a table of 65,536 shaped rules cannot exist, and the lookup the packet pays is the same. HTB\'s own ' +
      'cost per packet (enqueue, dequeue, root lock) is not in the program\'s run time: it shows in the rate and CPU ' +
      'columns below.',
    '',
    `The same portshaper program on a port no rule names (parse, interface and port lookups, global counter; no ` +
      `bucket): ${cell(p.portshaperUnmatchedNs, 1)} ns/packet.`,
    '',
    '### Every system: packet rate and CPU per packet',
    '',
    `No program: ${cell(p.noProgram.kpps, 1)} kpps, ${cell(p.noProgram.cpuNsPerPacket, 0)} ns CPU/packet. ` +
      `Empty cls_bpf: ${cell(p.emptyProgram.kpps, 1)} kpps, ${cell(p.emptyProgram.cpuNsPerPacket, 0)} ns CPU/packet. ` +
      'CPU per packet is busy time of the whole machine (user, system, irq, softirq) per datagram sent; "added" is that ' +
      'minus no program in the same repetition, so small values are within noise.',
    '',
    table(
      ['system', 'rules', 'kpps received', 'rate / no program', 'CPU ns/packet', 'added CPU ns/packet'],
      p.rows.map((r) => [r.system, r.rules.toLocaleString('en-US'), cell(r.kpps, 1), cell(r.ppsRatio, 3), cell(r.cpuNsPerPacket, 0), cell(r.addedCpuNs, 0)]),
    ),
    '',
    table(['system', 'what'], p.systems.map((s) => [s.id, s.description])),
    '',
    `![small-packet rate vs rule count](${chart})`,
    '',
    p.multiport ? multiPortSection(p.multiport) : '',
  ].join('\n');
}

function multiPortSection(m: MultiPortResult): string {
  return [
    '### Multi-port workload: random remote ports',
    '',
    `A small C sender (bench/lib/spray.ts, sendmmsg) sends ${SMALL_LEN_NOTE} from one source port for ${m.seconds} s, to one ` +
      'destination port or to a random port (1–65535) for every datagram, through the sender\'s egress. portshaper holds ' +
      'remote-port rules (the egress client limit, so the local-port lookup misses first): one rule, or one rule and one ' +
      'bucket per port (65,535), all at 80 Gbit/s. Random ports spread the lookups over the 16 MiB port table and 65,535 ' +
      'buckets, rules and counters: the cache misses that one port never has. "− empty": minus the empty program with the ' +
      'same traffic, paired by repetition. The one-port rows also show how much the cost above depends on the packet ' +
      'rate: iperf3 makes one system call per datagram, so between two runs of the program the CPU walks the whole socket ' +
      'path and the maps fall out of the nearest caches; sendmmsg sends 64 datagrams per call and keeps them warm. Neither ' +
      'workload is "the" per-packet cost: a busy service sits between the two.',
    '',
    table(
      ['program', 'rules', 'destination ports', 'BPF ns/packet', '− empty', 'kpps sent'],
      m.rows.map((r) => [r.program, r.rules ? r.rules.toLocaleString('en-US') : '—', r.ports, cell(r.bpfNsPerPacket, 1), r.rules ? cell(r.addedNs, 1) : '', cell(r.kppsSent, 0)]),
    ),
  ].join('\n');
}

const SMALL_LEN_NOTE = '64-byte payloads (106-byte frames)';

function controlPlaneSection(c: ControlPlaneResult): string {
  const apply = new Set(['portshaper policy file', 'portshaper plan+apply', 'nft -f map', 'nft -f linear', 'tc -batch u32']);
  return [
    '## 6. Control plane',
    '',
    'Time to put N per-port limits (100 Mbit/s, 300 ms burst, egress, local port) into the kernel of the benchmark\'s ' +
      'namespace, from empty; nft and tc times include their process start. "/ nft -f map" is paired by repetition.',
    '',
    table(
      ['operation', 'rules', 'ms', '/ nft -f map'],
      [
        ...c.rows.map((r) => [r.operation, r.rules.toLocaleString('en-US'), cell(r.ms, 1), apply.has(r.operation) ? cell(r.vsNftMap, 3) : '']),
        ...c.notMeasured.map((n) => [n.operation, '', `**${n.why}**`, '']),
      ],
    ),
    '',
    table(['operation', 'what'], c.operations.map((o) => [o.id, o.description])),
    '',
    'Where the time of "portshaper policy file" goes (ms):',
    '',
    table(
      ['rules', 'parse (YAML)', 'validate', 'plan', 'apply'],
      c.rows
        .filter((r) => r.stages)
        .map((r) => [r.rules.toLocaleString('en-US'), ...['parse', 'validate', 'plan', 'apply'].map((k) => cell(r.stages?.[k], 1))]),
    ),
  ].join('\n');
}

/** Issue 10: the agent process, judged at the largest rule count of the run (GET of one rule at 1,000). */
function issue10Targets(a: AgentResult | undefined, cp: ControlPlaneResult | undefined): Omit<TargetCheck, 'issue'>[] {
  if (!a && !cp) return [];
  const out: Omit<TargetCheck, 'issue'>[] = [];
  const max = a ? Math.max(...a.counts) : 65_536;
  const n = max.toLocaleString('en-US');
  const at = (rules: number) => a?.runs.find((x) => !x.bundled && x.rules === rules);
  const big = at(max);
  const bundled = a?.runs.find((x) => x.bundled);
  const missing = (x: AgentRun | undefined, what: string) => (x ? `not measured (${x.failures.find((f) => f.startsWith(what)) ?? x.failures[0] ?? 'see failures'})` : 'not run');
  const has = (v: number | undefined): v is number => v !== undefined && Number.isFinite(v);
  // These runs are single shots, not interleaved repetitions: a busy machine does not void them, but the verdict says so.
  const busy = (x: AgentRun | undefined) => (x?.load?.busy ? `; machine busy: others ${pctText(x.load.otherBefore)} of it before the run` : '');
  const push = (x: AgentRun | undefined, t: Omit<TargetCheck, 'issue'>) => out.push({ ...t, measured: t.measured + (t.verdict === 'not measured' ? '' : busy(x)) });
  if (a) {
    push(bundled, {
      target: 'Agent RSS, bundled 2-rule policy (examples/policy.yaml, as `make run`) ≤ 70 MiB',
      measured: has(bundled?.rssMiB) ? `${mib(bundled.rssMiB)} MiB (peak ${mib(bundled.peakReadyMiB)} MiB)` : missing(bundled, 'idle'),
      verdict: verdict(has(bundled?.rssMiB) ? bundled.rssMiB <= 70 : undefined),
    });
    push(big, {
      target: `Agent RSS with ${n} rules from the file ≤ 150 MiB, peak (VmHWM at ready) ≤ 300 MiB`,
      measured: has(big?.rssMiB) ? `${mib(big.rssMiB)} MiB, peak ${mib(big.peakReadyMiB)} MiB (after every operation: ${mib(big.peakEndMiB)} MiB)` : missing(big, 'idle'),
      verdict: verdict(has(big?.rssMiB) && has(big.peakReadyMiB) ? big.rssMiB <= 150 && big.peakReadyMiB <= 300 : undefined),
    });
    push(big, {
      target: `Agent start with ${n} rules (flow-style YAML) until /readyz answers 200 ≤ 3 s`,
      measured: has(big?.startToReadyMs) ? `${secs(big.startToReadyMs)} s` : missing(big, 'start'),
      verdict: verdict(has(big?.startToReadyMs) ? big.startToReadyMs <= 3000 : undefined),
    });
    push(big, {
      target: `One PATCH of one rule's rate with ${n} rules, round trip incl. the durable file write: p99 ≤ 50 ms`,
      measured: big?.patch ? latencyCell(big.patch) : missing(big, 'PATCH round'),
      verdict: verdict(big?.patch ? big.patch.p99 <= 50 : undefined),
    });
  }
  if (cp) {
    const cmax = Math.max(...cp.counts);
    const file = cp.rows.find((x) => x.operation === 'portshaper policy file' && x.rules === cmax);
    const nft = cp.rows.find((x) => x.operation === 'nft -f map' && x.rules === cmax);
    out.push({
      target: `${cmax.toLocaleString('en-US')} rules from the YAML file into the kernel ≥ 2× faster than \`nft -f\` map (controlplane section, in process)`,
      measured: `${cell(file?.ms, 0)} ms vs ${cell(nft?.ms, 0)} ms: ${cell(file?.vsNftMap, 3)} of nft's time`,
      verdict: verdict(ok(file?.vsNftMap) ? file!.vsNftMap.median <= 0.5 : undefined),
    });
  }
  if (a) {
    push(big, {
      target: `${n} rules from the YAML file into the kernel by the agent process (spawn → "policy applied") ≥ 2× faster than \`nft -f\` map, same namespace`,
      measured: has(big?.fileToKernelMs) && has(big.nftMapMs) ? `${ms0(big.fileToKernelMs)} ms vs ${ms0(big.nftMapMs)} ms: ${(big.fileToKernelMs / big.nftMapMs).toFixed(3)} of nft's time` : missing(big, 'nft'),
      verdict: verdict(has(big?.fileToKernelMs) && has(big.nftMapMs) ? big.fileToKernelMs / big.nftMapMs <= 0.5 : undefined),
    });
    push(big, {
      target: `One rule changed through the API (PATCH) → new rate in the pinned ps_rules map, ${n} rules loaded: p99 ≤ 5 ms`,
      measured: big?.apiToKernel ? latencyCell(big.apiToKernel) : missing(big, 'PATCH →'),
      verdict: verdict(big?.apiToKernel ? big.apiToKernel.p99 <= 5 : undefined),
    });
    push(big, {
      target: `PUT /v1/policy with ${n} rules (every rate changed) ≤ 2 s`,
      measured: big?.putPolicy ? `${secs(big.putPolicy.ms)} s${big.putPolicy.applyMs !== undefined ? ` (apply ${ms0(big.putPolicy.applyMs)} ms)` : ''}` : missing(big, 'PUT'),
      verdict: verdict(big?.putPolicy ? big.putPolicy.ms <= 2000 : undefined),
    });
    const all = big?.getAll;
    const allMedian = all?.ms.length ? [...all.ms].sort((x, y) => x - y)[(all.ms.length - 1) >> 1]! : undefined;
    push(big, {
      target: `GET /v1/rules with ${n} rules ≤ 0.5 s`,
      measured: all && has(allMedian) ? `${secs(allMedian)} s (median of ${all.ms.length}; ${(all.bytes / 1e6).toFixed(1)} MB)` : missing(big, 'GET /v1/rules:'),
      verdict: verdict(has(allMedian) ? allMedian <= 500 : undefined),
    });
    const thousand = at(1000);
    push(thousand, {
      target: `GET /v1/rules/{name}, 1,000 rules, 32 concurrent: p99 ≤ 2 ms`,
      measured: thousand?.getOne ? getOneCell(thousand.getOne) : thousand ? missing(thousand, 'GET /v1/rules/') : 'not run (no 1,000-rule run in this run, e.g. --quick)',
      verdict: verdict(thousand?.getOne ? thousand.getOne.p99 <= 2 : undefined),
    });
    const idle = big?.idle;
    push(big, {
      target: `Reading every rule's counters (${n}) per 1 s sample ≤ 20 ms (all the idle agent's CPU counted as the sampler's)`,
      measured: idle ? `≤ ${idle.cpuMsPerSecond.toFixed(1)} ms per sample (${idle.seconds.toFixed(0)} s idle; other processes ${pctText(idle.othersShare)} of the machine)` : missing(big, 'idle'),
      verdict: verdict(idle ? idle.cpuMsPerSecond <= 20 : undefined),
    });
    push(big, {
      target: `Idle agent with the 1 Hz sampler, ${n} rules: ≤ 2% of a core`,
      measured: idle ? `${pctText(idle.cpuShare, 2)} of a core` : missing(big, 'idle'),
      verdict: verdict(idle ? idle.cpuShare <= 0.02 : undefined),
    });
  }
  return out;
}

const mib = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(0));
const secs = (ms: number) => (ms / 1000).toFixed(2);
const ms0 = (ms: number) => ms.toFixed(0);
const msText = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2));
const pctText = (x: number, digits = 0) => `${(x * 100).toFixed(digits)}%`;
const latencyCell = (l: import('../sections/agent.js').Latency) =>
  `p50 ${msText(l.p50)} ms, p99 ${msText(l.p99)} ms, max ${msText(l.max)} ms (${l.n} in ${l.seconds.toFixed(1)} s${l.stoppedBy === 'count' ? '' : `, stopped by ${l.stoppedBy}`}${l.errors ? `; ${l.errors} failed: ${l.firstError?.slice(0, 120)}` : ''})`;
const getOneCell = (g: NonNullable<AgentRun['getOne']>) =>
  `p50 ${msText(g.p50)} ms, p99 ${msText(g.p99)} ms, ${g.rps.toFixed(0)} req/s (${g.requests} in ${g.seconds.toFixed(1)} s${g.errors ? `; ${g.errors} failed: ${g.firstError?.slice(0, 120)}` : ''})`;

/** Every measure of every agent run: a row per measure, a column per run. */
function agentDetail(a: AgentResult): string {
  const runs = a.runs;
  const head = ['measure', ...runs.map((r) => (r.bundled ? 'bundled policy (2 rules)' : `${r.rules.toLocaleString('en-US')} rule${r.rules === 1 ? '' : 's'}`))];
  const row = (what: string, f: (r: AgentRun) => string | undefined) => [what, ...runs.map((r) => f(r) ?? '—')];
  const rows = [
    row('`nft -f` map of the same limits, ms', (r) => (r.nftMapMs === undefined ? undefined : ms0(r.nftMapMs))),
    row('spawn → "policy applied", ms (/ nft -f)', (r) => (r.fileToKernelMs === undefined ? undefined : `${ms0(r.fileToKernelMs)}${r.nftMapMs ? ` (${(r.fileToKernelMs / r.nftMapMs).toFixed(2)})` : ''}`)),
    row("the agent's plan + apply (its log), ms", (r) => (r.applyMs === undefined ? undefined : msText(r.applyMs))),
    row('spawn → /readyz 200, ms', (r) => (r.startToReadyMs === undefined ? undefined : ms0(r.startToReadyMs))),
    row('RSS after the idle window, MiB', (r) => (r.rssMiB === undefined ? undefined : mib(r.rssMiB))),
    row('peak RSS (VmHWM) at ready / at the end, MiB', (r) => (r.peakReadyMiB === undefined ? undefined : `${mib(r.peakReadyMiB)} / ${mib(r.peakEndMiB)}`)),
    row('idle: agent CPU ms per s (share of a core; others)', (r) => (r.idle ? `${r.idle.cpuMsPerSecond.toFixed(1)} (${pctText(r.idle.cpuShare, 2)}; ${pctText(r.idle.othersShare)})` : undefined)),
    row('GET /v1/rules/{name} × 32', (r) => (r.getOne ? getOneCell(r.getOne) : undefined)),
    row('GET /v1/rules, ms (body)', (r) => (r.getAll ? `${r.getAll.ms.map(ms0).join(', ')} (${(r.getAll.bytes / 1e6).toFixed(2)} MB)` : undefined)),
    row('PATCH round trip', (r) => (r.patch ? latencyCell(r.patch) : undefined)),
    row('PATCH → rate in ps_rules', (r) => (r.apiToKernel ? latencyCell(r.apiToKernel) : undefined)),
    row('PUT /v1/policy, ms (agent apply)', (r) => (r.putPolicy ? `${ms0(r.putPolicy.ms)}${r.putPolicy.applyMs !== undefined ? ` (${msText(r.putPolicy.applyMs)})` : ''}` : undefined)),
    row('other processes before the run', (r) => (r.load ? `${pctText(r.load.otherBefore)}${r.load.busy ? ' (busy)' : ''}` : undefined)),
  ];
  return table(head, rows);
}

/** The issue 10 targets this section alone can judge, and every measure: logged at the end of the section. */
export function agentSummary(a: AgentResult): string {
  const targets = issue10Targets(a, undefined);
  return [
    table(['target', 'measured', 'verdict'], targets.map((t) => [t.target, t.measured, t.verdict])),
    '',
    agentDetail(a),
    ...a.runs.flatMap((r) => r.failures.map((f) => `- ${r.bundled ? 'bundled' : r.rules.toLocaleString('en-US')}: ${f}`)),
  ].join('\n');
}

function agentSection(a: AgentResult): string {
  const b = a.bounds;
  return [
    '## 6b. The agent process (issue 10)',
    '',
    'The real agent (`node dist/cli/main.js agent --policy FILE`) in a namespace of its own for every run (veth, pin ' +
      'directory, API port), started on the bundled policy (examples/policy.yaml with this run\'s pins and API, as ' +
      '`make run` loads it) and on N generated police rules (100 Mbit/s, 300 ms burst, egress; flow-style YAML, one rule ' +
      'a line). Requests come from one node process inside the namespace over keep-alive connections. "spawn → policy ' +
      'applied" includes node\'s start, parsing, validation, the BPF object\'s load and the attach, like `nft -f` includes ' +
      'its process start. RSS and its peak: /proc/PID/status (VmRSS, VmHWM). Idle: utime + stime of the agent over ' +
      `${b.idleMs / 1000} s with nothing calling it but its 1 Hz counter sampler (the stats log off). PATCH: the first ` +
      'rule\'s rate, a new value each time; round trips first, then the same with this process reading the rule\'s ' +
      'slot in the pinned ps_rules map in a loop, from the request\'s start to the first read showing the new rate. ' +
      `At most ${b.patchMax} PATCHes or ${b.patchBudgetMs / 1000} s per series (at least one), ` +
      `${b.requestMs / 1000} s per request. PUT /v1/policy: the same rules with every rate changed.`,
    '',
    agentDetail(a),
  ].join('\n');
}

function noiseSection(r: BenchResults): string {
  const loads = r.runs.map((l) => l.load);
  const busy = r.runs.filter((l) => l.load.busy);
  const range = (xs: number[], f: (x: number) => string) => (xs.length ? `${f(Math.min(...xs))}–${f(Math.max(...xs))}` : 'n/a');
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  return [
    '## 7. Noise',
    '',
    `Before every measured run the benchmark idles ${300} ms and reads /proc/stat: CPU time (user+nice+system) not spent ` +
      'by the benchmark or its children is "others". The same is read over the run itself when it lasts at least 1 s ' +
      '(/proc/stat counts 10 ms ticks). A run where others used more ' +
      `than ${pct(BUSY_LIMITS.cpuBound)} of all CPUs (${pct(BUSY_LIMITS.limiterBound)} for accuracy runs up to 100 Mbit/s, ` +
      'where the bucket, not the CPU, sets the rate), before or during, is recorded but not used for any number or ratio; a cell ' +
      'with no quiet run says "n/a (machine too busy in every run)" instead of a number, followed by the median of its busy ' +
      'runs in italics: for orientation only, never a result, and never judged against a target.',
    '',
    table(
      ['runs', 'too busy (not used)', '1-min loadavg', 'others before run', 'others during run'],
      [[
        String(loads.length),
        String(busy.length),
        range(loads.map((l) => l.loadavg1), (x) => x.toFixed(2)),
        range(loads.map((l) => l.otherBefore), pct),
        range(loads.flatMap((l) => (l.otherDuring === null ? [] : [l.otherDuring])), pct),
      ]],
    ),
    ...(busy.length
      ? [
          '',
          '<details><summary>Runs not used</summary>',
          '',
          ...busy.map((b) => `- ${b.id}, repetition ${b.rep + 1}: others ${pct(b.load.otherBefore)} before, ${b.load.otherDuring === null ? 'not judged (short run)' : pct(b.load.otherDuring)} during`),
          '',
          '</details>',
        ]
      : []),
  ].join('\n');
}

function failuresSection(r: BenchResults): string {
  const lines: string[] = [];
  for (const [name, err] of Object.entries(r.sectionErrors)) lines.push(`- section ${name} failed: \`${err.split('\n')[0]}\``);
  for (const s of [r.accuracy, r.fairness, r.forwarded, r.overhead, r.perpacket, r.controlplane, r.agent]) {
    for (const [id, msgs] of Object.entries(s?.failures ?? {})) for (const m of msgs) lines.push(`- ${id}: \`${m.split('\n')[0]!.slice(0, 300)}\``);
  }
  return lines.length ? ['## Failed runs', '', ...lines].join('\n') : '';
}

/** The sections this run measured (or tried to), in report order. */
function sectionsRun(r: BenchResults): string[] {
  const present = { accuracy: r.accuracy, fairness: r.fairness, forwarded: r.forwarded, overhead: r.overhead, perpacket: r.perpacket, controlplane: r.controlplane, agent: r.agent };
  return Object.entries(present)
    .filter(([name, result]) => result !== undefined || name in r.sectionErrors)
    .map(([name]) => name);
}

// ---------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------

function tcpPerSecondChart(a: AccuracyResult): string {
  const rate = a.rates.includes(100e6) ? 100e6 : a.rates[0]!;
  const rows = a.tcp.filter((t) => t.rateBps === rate);
  const seconds = Math.max(0, ...rows.map((t) => t.perSecondBps.length));
  return lineChart({
    title: `TCP goodput per second, one port limited to ${mbit(rate)} Mbit/s`,
    xLabel: 'second of the run',
    xMinStep: 1,
    yLabel: 'goodput, Mbit/s',
    series: [
      ...rows.map((t) => ({ name: t.limiter, points: t.perSecondBps.map((b, i): [number, number] => [i + 1, b / 1e6]) })),
      { name: 'configured', points: [[1, rate / 1e6], [Math.max(seconds, 2), rate / 1e6]] as [number, number][], dashed: true },
    ],
  });
}

function perPacketChart(p: PerPacketResult): string {
  return lineChart({
    title: 'Small-packet rate vs number of per-port limits',
    xLabel: 'rules (log scale)',
    yLabel: 'packets/s relative to no program',
    xLog: true,
    yMin: 0,
    series: p.systems.map((s) => ({
      name: s.id,
      points: p.rows.filter((r) => r.system === s.id).map((r): [number, number] => [r.rules, r.ppsRatio.median]),
    })),
  });
}

/** Write <date>-<host>[-quick].md/.json, the charts, and latest[-quick].md; returns the paths. */
export function writeReport(r: BenchResults): string[] {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const stem = `${r.started.slice(0, 10)}-${r.host}${r.quick ? '-quick' : ''}`;
  const files: Record<string, string> = {};
  const tcpChart = `${stem}-tcp-per-second.svg`;
  const ppChart = `${stem}-rules.svg`;
  if (r.accuracy) files[tcpChart] = tcpPerSecondChart(r.accuracy);
  if (r.perpacket) files[ppChart] = perPacketChart(r.perpacket);

  const targets = checkTargets(r);
  const minutes = (Date.parse(r.finished) - Date.parse(r.started)) / 60000;
  const md = [
    `# portshaper benchmark: ${r.started.slice(0, 10)} on ${r.host}`,
    '',
    `Kernel ${r.kernel}, ${r.cpus} CPUs, ${r.quick ? 'quick run (smoke test: fewer rates, counts and runs)' : 'full run'}, ` +
      `${r.reps} interleaved repetition(s) per case, ${minutes.toFixed(1)} minutes. Generated by \`make bench\` (bench/main.ts); ` +
      'every ratio is against a baseline measured in the same run. The raw value and load of every run: the JSON beside this file.',
    '',
    `Sections in this run: ${sectionsRun(r).join(', ')}.`,
    '',
    '## Targets',
    '',
    'Issue 10 (the agent process at 65,536 rules) first, then issue 9 (shaping), then issue 5 (the policer, the O(1) lookup, the control plane).',
    '',
    table(['issue', 'target', 'measured (median, min–max)', 'verdict'], [...targets].sort((a, b) => b.issue - a.issue).map((t) => [String(t.issue), t.target, t.measured, t.verdict])),
    '',
    r.accuracy ? accuracySection(r.accuracy, tcpChart) : '',
    '',
    r.fairness ? fairnessSection(r.fairness) : '',
    '',
    r.forwarded ? forwardedSection(r.forwarded) : '',
    '',
    r.overhead ? overheadSection(r.overhead) : '',
    '',
    r.perpacket ? perPacketSection(r.perpacket, ppChart) : '',
    '',
    r.controlplane ? controlPlaneSection(r.controlplane) : '',
    '',
    r.agent ? agentSection(r.agent) : '',
    '',
    noiseSection(r),
    '',
    failuresSection(r),
    '',
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
  files[`${stem}.md`] = md;
  files[`${stem}.json`] = JSON.stringify({ ...r, targets }, null, 2) + '\n';
  const written = Object.entries(files).map(([name, text]) => {
    const path = join(RESULTS_DIR, name);
    writeFileSync(path, text);
    return path;
  });
  // Quick runs are smoke tests: they never replace the latest full report.
  const latest = join(RESULTS_DIR, r.quick ? 'latest-quick.md' : 'latest.md');
  copyFileSync(join(RESULTS_DIR, `${stem}.md`), latest);
  return [...written, latest];
}
