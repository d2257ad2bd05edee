/**
 * Apply: the only code that writes rules into the kernel. Reads a snapshot
 * of the maps, lets the pure reconciler compute the writes, performs them in
 * the order that never leaves a port pointing at a half-written rule.
 */
import { reconcile, type KernelSnapshot, type WritePlan } from './reconcile.js';
import type { DataPlane } from './dataplane.js';
import type { DesiredState } from './desired.js';
import { PS, psClientCfg, psRule, type PsClientCfg, type PsRule } from './layout.js';
import { roundUp8 } from './maps.js';

/** Read what reconciling needs from the kernel: in-use rules and the port table. */
export function snapshot(dp: DataPlane): KernelSnapshot {
  dp.assertOpen();
  const rules = new Map<number, PsRule>();
  const stride = roundUp8(psRule.size);
  const flagsAt = psRule.fields.find((f) => f.name === 'flags')!.offset;
  const view = dp.rulesView;
  for (let slot = 1; slot < PS.PS_MAX_SLOTS; slot++) {
    // Cheap test on the flags word before decoding the whole struct.
    if (view.readUInt32LE(slot * stride + flagsAt) & PS.PS_RULE_IN_USE) rules.set(slot, psRule.decode(view, slot * stride));
  }
  const clientCfg = new Map<number, PsClientCfg>();
  const cfgs = dp.maps.ps_client_cfg.readAll();
  for (let i = 0; i < cfgs.count; i++) clientCfg.set(cfgs.keys[i]!, psClientCfg.decode(cfgs.values, i * psClientCfg.size));
  // The port table is diffed in place through the mmap view: no 8 MiB copy.
  // Call inside the agent's serialize(), so nothing else writes it meanwhile.
  return { rules, ports: dp.portsView, portStride: 2, maxSlots: PS.PS_MAX_SLOTS, clientCfg };
}

/**
 * Perform a write plan: per-client limits, fresh slots zeroed, rules written,
 * ports switched, old slots released, unused per-client limits deleted.
 */
export function applyPlan(dp: DataPlane, plan: WritePlan): void {
  dp.assertOpen();
  if (plan.clientCfg.length) {
    const values = Buffer.alloc(psClientCfg.size * plan.clientCfg.length);
    plan.clientCfg.forEach(({ cfg }, i) => psClientCfg.encode(cfg, values, i * psClientCfg.size));
    dp.maps.ps_client_cfg.writeMany(Uint32Array.from(plan.clientCfg.map((c) => c.slot)), values);
  }
  const fresh = plan.rules.filter((w) => w.fresh).map((w) => w.slot);
  if (fresh.length) {
    // Zeroed state means "full bucket at the first packet" (tat_ns = 0).
    const keys = Uint32Array.from(fresh);
    dp.maps.ps_buckets.writeMany(keys, Buffer.alloc(dp.maps.ps_buckets.stride * fresh.length));
    dp.maps.ps_counters.writeMany(keys, Buffer.alloc(dp.maps.ps_counters.stride * fresh.length));
  }
  writeRules(dp, plan.rules.map((w) => [w.slot, w.rule]));
  // Single aligned u32 stores: the program sees the old or the new slot, never a mix. The view is
  // mapped only when there is a port to write (mapping inserts every page of the 16 MiB table).
  if (plan.portIndexes.length) {
    const view = dp.portsView;
    for (let i = 0; i < plan.portIndexes.length; i++) view[2 * plan.portIndexes[i]!] = plan.portSlots[i]!;
  }
  writeRules(
    dp,
    plan.release.map((slot) => [slot, UNUSED]),
  );
  for (const slot of plan.clientCfgRemove) dp.maps.ps_client_cfg.delete(slot);
}

/** A released slot's rule. */
const UNUSED: PsRule = psRule.decode(Buffer.alloc(psRule.size));

function writeRules(dp: DataPlane, entries: [number, PsRule][]): void {
  if (!entries.length) return;
  const keys = new Uint32Array(entries.length);
  const values = Buffer.alloc(psRule.size * entries.length);
  entries.forEach(([slot, rule], i) => {
    keys[i] = slot;
    psRule.encode(rule, values, i * psRule.size);
  });
  dp.maps.ps_rules.writeMany(keys, values);
}

/** Reconcile the kernel with a desired state; returns the plan performed. */
export function applyDesired(dp: DataPlane, desired: DesiredState): WritePlan {
  const plan = reconcile(desired, snapshot(dp));
  applyPlan(dp, plan);
  return plan;
}
