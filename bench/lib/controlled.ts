/**
 * portshaper driven the way the agent drives it, for shaping: the controller's
 * enforce() puts our HTB root and one class per shaped bucket on the device
 * before any rule points at a class, then writes the maps and attaches; the
 * release detaches and gives the device its default root qdisc back. Rules
 * come from a policy text (validated and planned like the agent's, so every
 * default is the shipped one) or from a DesiredState built directly (rule
 * sets too large to be worth validating in every repetition).
 */
import pino from 'pino';
import { enforce } from '../../src/controller/agent.js';
import { InterfaceSync } from '../../src/controller/interfaces.js';
import { formatDiagnostic } from '../../src/errors.js';
import { readCounters } from '../../src/kernel/counters.js';
import type { DataPlane } from '../../src/kernel/dataplane.js';
import type { DesiredState } from '../../src/kernel/desired.js';
import type { PsCounters } from '../../src/kernel/layout.js';
import { inNetns } from '../../src/kernel/netns.js';
import { parsePolicy, planPolicy, validatePolicy } from '../../src/policy/index.js';
import { clearRules } from './context.js';

const silent = pino({ level: 'silent' });

/** The device one controller manages: its namespace and name. */
export interface Device {
  ns: string;
  ifname: string;
}

/**
 * The desired state of a policy naming one interface, validated and planned
 * as the agent does (the interface is taken to exist: it lives in another
 * namespace than the benchmark process).
 */
export function planRules(ifname: string, rules: readonly string[], iface: { ingress?: boolean; egress?: boolean } = {}): DesiredState {
  const text = [
    'interfaces:',
    `  - { name: ${ifname}, ingress: ${iface.ingress ?? false}, egress: ${iface.egress ?? true} }`,
    'rules:',
    ...rules.map((r) => `  - ${r}`),
    '',
  ].join('\n');
  const { policy, diagnostics } = validatePolicy(parsePolicy(text, 'bench.yaml'), { interfaceExists: () => true });
  if (!policy) throw new Error(`bench policy rejected:\n${diagnostics.map(formatDiagnostic).join('\n')}`);
  return planPolicy(policy);
}

/** One device under the controller, with its own interface sync (as one agent has). */
export class ControlledDevice {
  private readonly sync: InterfaceSync;
  /** Bucket key → slot, from the last enforce. */
  slots = new Map<string, number>();

  constructor(
    private readonly dp: DataPlane,
    readonly device: Device,
  ) {
    this.sync = new InterfaceSync(dp, silent);
  }

  /** Classes, maps, attach: the agent's enforce(), inside the device's namespace. */
  enforce(desired: DesiredState): void {
    inNetns(this.device.ns, () => {
      this.slots = enforce(this.dp, this.sync, desired, false).slots;
    });
  }

  /** Summed per-CPU counters of one bucket. */
  counters(key: string): PsCounters {
    const slot = this.slots.get(key);
    if (slot === undefined) throw new Error(`no bucket ${key} on ${this.device.ifname} (have ${[...this.slots.keys()].join(', ')})`);
    return readCounters(this.dp, [slot]).get(slot)!;
  }

  /**
   * Detach, restore the default root qdisc, empty the maps (the next enforce
   * starts with fresh buckets). The sync unregisters every interface the data
   * plane holds: release other attachments' hooks first, not their entry.
   */
  release(): void {
    inNetns(this.device.ns, () => this.sync.detachAll());
    clearRules(this.dp);
    this.slots = new Map();
  }
}
