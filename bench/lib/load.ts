/**
 * Noise: how busy the machine was with other processes around a run.
 *
 * /proc/stat gives CPU time of the whole machine; /proc/self/stat gives ours
 * (utime + stime) and that of our reaped children (cutime + cstime: iperf3,
 * nft, tc). What is left is other processes. Interrupt and softirq time is
 * left out of "busy" on both sides: veth traffic is processed there, and the
 * kernel cannot tell whose it is.
 */
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

/**
 * How much of all CPUs other processes may use before a run is "too busy":
 * strict where the CPU is what is measured (throughput, per-packet cost,
 * control-plane times); lenient where a limiter far below what the CPU can
 * carry is the bottleneck (accuracy up to 100 Mbit/s), because there the
 * rate is set by the bucket's clock, not by who gets the CPU.
 */
export const BUSY_LIMITS = { cpuBound: 0.25, limiterBound: 0.5 } as const;
/** Quiet window sampled before each run, when the benchmark itself generates nothing. */
const QUIET_MS = 300;
/** Runs shorter than this are judged by the quiet window only: /proc/stat counts in 10 ms ticks. */
const MIN_JUDGED_MS = 1000;
/** Kernel ticks per second in /proc/stat (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** Load around one measured run. */
export interface LoadSample {
  /** 1-minute load average when the run started. */
  loadavg1: number;
  /** Share of all CPUs used by other processes in the quiet window before the run (0..1). */
  otherBefore: number;
  /** Share of all CPUs used by other processes during the run (0..1; approximate); null for runs too short to tell. */
  otherDuring: number | null;
  /** The share allowed for this run (see BUSY_LIMITS). */
  limit: number;
  /** True when either share exceeded the limit: the run is not used for any number. */
  busy: boolean;
}

interface CpuClock {
  /** user + nice + system ticks of the whole machine. */
  busy: number;
  /** All ticks of the whole machine. */
  total: number;
  /** Our utime + stime + cutime + cstime. */
  own: number;
}

function readClock(): CpuClock {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0] = f;
  // Fields after the closing parenthesis of comm: state is field 3, utime 14.
  const self = readFileSync('/proc/self/stat', 'utf8');
  const rest = self.slice(self.lastIndexOf(')') + 2).split(' ').map(Number);
  const own = rest.slice(11, 15).reduce((a, b) => a + b, 0);
  return { busy: user + nice + system, total: f.slice(0, 8).reduce((a, b) => a + b, 0), own };
}

function otherShare(a: CpuClock, b: CpuClock): number {
  const total = b.total - a.total;
  if (total <= 0) return 0;
  return Math.max(0, (b.busy - a.busy - (b.own - a.own)) / total);
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Run fn, recording the load of other processes just before and during it; busy above `limit`. */
export async function withLoad<T>(fn: () => Promise<T>, limit: number = BUSY_LIMITS.cpuBound): Promise<{ value: T; load: LoadSample }> {
  const loadavg1 = Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  // A transient right after our own setup (RCU callbacks, a child still
  // exiting) is not another process's load: look again, up to three times.
  let a = readClock();
  await sleep(QUIET_MS);
  let b = readClock();
  for (let retry = 0; retry < 2 && otherShare(a, b) > limit; retry++) {
    a = b;
    await sleep(QUIET_MS);
    b = readClock();
  }
  const t0 = Date.now();
  const value = await fn();
  const c = readClock();
  const otherBefore = otherShare(a, b);
  const otherDuring = Date.now() - t0 >= MIN_JUDGED_MS ? otherShare(b, c) : null;
  return {
    value,
    load: { loadavg1, otherBefore, otherDuring, limit, busy: otherBefore > limit || (otherDuring ?? 0) > limit },
  };
}

/** Busy CPU time of the whole machine, in ns, including interrupts (for CPU-per-packet). */
export function machineBusyNs(): number {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0] = f;
  return ((user + nice + system + irq + softirq) * 1e9) / USER_HZ;
}

/** Number of CPUs, for the report. */
export function cpuCount(): number {
  return cpus().length;
}
