/**
 * A data plane of its own for each test file: a unique pin directory, the
 * real object loaded (optionally with the test clock), removed afterwards.
 */
import { DataPlane } from '../../src/kernel/dataplane.js';
import { removePins } from '../../src/kernel/pins.js';
import type { DesiredBucket, DesiredClientLimit, DesiredPortRange, DesiredState, Direction, Mode, Protocol, Side } from '../../src/kernel/desired.js';

/** Unique bpffs pin directory for a test file. */
export function testPinDir(tag: string): string {
  return `/sys/fs/bpf/ps-test-${tag}-${process.pid}`;
}

/** Open a data plane in its own pin dir; `dispose()` closes it and removes the pins. */
export function openTestDataPlane(tag: string, opts: { testClock?: boolean; clientTable?: number } = {}) {
  const pinDir = testPinDir(tag);
  removePins(pinDir);
  const dp = DataPlane.open({ pinDir, testClock: opts.testClock ?? false, ...(opts.clientTable ? { clientTable: opts.clientTable } : {}) });
  return {
    dp,
    pinDir,
    dispose() {
      dp.close();
      removePins(pinDir);
    },
  };
}

/** A compact way to state one rule in a test. */
export interface TestRule {
  name: string;
  port: number | [number, number];
  protocol?: Protocol | 'any';
  direction?: Direction | 'both';
  side?: Side;
  rateBps: number;
  burstNs: number;
  mode?: Mode;
  /** Defaults: 0 (no ECN marking), and no horizon (0; shape tests set one). */
  ecnNs?: number;
  horizonNs?: number;
  /** Packet and new-connection limits: ns per event and depth (default none). */
  pktCostNs?: number;
  pktBurstNs?: number;
  synCostNs?: number;
  synBurstNs?: number;
  client?: DesiredClientLimit;
  perPort?: boolean;
  profile?: number;
}

/** Expand test rules into a DesiredState the way the planner would. */
export function desiredFrom(rules: TestRule[], interfaces: DesiredState['interfaces'] = []): DesiredState {
  const buckets: DesiredBucket[] = [];
  const ports: DesiredPortRange[] = [];
  for (const r of rules) {
    const [from, to] = typeof r.port === 'number' ? [r.port, r.port] : r.port;
    const dirs: Direction[] = !r.direction || r.direction === 'both' ? ['ingress', 'egress'] : [r.direction];
    const protos: Protocol[] = !r.protocol || r.protocol === 'any' ? ['tcp', 'udp'] : [r.protocol];
    for (const direction of dirs) {
      const key = `${r.name}/${direction}`;
      const base = {
        rule: r.name,
        direction,
        rateBps: r.rateBps,
        burstNs: r.burstNs,
        mode: r.mode ?? 'police',
        ecnNs: r.ecnNs ?? 0,
        horizonNs: r.horizonNs ?? 0,
        pktCostNs: r.pktCostNs ?? 0,
        pktBurstNs: r.pktBurstNs ?? 0,
        synCostNs: r.synCostNs ?? 0,
        synBurstNs: r.synBurstNs ?? 0,
        ...(r.client ? { client: r.client } : {}),
      } as const;
      if (r.perPort) for (let p = from; p <= to; p++) buckets.push({ ...base, key: `${key}/${p}`, port: p });
      else buckets.push({ ...base, key });
      for (const protocol of protos) {
        ports.push({ profile: r.profile ?? 0, direction, protocol, side: r.side ?? 'local', from, to, bucket: key, perPort: !!r.perPort });
      }
    }
  }
  return { buckets, ports, interfaces };
}
