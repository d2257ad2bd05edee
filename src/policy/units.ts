/**
 * The one parser of rates, sizes and durations, in tc(8) notation, and the
 * limits that keep the data plane's arithmetic exact (bpf/lib/bucket.h).
 */
import { UnitError } from '../errors.js';
import { didYouMean } from './suggest.js';

// The unit parsers' error lives with every other error; re-exported here, where the validator imports it from.
export { UnitError };

/** Slowest limit, in bit/s: below it one 64 KiB GSO packet costs more than 60 s of credit. */
export const MIN_RATE_BPS = 8_000;
/** Fastest limit, in bit/s: credit is whole nanoseconds and a 64-byte frame costs 1.28 ns at 400gbit. */
export const MAX_RATE_BPS = 400_000_000_000;
/** Deepest bucket, in ns of traffic at the rate. */
export const MAX_BURST_NS = 60_000_000_000;
/** Shallowest bucket, in bytes: two full-size Ethernet frames (2 × 1514). */
export const MIN_BURST_BYTES = 3028;
/**
 * Burst of a rule that sets none, raised to MIN_BURST_BYTES at low rates.
 * 300 ms because TCP through a policer stalls on its minimum RTO (200 ms)
 * whenever the bucket is shallower: measured at 100 Mbit/s, 10 ms of burst
 * gives 3% of the rate, 100 ms 47%, 300 ms 96% (README, "Policing TCP").
 */
export const DEFAULT_BURST = '300ms';
/**
 * Burst of a shaped bucket that sets none: how far ahead of the rate a flow
 * may start. A shaper queues instead of dropping, so TCP needs no deep
 * bucket; 10 ms adds at most 1% to the first second (target: ≤ 1.02×) and is
 * what HTB measured 0.958 of the rate with (bench/results).
 */
export const DEFAULT_SHAPE_BURST = '10ms';
/** Queueing delay past which a shaped bucket marks ECN-capable packets CE (see README, "ECN"). */
export const DEFAULT_ECN = '2ms';
/** Queueing delay past which a shaped bucket drops: bounds the queue of senders without TCP small queues (forwarded traffic). */
export const DEFAULT_HORIZON = '50ms';
/** Largest packet a bucket sees at tc egress: a 64 KiB GSO super-packet. */
export const MAX_PACKET_BYTES = 65536;
/** Longest horizon: beyond it a queue is a buffer bloat, not a shaper. */
export const MAX_HORIZON_NS = 10_000_000_000;

/** Rate units (lower case) → bits per second. tc's are SI (kbit = 1000) or IEC (kibit = 1024). */
export const RATE_UNITS: Readonly<Record<string, number>> = {
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  kibit: 1024,
  mibit: 1024 ** 2,
  gibit: 1024 ** 3,
  tibit: 1024 ** 4,
  'bit/s': 1,
  'kbit/s': 1e3,
  'mbit/s': 1e6,
  'gbit/s': 1e9,
  'tbit/s': 1e12,
};

/** Size units (lower case) → bytes. As in tc's get_size(), k/kb are 1024 and the bit forms divide by 8. */
export const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
  bit: 1 / 8,
  kbit: 1024 / 8,
  mbit: 1024 ** 2 / 8,
  gbit: 1024 ** 3 / 8,
};

/** Duration units (lower case) → nanoseconds. */
export const DURATION_UNITS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  ms: 1e6,
  s: 1e9,
};

const QUANTITY = /^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z/]*)\s*$/i;
const BITS_PER_BYTE = 8;
const NS_PER_SEC = 1e9;

const PREFIX_WORDS: Readonly<Record<string, string>> = {
  '': '',
  k: 'kilo',
  m: 'mega',
  g: 'giga',
  t: 'tera',
  ki: 'kibi',
  mi: 'mebi',
  gi: 'gibi',
  ti: 'tebi',
};
const BYTE_RATE = /^(|k|m|g|t|ki|mi|gi|ti)(bps|b\/s)$/;

/**
 * Remembers the values of texts already read: a large policy repeats a few
 * rates and bursts (its defaults) thousands of times. Bounded, since the API
 * can send any text; failures are not kept (they throw each time).
 */
function memo<A extends unknown[]>(parse: (...args: A) => number, key: (...args: A) => string): (...args: A) => number {
  const known = new Map<string, number>();
  return (...args: A): number => {
    const k = key(...args);
    let value = known.get(k);
    if (value === undefined) {
      value = parse(...args);
      if (known.size >= 4096) known.clear();
      known.set(k, value);
    }
    return value;
  };
}

/** Bits per second of a rate such as "10mbit", "1.5gbit" or "100Mbit/s"; "unlimited" is 0. */
export const parseRate: (text: string) => number = memo(readRate, (text) => text);

function readRate(text: string): number {
  if (text.trim().toLowerCase() === 'unlimited') return 0;
  const { value, unit } = splitQuantity(text, 'rate', '10mbit');
  const lower = unit.toLowerCase();
  const scale = RATE_UNITS[lower];
  if (scale === undefined) throw new UnitError(rateUnitProblem(text, value, unit));
  const bps = Math.round(value * scale);
  if (bps < MIN_RATE_BPS) {
    throw new UnitError(
      `rate "${text}" is below the minimum of ${formatRate(MIN_RATE_BPS)}: at lower rates one 64 KiB ` +
        `packet costs more than 60 s of credit; use at least ${formatRate(MIN_RATE_BPS)}, or "unlimited" to count without limiting`,
    );
  }
  if (bps > MAX_RATE_BPS) {
    throw new UnitError(
      `rate "${text}" is above the maximum of ${formatRate(MAX_RATE_BPS)}: credit is kept in whole ` +
        `nanoseconds and a 64-byte frame costs only 1.28 ns at ${formatRate(MAX_RATE_BPS)}, so faster limits ` +
        `lose precision; use "unlimited" to count without limiting`,
    );
  }
  return bps;
}

/** Packet-rate units (tc's): packets per second. */
export const PACKET_RATE_UNITS: Readonly<Record<string, number>> = { pps: 1, kpps: 1e3, mpps: 1e6 };
/** Connection-rate units: new connections per second or per minute. */
export const CONNECTION_RATE_UNITS: Readonly<Record<string, number>> = { '/s': 1, '/sec': 1, '/min': 1 / 60 };
/** Fastest packet or connection rate: one event a nanosecond would be 1e9/s; keep whole-ns costs meaningful. */
const MAX_EVENT_RATE = 100_000_000;

/** Packets per second of a rate such as "10kpps" (tc: pps, kpps, mpps). */
export function parsePacketRate(text: string): number {
  const { value, unit } = splitQuantity(text, 'packet rate', '10kpps');
  const scale = PACKET_RATE_UNITS[unit.toLowerCase()];
  if (scale === undefined) {
    const bits = RATE_UNITS[unit.toLowerCase()] !== undefined;
    throw new UnitError(
      bits
        ? `"${text}" is a bit rate; a packet rate counts packets: write it in pps, kpps or mpps, e.g. 10kpps (rate: takes bit rates)`
        : unknownUnit('packet rate', unit, PACKET_RATE_UNITS, 'pps, kpps, mpps'),
    );
  }
  return checkEventRate(text, value * scale);
}

/** New connections per second of a rate such as "100/s" or "600/min". */
export function parseConnectionRate(text: string): number {
  const { value, unit } = splitQuantity(text, 'connection rate', '100/s');
  const scale = CONNECTION_RATE_UNITS[unit.toLowerCase()];
  if (scale === undefined) throw new UnitError(unknownUnit('connection rate', unit, CONNECTION_RATE_UNITS, '/s or /min, e.g. 100/s'));
  return checkEventRate(text, value * scale);
}

function checkEventRate(text: string, perSecond: number): number {
  if (!(perSecond > 0) || perSecond > MAX_EVENT_RATE) {
    throw new UnitError(`"${text}" is not between one a minute and ${MAX_EVENT_RATE / 1e6} million a second`);
  }
  return perSecond;
}

/** ns one event costs at `perSecond`, and the depth of an event bucket: `burstNs`, but at least two events. */
export function eventLimit(perSecond: number, burstNs: number): { costNs: number; burstNs: number } {
  const costNs = wholeNs(NS_PER_SEC / perSecond);
  return { costNs, burstNs: Math.max(burstNs, 2 * costNs) };
}

/** Bytes of a size such as "64kb" (1 kb = 1024 bytes, as in tc). */
export function parseSize(text: string): number {
  const { value, unit } = splitQuantity(text, 'size', '64kb');
  const scale = SIZE_UNITS[unit.toLowerCase()];
  if (scale === undefined) throw new UnitError(unknownUnit('size', unit, SIZE_UNITS, 'b, kb, mb, gb, kib, mib, gib'));
  return Math.round(value * scale);
}

/** Nanoseconds of a duration such as "10ms". */
export const parseDuration: (text: string) => number = memo(readDuration, (text) => text);

function readDuration(text: string): number {
  const { value, unit } = splitQuantity(text, 'duration', '10ms');
  const scale = DURATION_UNITS[unit.toLowerCase()];
  if (scale === undefined) throw new UnitError(unknownUnit('duration', unit, DURATION_UNITS, 'ns, us, ms, s'));
  return wholeNs(value * scale);
}

/**
 * Bucket depth in ns of transmission at rateBps, from a size ("64kb") or a
 * duration ("10ms"). Bounded by MIN_BURST_BYTES and MAX_BURST_NS; with
 * raiseToMinimum a too-shallow burst becomes the minimum instead of an error.
 * At rate 0 (unlimited) only the syntax is checked and the depth is 0.
 */
export const parseBurst: (text: string, rateBps: number, options?: { raiseToMinimum?: boolean }) => number = memo(
  readBurst,
  (text, rateBps, options) => `${text}\0${rateBps}\0${options?.raiseToMinimum === true}`,
);

function readBurst(text: string, rateBps: number, options: { raiseToMinimum?: boolean } = {}): number {
  const { value, unit } = splitQuantity(text, 'burst', '64kb or 10ms');
  const lower = unit.toLowerCase();
  const nsScale = DURATION_UNITS[lower];
  const byteScale = SIZE_UNITS[lower];
  if (nsScale === undefined && byteScale === undefined) {
    const units = { ...SIZE_UNITS, ...DURATION_UNITS };
    throw new UnitError(unknownUnit('burst', unit, units, 'a size (b, kb, mb, kib, mib) or a duration (ns, us, ms, s)'));
  }
  if (rateBps === 0) return 0;
  const ns = nsScale !== undefined ? value * nsScale : (value * (byteScale ?? 0) * BITS_PER_BYTE * NS_PER_SEC) / rateBps;
  const bytes = (ns * rateBps) / (BITS_PER_BYTE * NS_PER_SEC);
  const minNs = minBurstNs(rateBps);
  if (bytes < MIN_BURST_BYTES && !options.raiseToMinimum) {
    throw new UnitError(
      `burst "${text}" is ${plural(Math.round(bytes), 'byte')} at ${formatRate(rateBps)}, below the minimum of ` +
        `${MIN_BURST_BYTES} bytes (${formatDuration(minNs)} at this rate): a bucket shallower than two full-size ` +
        `frames cannot pass back-to-back packets; use at least ${MIN_BURST_BYTES}b or ${formatDuration(minNs)}`,
    );
  }
  if (ns > MAX_BURST_NS) {
    throw new UnitError(
      `burst "${text}" is ${formatDuration(ns)} of traffic at ${formatRate(rateBps)}, above the maximum of ` +
        `${formatDuration(MAX_BURST_NS)}: a deeper bucket lets a sender exceed the limit for over a minute ` +
        `after idling; use at most ${formatDuration(MAX_BURST_NS)}`,
    );
  }
  return Math.max(wholeNs(ns), minNs);
}

/** A rate for display: "100mbit", "1.5gbit", or "unlimited" for 0. */
export function formatRate(bps: number): string {
  if (bps === 0) return 'unlimited';
  for (const unit of ['tbit', 'gbit', 'mbit', 'kbit'] as const) {
    const scale = RATE_UNITS[unit] ?? 1;
    if (bps >= scale) return `${trimmed(bps / scale)}${unit}`;
  }
  return `${bps}bit`;
}

/** The horizon in force: at least two 64 KiB packets at the rate, so that one GSO packet may wait behind another. */
export function effectiveHorizonNs(horizonNs: number, rateBps: number): number {
  if (rateBps === 0) return horizonNs;
  return Math.max(horizonNs, twoPacketsNs(rateBps));
}

/** Two largest packets' time at a rate; remembered per rate (a policy has few distinct rates). */
const twoPacketsNs = memo((rateBps: number) => wholeNs((2 * MAX_PACKET_BYTES * BITS_PER_BYTE * NS_PER_SEC) / rateBps), String);

function minBurstNs(rateBps: number): number {
  return wholeNs((MIN_BURST_BYTES * BITS_PER_BYTE * NS_PER_SEC) / rateBps);
}

function splitQuantity(text: string, kind: string, example: string): { value: number; unit: string } {
  const match = QUANTITY.exec(text);
  if (!match) throw new UnitError(`"${text}" is not a ${kind}: write a number and a unit, e.g. ${example}`);
  const unit = match[2] ?? '';
  if (unit === '') throw new UnitError(`${kind} "${text}" has no unit: add a unit, e.g. ${example}`);
  return { value: Number(match[1]), unit };
}

/** Explains why a unit is not a rate unit, naming the likely intent when it is a byte form. */
function rateUnitProblem(text: string, value: number, unit: string): string {
  const lower = unit.toLowerCase();
  const byteRate = BYTE_RATE.exec(lower);
  // Bit sizes ("kbit") are rate units too and never get here: what is left of SIZE_UNITS counts bytes.
  const prefix = byteRate?.[1] ?? (lower in SIZE_UNITS ? lower.replace(/b$/, '') : undefined);
  if (prefix !== undefined) {
    const word = PREFIX_WORDS[prefix] ?? '';
    const asBytes = `${trimmed(value * BITS_PER_BYTE)}${prefix}bit`;
    const asBits = `${trimmed(value)}${prefix}bit`;
    const choice = `write "${asBytes}" for ${trimmed(value)} ${word}bytes/s or "${asBits}" for ${trimmed(value)} ${word}bits/s`;
    if (byteRate?.[2] === 'bps') {
      return `ambiguous unit "${unit}": tc reads it as ${word}bytes per second (= ${asBytes}); ${choice}`;
    }
    if (byteRate) return `ambiguous unit "${unit}": "B" (bytes) and "b" (bits) are easily confused; ${choice}`;
    return `"${unit}" in "${text}" is a size, not a rate; ${choice}`;
  }
  return unknownUnit('rate', unit, RATE_UNITS, 'bit, kbit, mbit, gbit, tbit (×1000) or kibit, mibit, gibit, tibit (×1024)');
}

function unknownUnit(kind: string, unit: string, units: Readonly<Record<string, number>>, valid: string): string {
  const match = didYouMean(unit, Object.keys(units));
  return match === undefined
    ? `unknown ${kind} unit "${unit}": use ${valid}`
    : `unknown ${kind} unit "${unit}": did you mean "${match}"?`;
}

/** Rounds away float noise (1.1 × 1e6 = 1100000.0000000002) before rounding up to a whole ns. */
function wholeNs(ns: number): number {
  // Whole numbers below 1e12 have at most 12 digits: toPrecision(12) would give them back unchanged.
  if (Number.isInteger(ns) && Math.abs(ns) < 1e12) return ns;
  return Math.ceil(Number(ns.toPrecision(12)));
}

/** A duration for display: "10ms", "1.5s". */
export function formatDuration(ns: number): string {
  if (ns >= 1e9) return `${trimmed(ns / 1e9)}s`;
  if (ns >= 1e6) return `${trimmed(ns / 1e6)}ms`;
  if (ns >= 1e3) return `${trimmed(ns / 1e3)}us`;
  return `${trimmed(ns)}ns`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function trimmed(n: number): string {
  return String(Number(n.toFixed(3)));
}
