/**
 * The shared runner: every case of a section is set up, measured and torn
 * down once per repetition, cases interleaved (rep 1: A B C, rep 2: B C A, …)
 * so that drift in machine load spreads over all of them instead of biasing
 * the one measured last. Load is recorded around every measurement.
 */
import { withLoad, type LoadSample } from './load.js';
import type { Sample } from './stats.js';

/** One thing to measure; setup/teardown are not timed. */
export interface Case<T> {
  id: string;
  setup?(): Promise<void>;
  measure(): Promise<T>;
  teardown?(): Promise<void>;
  /** Share of all CPUs other processes may use during the run (default BUSY_LIMITS.cpuBound). */
  busyLimit?: number;
}

/** Progress lines go to stderr so that stdout stays clean. */
export function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** Every measured run of this process: its raw value and load (the JSON keeps them; the noise section reads them). */
export const runLog: { id: string; rep: number; load: LoadSample; value: unknown }[] = [];

/** Samples by case id, and the runs that failed (message by case id). */
export interface RunResults<T> {
  samples: Map<string, Sample<T>[]>;
  failures: Map<string, string[]>;
}

/**
 * Run every case `reps` times, interleaved and rotated. A failed setup or
 * measurement is recorded and the run goes on (after the case's teardown,
 * which removes only the case's own objects); a failed teardown aborts,
 * because the next case would find the host in an unknown state.
 */
export async function runInterleaved<T>(cases: readonly Case<T>[], reps: number): Promise<RunResults<T>> {
  const samples = new Map<string, Sample<T>[]>(cases.map((c) => [c.id, []]));
  const failures = new Map<string, string[]>();
  const fail = (c: Case<T>, rep: number, what: string, err: unknown) => {
    const message = `${what}: ${(err as Error).message}`;
    failures.set(c.id, [...(failures.get(c.id) ?? []), message]);
    log(`${c.id} rep ${rep + 1}/${reps} FAILED in ${message}`);
  };
  for (let rep = 0; rep < reps; rep++) {
    for (let k = 0; k < cases.length; k++) {
      const c = cases[(k + rep) % cases.length]!;
      try {
        await c.setup?.();
      } catch (err) {
        fail(c, rep, 'setup', err);
        await c.teardown?.().catch(() => undefined);
        continue;
      }
      try {
        const { value, load } = await withLoad(() => c.measure(), c.busyLimit);
        samples.get(c.id)!.push({ rep, value, load });
        runLog.push({ id: c.id, rep, load, value });
        log(`${c.id} rep ${rep + 1}/${reps}${load.busy ? ` (busy: others ${pct(load.otherBefore)} before, ${load.otherDuring === null ? 'short run' : pct(load.otherDuring)} during; not used)` : ''}`);
      } catch (err) {
        fail(c, rep, 'measurement', err);
      } finally {
        await c.teardown?.();
      }
    }
  }
  return { samples, failures };
}

function pct(x: number): string {
  return `${Math.round(x * 100)}%`;
}
