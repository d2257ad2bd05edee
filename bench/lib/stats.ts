/**
 * Summaries of repeated measurements: median and spread over the runs the
 * machine was quiet enough for, or a refusal saying why there is no number.
 */
import type { LoadSample } from './load.js';

/** One measured repetition of a case. */
export interface Sample<T> {
  rep: number;
  value: T;
  load: LoadSample;
}

/** Median and spread of the usable runs; `refused` when none was usable. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  /** Runs used / runs made. */
  used: number;
  runs: number;
  /** Why there is no number (every run was too busy, or nothing measured). */
  refused?: string;
  /** When every run was too busy: the median of those runs, for orientation only (never a result). */
  busyMedian?: number;
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Summarise pick(value) over the runs that were not too busy. */
export function summarize<T>(samples: readonly Sample<T>[], pick: (v: T) => number | undefined): Summary {
  const quiet = samples.filter((s) => !s.load.busy);
  const values = quiet.map((s) => pick(s.value)).filter((v): v is number => v !== undefined && Number.isFinite(v));
  if (!values.length) {
    const refused = samples.length === 0 ? 'not measured' : quiet.length === 0 ? 'machine too busy in every run' : 'no value';
    const busy = samples.map((s) => pick(s.value)).filter((v): v is number => v !== undefined && Number.isFinite(v));
    return { median: NaN, min: NaN, max: NaN, used: 0, runs: samples.length, refused, ...(quiet.length === 0 && busy.length ? { busyMedian: median(busy) } : {}) };
  }
  return { median: median(values), min: Math.min(...values), max: Math.max(...values), used: values.length, runs: samples.length };
}

/**
 * Ratios of two cases measured in the same repetitions (interleaved), paired
 * by repetition; a pair is used only when both runs were quiet.
 */
export function pairedRatio<T>(
  num: readonly Sample<T>[],
  den: readonly Sample<T>[],
  pick: (v: T) => number | undefined,
): Summary {
  const pairs: Sample<number>[] = [];
  for (const n of num) {
    const d = den.find((x) => x.rep === n.rep);
    if (!d) continue;
    const a = pick(n.value);
    const b = pick(d.value);
    if (a === undefined || b === undefined || !b) continue;
    pairs.push({ rep: n.rep, value: a / b, load: { ...n.load, busy: n.load.busy || d.load.busy } });
  }
  return summarize(pairs, (v) => v);
}
