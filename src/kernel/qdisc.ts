/**
 * The HTB tree portshaper shapes with, kept over rtnetlink: one root qdisc
 * 5053: per device, one class 5053:N per shaped flow, each with a bfifo leaf
 * queue N:. A packet reaches class 5053:N by skb->priority = 5053:N, which
 * htb_classify honours before any filter, so the tree has no tc filters.
 * The root has no default class (defcls 0): a packet whose priority names no
 * class of ours goes to HTB's direct queue, unshaped.
 *
 * Every class has rate = ceil, so none borrows: each is shaped to its own
 * rate, independent of the others.
 */
import { constants as osConstants } from 'node:os';
import { CODE, ForeignQdiscError } from '../errors.js';
import {
  attrString,
  encodeTcPayload,
  NLM_F,
  nlAttr,
  nlAttrString,
  nlAttrU32,
  nlAttrU64,
  nlNest,
  parseAttrs,
  parseTcPayload,
  refusal,
  RTM,
  TC_H_ROOT,
  TCA_KIND,
  TCA_OPTIONS,
  withRtnl,
  type NlReply,
  type Talk,
} from './rtnetlink.js';

/** Major of our root handle 5053: ("PS"). */
export const PS_HTB_MAJOR = 0x5053;
const HTB_HANDLE = (PS_HTB_MAJOR << 16) >>> 0;

/** Class id 5053:minor; minor 1..0xfffe except 0x5053, whose leaf would take the root's handle (see leafHandle). */
export function classId(minor: number): number {
  if (!Number.isInteger(minor) || minor < 1 || minor > 0xfffe || minor === PS_HTB_MAJOR) {
    throw new RangeError(`HTB class minor ${minor} is not in 1..0xfffe or is 0x5053 (the root's major)`);
  }
  return (HTB_HANDLE | minor) >>> 0;
}

/**
 * Handle of the bfifo leaf of class 5053:N: N: — so `tc qdisc show` pairs
 * them at a glance ("bfifo 7: parent 5053:7"). Qdisc handles are unique per
 * device; minors stop below 0xffff, the clsact/ingress qdisc's major.
 */
export function leafHandle(minor: number): number {
  return ((classId(minor) & 0xffff) << 16) >>> 0;
}

/** tc's notation: 5053: for a qdisc handle, 5053:7 for a class (hexadecimal). */
export function formatHandle(handle: number): string {
  const minor = handle & 0xffff;
  return `${(handle >>> 16).toString(16)}:${minor ? minor.toString(16) : ''}`;
}

// ---------------------------------------------------------------------------
// Kernel structs and attributes (linux/pkt_sched.h)

const TCA_HTB_PARMS = 1;
const TCA_HTB_INIT = 2;
const TCA_HTB_DIRECT_QLEN = 5;
const TCA_HTB_RATE64 = 6;
const TCA_HTB_CEIL64 = 7;
// htb_init refuses any other tc_htb_glob.version (TC_HTB_PROTOVER).
const TC_HTB_PROTOVER = 3;
// With a link layer set, htb_change_class consults no rate table (only
// TC_LINKLAYER_UNAWARE does, for old tc) and charges bytes at the 64-bit rate.
const TC_LINKLAYER_ETHERNET = 1;
// Bucket sizes are in psched ticks: PSCHED_TICKS2NS(x) = x << 6.
const NS_PER_TICK = 64;
const U32_MAX = 0xffffffff;

/** struct tc_htb_glob: rate2quantum 10 (the kernel's default; unused, every class gets an explicit quantum), defcls 0 (no default class). */
function encodeHtbGlob(): Buffer {
  const glob = Buffer.alloc(20);
  glob.writeUInt32LE(TC_HTB_PROTOVER, 0);
  glob.writeUInt32LE(10, 4);
  return glob;
}

/**
 * struct tc_htb_opt for a class with rate = ceil and buffer = cbuffer. The
 * 32-bit rate fields saturate; the kernel takes max(rate, TCA_HTB_RATE64)
 * (psched_ratecfg_precompute) and refuses a rate of 0.
 */
export function encodeHtbOpt(spec: HtbClassSpec): Buffer {
  const opt = Buffer.alloc(44);
  const ticks = Math.ceil(spec.burstNs / NS_PER_TICK);
  for (const at of [0, 12]) {
    // tc_ratespec: cell_log, linklayer, overhead, cell_align, mpu, rate.
    opt.writeUInt8(TC_LINKLAYER_ETHERNET, at + 1);
    opt.writeUInt32LE(Math.min(spec.rateBytesPerSec, U32_MAX), at + 8);
  }
  opt.writeUInt32LE(ticks, 24);
  opt.writeUInt32LE(ticks, 28);
  opt.writeUInt32LE(spec.quantum, 32);
  return opt;
}

/** TCA_OPTIONS of an HTB class: the parameters, plus RATE64/CEIL64 when the rate does not fit 32 bits. */
export function htbClassOptions(spec: HtbClassSpec): Buffer {
  const wide = spec.rateBytesPerSec > U32_MAX ? [TCA_HTB_RATE64, TCA_HTB_CEIL64].map((t) => nlAttrU64(t, BigInt(spec.rateBytesPerSec))) : [];
  return nlNest(TCA_OPTIONS, [nlAttr(TCA_HTB_PARMS, encodeHtbOpt(spec)), ...wide]);
}

// ---------------------------------------------------------------------------
// Class parameters

/** A full Ethernet frame (1500-byte MTU + 14-byte header). */
const FULL_FRAME = 1514;
// htb_change_class's own bounds for a computed quantum.
const QUANTUM_MAX = 200_000;
// A GSO/GRO super-packet: HTB queues it whole.
const MAX_SKB = 65536;

/** What setHtbClass needs to shape one class. */
export interface HtbClassSpec {
  minor: number;
  /** May exceed 2^32 (sent as TCA_HTB_RATE64). */
  rateBytesPerSec: number;
  burstNs: number;
  quantum: number;
  leafLimitBytes: number;
}

/**
 * Class parameters for a rule of rateBps bits/s, burst burstNs and horizon
 * horizonNs (how far ahead the BPF program's virtual queue admits packets
 * before it drops them).
 * - quantum: the DRR share per round among classes ready at once; rate/10
 *   (the kernel's default r2q), at least a full frame so each turn can send
 *   one, at most the kernel's 200000. Always sent, so the kernel never
 *   substitutes its own and warns ("quantum of class … is small/big").
 * - burstNs: at least one full frame's time at the rate, or HTB would hold
 *   every full frame back for want of tokens.
 * - leafLimitBytes: twice what the BPF program can admit ahead (horizon +
 *   burst at the rate) plus two super-packets, capped to the u32 limit, so
 *   the BPF program is the only dropper: the leaf must never drop first.
 */
export function htbClassParams(rateBps: number, burstNs: number, horizonNs: number): Omit<HtbClassSpec, 'minor'> {
  const rateBytesPerSec = Math.max(1, Math.round(rateBps / 8));
  const frameNs = Math.ceil((FULL_FRAME * 1e9) / rateBytesPerSec);
  const burst = Math.max(burstNs, frameNs);
  const quantum = Math.min(Math.max(Math.round(rateBytesPerSec / 10), FULL_FRAME), QUANTUM_MAX);
  const admitted = Math.ceil((rateBytesPerSec * (horizonNs + burst)) / 1e9);
  return { rateBytesPerSec, burstNs: burst, quantum, leafLimitBytes: Math.min(2 * admitted + 2 * MAX_SKB, U32_MAX) };
}

// ---------------------------------------------------------------------------
// Errors

const E = osConstants.errno;

function qdiscHint(errno: number, ifname: string): string {
  switch (errno) {
    case E.EPERM:
      return `changing qdiscs needs root or CAP_NET_ADMIN in the network namespace of ${ifname}`;
    case E.ENODEV:
      return `${ifname} disappeared; check "ip -br link"`;
    case E.ENOENT:
      return `if the kernel says the kind is unknown, load the schedulers: modprobe sch_htb sch_fifo; otherwise see "tc -s qdisc show dev ${ifname}" and "tc -s class show dev ${ifname}"`;
    default:
      return `the kernel's reason is in the message; see "tc -s qdisc show dev ${ifname}" and "tc -s class show dev ${ifname}"`;
  }
}

function check(reply: NlReply, operation: string, ifname: string): NlReply {
  if (reply.errno) throw refusal(CODE.PS_QDISC, operation, reply, qdiscHint(reply.errno, ifname));
  return reply;
}


// ---------------------------------------------------------------------------
// Root qdisc

/** The root qdisc of a device as the kernel reports it. */
export interface RootQdisc {
  kind: string;
  handle: number;
  /**
   * The kernel's default (noqueue, pfifo_fast, mq, net.core.default_qdisc):
   * exactly the roots with handle 0:. Kind is no guide — an mq with a handle
   * is a hand-built tree (per-queue children), not the default. Restoring a
   * builtin root means deleting ours: the kernel reattaches its default.
   */
  builtin: boolean;
  /** htb with handle 5053:. */
  ours: boolean;
}

function readRoot(talk: Talk, ifindex: number, ifname: string): RootQdisc | null {
  // The kernel answers a qdisc GET as a notification (qdisc_get_notify): to
  // RTNLGRP_TC listeners, and to the asker only with NLM_F_ECHO.
  const reply = talk({ type: RTM.GETQDISC, flags: NLM_F.ECHO, payload: encodeTcPayload({ ifindex, handle: 0, parent: TC_H_ROOT }) });
  if (reply.errno === E.ENODEV || reply.errno === E.ENOENT) return null;
  const [m] = check(reply, `read the root qdisc of ${ifname}`, ifname).messages;
  if (!m) return null;
  const { handle, attrs } = parseTcPayload(m.payload);
  const kindAttr = attrs.get(TCA_KIND);
  const kind = kindAttr ? attrString(kindAttr) : '';
  return { kind, handle, builtin: handle === 0, ours: kind === 'htb' && handle === HTB_HANDLE };
}

/** The root qdisc of a device; null when the device is gone or has none yet (never up: the kernel reports no noop placeholder). */
export function rootQdisc(ifindex: number, ifname: string): RootQdisc | null {
  return withRtnl((talk) => readRoot(talk, ifindex, ifname));
}

/**
 * Install our HTB root (no default class) unless it is there. A root someone
 * else installed is replaced only with `replace`, else ForeignQdiscError.
 */
export function ensureHtbRoot(
  ifindex: number,
  ifname: string,
  opts: { replace: boolean; directQlen?: number },
): { installed: boolean; replaced?: RootQdisc } {
  return withRtnl((talk) => {
    const root = readRoot(talk, ifindex, ifname);
    if (root?.ours) return { installed: false };
    const foreign = root && !root.builtin ? root : undefined;
    if (foreign && !opts.replace) throw new ForeignQdiscError(ifname, foreign.kind, formatHandle(foreign.handle));
    const options = [nlAttr(TCA_HTB_INIT, encodeHtbGlob())];
    // Without it the direct queue holds the device's txqueuelen packets.
    if (opts.directQlen !== undefined) options.push(nlAttrU32(TCA_HTB_DIRECT_QLEN, opts.directQlen));
    // Without NLM_F_REPLACE the kernel itself refuses to displace a non-default
    // root ("NLM_F_REPLACE needed to override"), so a foreign root that
    // appeared since readRoot is not replaced either.
    const flags = NLM_F.CREATE | (opts.replace ? NLM_F.REPLACE : NLM_F.EXCL);
    const payload = encodeTcPayload({ ifindex, handle: HTB_HANDLE, parent: TC_H_ROOT }, [nlAttrString(TCA_KIND, 'htb'), nlNest(TCA_OPTIONS, options)]);
    check(talk({ type: RTM.NEWQDISC, flags, payload }), `install HTB root ${formatHandle(HTB_HANDLE)} on ${ifname}`, ifname);
    return foreign ? { installed: true, replaced: foreign } : { installed: true };
  });
}

/**
 * Delete our root (and with it every class and leaf); the kernel reattaches
 * its default. False when there was nothing of ours to remove.
 */
export function removeHtbRoot(ifindex: number, ifname: string): boolean {
  return withRtnl((talk) => {
    // Handle and kind make the deletion conditional in the kernel (tc_get_qdisc
    // answers EINVAL for a root with another handle or kind): no read-then-delete race.
    const payload = encodeTcPayload({ ifindex, handle: HTB_HANDLE, parent: TC_H_ROOT }, [nlAttrString(TCA_KIND, 'htb')]);
    const reply = talk({ type: RTM.DELQDISC, flags: 0, payload });
    // Not there: no such device (ENODEV), no root to delete (ENOENT), or a
    // root that is not ours (EINVAL: "Invalid handle", "Invalid qdisc name").
    if ([E.ENOENT, E.ENODEV, E.EINVAL].includes(reply.errno)) return false;
    check(reply, `remove HTB root ${formatHandle(HTB_HANDLE)} from ${ifname}`, ifname);
    return true;
  });
}

// ---------------------------------------------------------------------------
// Classes

/** A class under our root as the kernel reports it. */
export interface HtbClassState {
  minor: number;
  rateBytesPerSec: number;
  ceilBytesPerSec: number;
  bufferNs: number;
  quantum: number;
  /** Absent when the class has no leaf qdisc we can see (its default is invisible to dumps). */
  leafKind?: string;
  leafLimitBytes?: number;
}

function rate(opts: Map<number, Buffer>, parms: Buffer, at: number, wide: number): number {
  const rate64 = opts.get(wide);
  return rate64 ? Number(rate64.readBigUInt64LE()) : parms.readUInt32LE(at + 8);
}

/** Every class under our root, by minor, with its leaf qdisc. */
export function listHtbClasses(ifindex: number, ifname: string): Map<number, HtbClassState> {
  return withRtnl((talk) => {
    const classes = new Map<number, HtbClassState>();
    const byLeaf = new Map<number, HtbClassState>();
    const dump = { flags: NLM_F.DUMP, payload: encodeTcPayload({ ifindex, handle: 0, parent: 0 }) };
    // tc_dump_tclass walks one device: the one in tcm_ifindex.
    for (const m of check(talk({ type: RTM.GETTCLASS, ...dump }), `list HTB classes of ${ifname}`, ifname).messages) {
      const c = parseTcPayload(m.payload);
      const kind = c.attrs.get(TCA_KIND);
      const options = c.attrs.get(TCA_OPTIONS);
      if ((c.handle & 0xffff0000) >>> 0 !== HTB_HANDLE || !kind || attrString(kind) !== 'htb' || !options) continue;
      const opts = parseAttrs(options);
      const parms = opts.get(TCA_HTB_PARMS);
      if (!parms) continue;
      const state: HtbClassState = {
        minor: c.handle & 0xffff,
        rateBytesPerSec: rate(opts, parms, 0, TCA_HTB_RATE64),
        ceilBytesPerSec: rate(opts, parms, 12, TCA_HTB_CEIL64),
        bufferNs: parms.readUInt32LE(24) * NS_PER_TICK,
        quantum: parms.readUInt32LE(32),
      };
      classes.set(state.minor, state);
      // htb_dump_class reports the leaf qdisc's handle in tcm_info.
      if (c.info) byLeaf.set(c.info, state);
    }
    if (byLeaf.size === 0) return classes;
    // tc_dump_qdisc walks every device of the namespace: keep this one's leaves.
    for (const m of check(talk({ type: RTM.GETQDISC, ...dump }), `list leaf qdiscs of ${ifname}`, ifname).messages) {
      const q = parseTcPayload(m.payload);
      const state = q.ifindex === ifindex ? byLeaf.get(q.handle) : undefined;
      const kind = q.attrs.get(TCA_KIND);
      if (!state || !kind || q.parent !== (HTB_HANDLE | state.minor) >>> 0) continue;
      state.leafKind = attrString(kind);
      // fifo_dump puts struct tc_fifo_qopt { u32 limit } directly in TCA_OPTIONS, not nested.
      const fifo = q.attrs.get(TCA_OPTIONS);
      if (state.leafKind === 'bfifo' && fifo && fifo.length >= 4) state.leafLimitBytes = fifo.readUInt32LE(0);
    }
    return classes;
  });
}

/**
 * Create class 5053:minor with its bfifo leaf, or change both in place: an
 * existing class keeps its queue and counters (htb_change_class without
 * NLM_F_EXCL only recomputes rate, quantum and buckets) and a leaf with our
 * handle only takes the new limit (fifo's change op).
 */
export function setHtbClass(ifindex: number, ifname: string, spec: HtbClassSpec): void {
  const id = classId(spec.minor);
  withRtnl((talk) => {
    const cls = encodeTcPayload({ ifindex, handle: id, parent: HTB_HANDLE }, [htbClassOptions(spec)]);
    check(talk({ type: RTM.NEWTCLASS, flags: NLM_F.CREATE, payload: cls }), `set HTB class ${formatHandle(id)} on ${ifname}`, ifname);
    // NLM_F_REPLACE grafts ours over the class's default pfifo; when the leaf
    // already has our handle, tc_modify_qdisc changes it instead.
    const leaf = encodeTcPayload({ ifindex, handle: leafHandle(spec.minor), parent: id }, [
      nlAttrString(TCA_KIND, 'bfifo'),
      nlAttrU32(TCA_OPTIONS, spec.leafLimitBytes),
    ]);
    check(talk({ type: RTM.NEWQDISC, flags: NLM_F.CREATE | NLM_F.REPLACE, payload: leaf }), `set bfifo leaf ${formatHandle(leafHandle(spec.minor))} of class ${formatHandle(id)} on ${ifname}`, ifname);
  });
}

/** Delete class 5053:minor and its leaf; false when it (or the device) is not there. */
export function deleteHtbClass(ifindex: number, ifname: string, minor: number): boolean {
  const id = classId(minor);
  return withRtnl((talk) => {
    const reply = talk({ type: RTM.DELTCLASS, flags: 0, payload: encodeTcPayload({ ifindex, handle: id, parent: 0 }) });
    if (reply.errno === E.ENOENT || reply.errno === E.ENODEV) return false;
    check(reply, `delete HTB class ${formatHandle(id)} from ${ifname}`, ifname);
    return true;
  });
}
