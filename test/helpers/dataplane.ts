/**
 * A data plane of its own for each test file: a unique pin directory, the
 * real object loaded (optionally with the test clock), removed afterwards.
 */
import pino from 'pino';
import { enforce } from '../../src/controller/agent.js';
import { InterfaceSync } from '../../src/controller/interfaces.js';
import { formatDiagnostic } from '../../src/errors.js';
import { readClients, readCounters } from '../../src/kernel/counters.js';
import { DataPlane } from '../../src/kernel/dataplane.js';
import { removePins } from '../../src/kernel/pins.js';
import { inNetns } from '../../src/kernel/netns.js';
import { parsePolicy, planPolicy, validatePolicy } from '../../src/policy/index.js';

const log = pino({ level: 'silent' });
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

/**
 * One namespace's controller, driven as the agent drives it: a policy text
 * validated, planned and enforced (HTB classes, maps, attachment) on one
 * device, with its own pins.
 */
export class PolicyHarness {
  readonly dp: DataPlane;
  readonly ifaces: InterfaceSync;
  slots = new Map<string, number>();

  constructor(
    readonly ns: string,
    readonly dev: string,
    readonly pinDir: string,
    opts: { keepPins?: boolean } = {},
  ) {
    // keepPins: adopt the pins another harness made, as a restarted agent does.
    if (!opts.keepPins) removePins(pinDir);
    this.dp = DataPlane.open({ pinDir });
    this.ifaces = new InterfaceSync(this.dp, log);
  }

  /** Validate, plan and enforce a policy of these rule lines on dev, as the agent does. */
  apply(rules: string[], ifaceKeys = ', ingress: false'): void {
    const text = `pinDir: ${this.pinDir}\ninterfaces:\n  - { name: ${this.dev}${ifaceKeys} }\nrules:\n${rules.map((r) => `  - ${r}`).join('\n')}\n`;
    const { policy, diagnostics } = validatePolicy(parsePolicy(text, 'shape.yaml'), { interfaceExists: () => true });
    if (!policy) throw new Error(diagnostics.map(formatDiagnostic).join('\n'));
    inNetns(this.ns, () => {
      this.slots = enforce(this.dp, this.ifaces, planPolicy(policy), false).slots;
    });
  }

  /** The clients of a bucket: address → its entry. */
  clients(key: string) {
    return new Map(readClients(this.dp, new Set([this.slots.get(key)!])).map((c) => [c.address, c.state]));
  }

  counters(key: string) {
    const slot = this.slots.get(key)!;
    return readCounters(this.dp, [slot]).get(slot)!;
  }

  close(): void {
    try {
      inNetns(this.ns, () => this.ifaces.detachAll());
    } finally {
      this.dp.close();
      removePins(this.pinDir);
    }
  }
}
