/**
 * A small synchronous rtnetlink client for tc: the netlink message codec
 * (nlmsghdr, attributes, struct tcmsg, ACK and error decoding) and a
 * request/reply exchange over a short-lived NETLINK_ROUTE socket, through
 * libc's socket calls bound with koffi. We speak netlink ourselves rather
 * than spawn tc(8): no process per change, and the kernel's own errors.
 *
 * Netlink integers are in host byte order; portshaper runs on little-endian
 * hosts (x86_64, arm64), so the codec writes little-endian.
 */
import koffi from 'koffi';
import { constants as osConstants } from 'node:os';
import { CODE, KernelError, NetlinkError, type ErrorCode } from '../errors.js';
import { closeFd, errnoName } from './libc.js';
import { libc } from './native.js';

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

/** Request flags (linux/netlink.h). DUMP shares its bits with REPLACE|EXCL: GET requests read them as DUMP, NEW requests as REPLACE/EXCL. */
export const NLM_F = { REQUEST: 0x1, ACK: 0x4, ECHO: 0x8, REPLACE: 0x100, EXCL: 0x200, CREATE: 0x400, DUMP: 0x300 } as const;
// Flags of an NLMSG_ERROR reply: the request was not echoed beyond its header; TLVs follow.
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;

/** tc message types (linux/rtnetlink.h). */
export const RTM = { NEWQDISC: 36, DELQDISC: 37, GETQDISC: 38, NEWTCLASS: 40, DELTCLASS: 41, GETTCLASS: 42 } as const;
export const TCA_KIND = 1;
export const TCA_OPTIONS = 2;
export const TC_H_ROOT = 0xffffffff;

const NLMSG_HDRLEN = 16;
const NLA_HDRLEN = 4;
const TCMSG_LEN = 20;
// nla_type keeps the low 14 bits; NLA_F_NESTED and NLA_F_NET_BYTEORDER are flags.
const NLA_TYPE_MASK = 0x3fff;
const NLMSGERR_ATTR_MSG = 1;

const align4 = (n: number): number => (n + 3) & ~3;

// ---------------------------------------------------------------------------
// Attributes

/** One attribute: 4-byte header (length, type), payload, zero padding to 4 bytes. */
export function nlAttr(type: number, payload: Buffer): Buffer {
  const attr = Buffer.alloc(align4(NLA_HDRLEN + payload.length));
  attr.writeUInt16LE(NLA_HDRLEN + payload.length, 0);
  attr.writeUInt16LE(type, 2);
  payload.copy(attr, NLA_HDRLEN);
  return attr;
}

/** A u32 attribute. */
export function nlAttrU32(type: number, value: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32LE(value);
  return nlAttr(type, payload);
}

/** A u64 attribute. */
export function nlAttrU64(type: number, value: bigint): Buffer {
  const payload = Buffer.alloc(8);
  payload.writeBigUInt64LE(value);
  return nlAttr(type, payload);
}

/** A NUL-terminated string attribute (what the kernel's nla_strcmp expects for TCA_KIND). */
export function nlAttrString(type: number, value: string): Buffer {
  return nlAttr(type, Buffer.from(`${value}\0`));
}

/**
 * A nested attribute. NLA_F_NESTED is left clear, as tc(8) does: the qdisc
 * parsers use nla_parse_nested_deprecated, which neither needs nor checks it.
 */
export function nlNest(type: number, children: Buffer[]): Buffer {
  return nlAttr(type, Buffer.concat(children));
}

/** The attributes in a payload by type (flag bits masked off); stops at a truncated attribute. */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  for (let off = 0; off + NLA_HDRLEN <= buf.length; ) {
    const len = buf.readUInt16LE(off);
    if (len < NLA_HDRLEN || off + len > buf.length) break;
    attrs.set(buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, buf.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return attrs;
}

/** The text of a string attribute, up to its NUL. */
export function attrString(payload: Buffer): string {
  const end = payload.indexOf(0);
  return payload.toString('utf8', 0, end < 0 ? payload.length : end);
}

// ---------------------------------------------------------------------------
// Messages

/** One netlink message; `payload` is everything after the 16-byte header. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** Encode a message; the header's length field is computed. */
export function encodeMessage(m: NlMessage): Buffer {
  const header = Buffer.alloc(NLMSG_HDRLEN);
  header.writeUInt32LE(NLMSG_HDRLEN + m.payload.length, 0);
  header.writeUInt16LE(m.type, 4);
  header.writeUInt16LE(m.flags, 6);
  header.writeUInt32LE(m.seq, 8);
  header.writeUInt32LE(m.pid, 12);
  return Buffer.concat([header, m.payload, Buffer.alloc(align4(m.payload.length) - m.payload.length)]);
}

/** Split a datagram into its messages (payloads are views into `buf`). */
export function parseMessages(buf: Buffer): NlMessage[] {
  const messages: NlMessage[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length; ) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    messages.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return messages;
}

/** How a request ended: errno (positive; 0 for success) and the kernel's extended-ack text, if any. */
export interface NlStatus {
  errno: number;
  extAck: string;
}

/**
 * The status in an NLMSG_ERROR (an ACK when the error is 0) or NLMSG_DONE.
 * NLMSG_ERROR carries `int error`, then the request's header — or the whole
 * request unless NLM_F_CAPPED — then, with NLM_F_ACK_TLVS, the extended-ack
 * attributes; NLMSG_DONE carries the int and then the attributes.
 */
export function parseStatus(m: NlMessage): NlStatus {
  const errno = Math.abs(m.payload.readInt32LE(0));
  if (!(m.flags & NLM_F_ACK_TLVS)) return { errno, extAck: '' };
  let tlvs = 4;
  if (m.type === NLMSG_ERROR) tlvs += m.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : m.payload.readUInt32LE(4);
  const text = parseAttrs(m.payload.subarray(align4(tlvs))).get(NLMSGERR_ATTR_MSG);
  return { errno, extAck: text ? attrString(text) : '' };
}

/** struct tcmsg: the fixed header of every qdisc and class message (family AF_UNSPEC, padding zero). */
export interface Tcmsg {
  ifindex: number;
  handle: number;
  parent: number;
  /** Replies only: a class's leaf qdisc handle (htb_dump_class), a qdisc's refcount. */
  info: number;
}

/** A tcmsg followed by attributes, as the payload of a tc request. */
export function encodeTcPayload(t: Omit<Tcmsg, 'info'>, attrs: Buffer[] = []): Buffer {
  const tcm = Buffer.alloc(TCMSG_LEN);
  tcm.writeInt32LE(t.ifindex, 4);
  tcm.writeUInt32LE(t.handle, 8);
  tcm.writeUInt32LE(t.parent, 12);
  return Buffer.concat([tcm, ...attrs]);
}

/** The tcmsg and attributes of a tc reply. */
export function parseTcPayload(payload: Buffer): Tcmsg & { attrs: Map<number, Buffer> } {
  return {
    ifindex: payload.readInt32LE(4),
    handle: payload.readUInt32LE(8),
    parent: payload.readUInt32LE(12),
    info: payload.readUInt32LE(16),
    attrs: parseAttrs(payload.subarray(TCMSG_LEN)),
  };
}

// ---------------------------------------------------------------------------
// Errors

/**
 * The error for a refused request: PS_PERMISSION for EPERM (the commonest
 * cause, one code as for libbpf calls), `code` otherwise.
 */
export function refusal(code: ErrorCode, operation: string, status: NlStatus, hint?: string): NetlinkError {
  const name = errnoName(status.errno);
  return new NetlinkError(name === 'EPERM' ? CODE.PS_PERMISSION : code, operation, status.errno, name, status.extAck, hint);
}

// ---------------------------------------------------------------------------
// Socket

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
const SOL_NETLINK = 270;
const NETLINK_EXT_ACK = 11;
const MSG_TRUNC = 0x20;
// Dump replies come in skbs of at most 32 KiB (netlink_recvmsg caps max_recvmsg_len).
const RECV_BYTES = 65536;
const EINTR = osConstants.errno.EINTR;

function bindSocketCalls() {
  const lib = libc();
  return {
    socket: lib.func('int socket(int domain, int type, int protocol)'),
    setsockopt: lib.func('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)'),
    send: lib.func('intptr_t send(int fd, const void *buf, size_t len, int flags)'),
    recv: lib.func('intptr_t recv(int fd, _Out_ void *buf, size_t len, int flags)'),
    rxBuf: Buffer.alloc(RECV_BYTES),
  };
}
let bound: ReturnType<typeof bindSocketCalls> | undefined;
// Bound on first use, so importing this module costs nothing.
const sys = (): ReturnType<typeof bindSocketCalls> => (bound ??= bindSocketCalls());

function socketError(operation: string, errno: number): KernelError {
  return new KernelError(CODE.PS_KERNEL, operation, errno, errnoName(errno), '');
}

/** A request: type, flags (NLM_F_REQUEST and NLM_F_ACK are added) and payload. */
export interface NlRequest {
  type: number;
  flags: number;
  payload: Buffer;
}

/** The kernel's answer to one request: its reply messages (a dump's entries, payloads copied) and how it ended. */
export interface NlReply extends NlStatus {
  messages: NlMessage[];
}

/** Sends one request and collects its answer; see withRtnl. */
export type Talk = (request: NlRequest) => NlReply;

let lastSeq = 0;

/**
 * Run fn with a NETLINK_ROUTE socket opened in the calling thread's current
 * network namespace (so inNetns reaches other namespaces), closed afterwards.
 * Each talk() sends one request and reads until its ACK, its error or the end
 * of its dump: requests go one at a time because the kernel runs one dump per
 * socket at a time and a failed step must stop the next.
 */
export function withRtnl<T>(fn: (talk: Talk) => T): T {
  const c = sys();
  const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) as number;
  if (fd < 0) throw socketError('open a NETLINK_ROUTE socket', koffi.errno());
  try {
    // Best effort (kernels since 4.12): the kernel then explains refusals in text.
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, Buffer.from([1, 0, 0, 0]), 4);
    // No bind(): the first send autobinds a port id; unbound, the destination is the kernel.
    return fn((request) => exchange(fd, request));
  } finally {
    closeFd(fd);
  }
}

function exchange(fd: number, request: NlRequest): NlReply {
  const c = sys();
  const seq = (lastSeq = (lastSeq + 1) >>> 0);
  const out = encodeMessage({ ...request, flags: request.flags | NLM_F.REQUEST | NLM_F.ACK, seq, pid: 0 });
  while ((c.send(fd, out, out.length, 0) as number) < 0) {
    if (koffi.errno() !== EINTR) throw socketError('send to NETLINK_ROUTE', koffi.errno());
  }
  const messages: NlMessage[] = [];
  for (;;) {
    // MSG_TRUNC: recv returns the datagram's real length, so a truncation is seen, not misparsed.
    const n = c.recv(fd, c.rxBuf, RECV_BYTES, MSG_TRUNC) as number;
    if (n < 0) {
      if (koffi.errno() === EINTR) continue;
      throw socketError('receive from NETLINK_ROUTE', koffi.errno());
    }
    if (n > RECV_BYTES) throw socketError(`receive a ${n}-byte NETLINK_ROUTE reply`, osConstants.errno.EMSGSIZE);
    for (const m of parseMessages(c.rxBuf.subarray(0, n))) {
      // Skip anything not answering this request (none expected: the socket joins no multicast group).
      if (m.seq !== seq) continue;
      // A dump ends with NLMSG_DONE (no ACK: netlink_dump_start suppresses it); anything else with NLMSG_ERROR.
      if (m.type === NLMSG_ERROR || m.type === NLMSG_DONE) return { messages, ...parseStatus(m) };
      messages.push({ ...m, payload: Buffer.from(m.payload) });
    }
  }
}
