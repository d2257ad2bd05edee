/**
 * Keeps the data plane attached to the policy's interfaces: registers each
 * one with its rule profile, attaches our filters, notices an interface that
 * disappeared or came back with a new ifindex (a container's veth), and
 * removes our filters from interfaces the policy no longer names.
 */
import type { Logger } from 'pino';
import type { DataPlane } from '../kernel/dataplane.js';
import type { DesiredInterface } from '../kernel/desired.js';
import { ifNameToIndex } from '../kernel/libc.js';
import { removeHtbRoot, type HtbClassSpec } from '../kernel/qdisc.js';
import { checkRoot, HtbMirror } from './shaping.js';

/** What we know about one configured interface. */
export interface InterfaceState {
  name: string;
  /** 0 while the interface does not exist. */
  ifindex: number;
  profile: number;
  ingress: boolean;
  egress: boolean;
  /** The profile has remote-side rules in that direction. */
  remote: { ingress: boolean; egress: boolean };
  /** HTB classes its egress needs (empty: nothing shaped, no root of ours). */
  classes: HtbClassSpec[];
  replaceQdisc: boolean;
  /** Count unmatched traffic per port. */
  countUnmatched: boolean;
  /** Program ids we attached (0 where the hook is not used). */
  progIds: { ingress: number; egress: number };
  /** Last error attaching, if any. */
  error?: string;
}

/** Attachment manager for one data plane. */
export class InterfaceSync {
  private states = new Map<string, InterfaceState>();
  /** Our HTB classes per device, so that an apply writes only the classes that changed. */
  private readonly htb = new HtbMirror();

  constructor(
    private readonly dp: DataPlane,
    private readonly log: Logger,
  ) {}

  /** Current view, for the API's readiness check and status. */
  list(): InterfaceState[] {
    return [...this.states.values()];
  }

  /**
   * Before the rules change: refuse a foreign root qdisc on any present
   * interface that is to shape (nothing changed yet), then install or change
   * the HTB classes the new rules will point at. Throws on refusal.
   */
  prepareShaping(wanted: DesiredInterface[], classes: Map<string, HtbClassSpec[]>): void {
    const present = wanted.map((w) => ({ w, ifindex: ifNameToIndex(w.name), specs: classes.get(w.name) ?? [] })).filter((p) => p.ifindex > 0);
    for (const { w, ifindex, specs } of present) checkRoot(ifindex, w.name, specs, w.replaceQdisc);
    for (const { w, ifindex, specs } of present) this.htb.addClasses(ifindex, w.name, specs, w.replaceQdisc);
  }

  /**
   * Bring attachments in line with `wanted`, and prune HTB classes no rule
   * uses any more (call after the rules changed). With force, our filters
   * are (re)attached everywhere, which installs this process's program
   * atomically in place of an earlier agent's.
   */
  sync(wanted: DesiredInterface[], classes: Map<string, HtbClassSpec[]>, force = false): void {
    const next = new Map<string, InterfaceState>();
    for (const w of wanted) {
      const prev = this.states.get(w.name);
      const shaping = { classes: classes.get(w.name) ?? [], replaceQdisc: w.replaceQdisc, countUnmatched: w.countUnmatched };
      const state: InterfaceState = prev && sameHooks(prev, w)
        ? { ...prev, profile: w.profile, remote: w.remote, ...shaping }
        : { name: w.name, ifindex: 0, profile: w.profile, ingress: w.ingress, egress: w.egress, remote: w.remote, ...shaping, progIds: { ingress: 0, egress: 0 } };
      next.set(w.name, state);
      const changed =
        !prev || prev.profile !== w.profile || !sameHooks(prev, w) || !sameHooks(prev.remote, w.remote) || prev.countUnmatched !== w.countUnmatched;
      this.ensure(state, force || changed);
      if (state.ifindex > 0 && !state.error) this.prune(state);
    }
    this.states = next;
    this.removeStale(new Set([...next.values()].map((s) => s.ifindex).filter((i) => i > 0)));
  }

  /** Re-check every interface: called on a timer to re-attach within the poll period. */
  poll(): void {
    for (const state of this.states.values()) this.ensure(state, false);
  }

  /** Detach from every interface we registered (also ones from earlier runs). */
  detachAll(): void {
    this.states.clear();
    this.removeStale(new Set());
  }

  private ensure(state: InterfaceState, force: boolean): void {
    const ifindex = ifNameToIndex(state.name);
    if (ifindex === 0) {
      if (state.ifindex !== 0) {
        this.log.warn({ interface: state.name }, 'interface disappeared; will re-attach when it comes back');
        this.dp.removeInterface(state.ifindex);
        this.htb.forget(state.ifindex);
      }
      state.ifindex = 0;
      state.progIds = { ingress: 0, egress: 0 };
      return;
    }
    const moved = ifindex !== state.ifindex;
    if (!force && !moved && this.stillAttached(state)) return;
    try {
      if (moved && state.ifindex !== 0) {
        this.dp.removeInterface(state.ifindex);
        this.htb.forget(state.ifindex);
      }
      // Classes before the program can classify into them (an interface that
      // came back has lost its qdiscs with it); then register: the program
      // passes traffic of unregistered interfaces.
      this.htb.addClasses(ifindex, state.name, state.classes, state.replaceQdisc);
      this.dp.setInterface(ifindex, state.profile, state.remote, state.countUnmatched);
      this.dp.attach(ifindex, state.name, { ingress: state.ingress, egress: state.egress });
      state.ifindex = ifindex;
      state.progIds = this.dp.attached(ifindex, state.name);
      delete state.error;
      this.log.info({ interface: state.name, ifindex, profile: state.profile, ingress: state.ingress, egress: state.egress }, moved ? 'attached' : 're-attached');
    } catch (err) {
      state.error = err instanceof Error ? err.message : String(err);
      this.log.error({ interface: state.name, err: state.error }, 'attach failed; will retry');
    }
  }

  private prune(state: InterfaceState): void {
    try {
      this.htb.pruneClasses(state.ifindex, state.name, state.classes);
    } catch (err) {
      // Stale classes only cost memory; the next apply tries again.
      this.log.warn({ interface: state.name, err: err instanceof Error ? err.message : String(err) }, 'could not remove unused HTB classes');
    }
  }

  private stillAttached(state: InterfaceState): boolean {
    const now = this.dp.attached(state.ifindex, state.name);
    return now.ingress === state.progIds.ingress && now.egress === state.progIds.egress;
  }

  /** Unregister and detach ifindexes registered in the maps but no longer configured. */
  private removeStale(keep: Set<number>): void {
    for (const ifindex of this.dp.interfaces().keys()) {
      if (keep.has(ifindex)) continue;
      this.dp.removeInterface(ifindex);
      this.dp.detach(ifindex, `ifindex ${ifindex}`);
      // Our HTB root goes too: the kernel's default qdisc comes back.
      const restored = removeHtbRoot(ifindex, `ifindex ${ifindex}`);
      this.htb.forget(ifindex);
      this.log.info({ ifindex, qdiscRestored: restored }, 'detached from interface no longer in the policy');
    }
  }
}

function sameHooks(a: { ingress: boolean; egress: boolean }, b: { ingress: boolean; egress: boolean }): boolean {
  return a.ingress === b.ingress && a.egress === b.egress;
}
