/**
 * Crafted Ethernet frames for BPF_PROG_TEST_RUN: every header shape the
 * classifier must parse, and the broken ones it must pass untouched.
 */

export type ExtHeader = 'hop' | 'dst' | 'routing' | 'ah' | 'frag-first' | 'frag-later';

export interface FrameSpec {
  /** VLAN ids, outermost first (two tags: 802.1ad outside, 802.1Q inside). */
  vlan?: number[];
  /** Network layer; 'arp' builds a non-IP frame. */
  ip: 4 | 6 | 'arp';
  l4?: 'tcp' | 'udp' | 'icmp';
  sport?: number;
  dport?: number;
  /** IPv4 options bytes (multiple of 4, ≤ 40). */
  ipv4Options?: number;
  /** IPv4 fragment: the first carries ports, later ones do not. */
  fragment?: 'first' | 'later';
  /** IPv6 extension headers, in order. */
  ext?: ExtHeader[];
  /** TCP data offset in 32-bit words (default 5; <5 is malformed). */
  tcpDoff?: number;
  /** Payload bytes after the L4 header. */
  payload?: number;
  /** Cut the frame to this many bytes (truncated headers). */
  truncate?: number;
  /** Override the IP version nibble (malformed). */
  badVersion?: boolean;
  /** IPv4 IHL below 5 (malformed). */
  badIhl?: boolean;
  /** The IP header's ECN field: 0 not ECT, 1 ECT(1), 2 ECT(0), 3 CE. */
  ecn?: number;
  /** Last byte of the source address (IPv4 198.18.0.x, IPv6 fd00::x), or for IPv6 a whole address in 16 bytes. */
  src?: number | Buffer;
  /** TCP flags byte (default ACK, 0x10); SYN = 0x02. */
  tcpFlags?: number;
}

const ETH_P = { ipv4: 0x0800, ipv6: 0x86dd, arp: 0x0806, vlan: 0x8100, qinq: 0x88a8 };
const PROTO = { tcp: 6, udp: 17, icmp: 1, icmp6: 58, hop: 0, routing: 43, frag: 44, dst: 60, ah: 51 };

/** Build one frame from a spec. */
export function buildFrame(spec: FrameSpec): Buffer {
  const parts: Buffer[] = [];
  const eth = Buffer.alloc(14);
  Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]).copy(eth);
  parts.push(eth);
  let typeAt = { buf: eth, off: 12 };
  const tags = spec.vlan ?? [];
  tags.forEach((id, i) => {
    typeAt.buf.writeUInt16BE(tags.length === 2 && i === 0 ? ETH_P.qinq : ETH_P.vlan, typeAt.off);
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(id & 0xfff, 0);
    parts.push(tag);
    typeAt = { buf: tag, off: 2 };
  });

  if (spec.ip === 'arp') {
    typeAt.buf.writeUInt16BE(ETH_P.arp, typeAt.off);
    parts.push(Buffer.alloc(28));
    return finish(parts, spec);
  }

  const l4 = spec.l4 ?? 'udp';
  const l4hdr = buildL4(spec, l4);
  const payload = Buffer.alloc(spec.payload ?? 18, 0xab);

  if (spec.ip === 4) {
    typeAt.buf.writeUInt16BE(ETH_P.ipv4, typeAt.off);
    const opts = spec.ipv4Options ?? 0;
    const ip = Buffer.alloc(20 + opts);
    const ihl = spec.badIhl ? 4 : 5 + opts / 4;
    ip[0] = ((spec.badVersion ? 6 : 4) << 4) | ihl;
    ip[1] = spec.ecn ?? 0;
    const body = spec.fragment === 'later' ? payload : Buffer.concat([l4hdr, payload]);
    ip.writeUInt16BE(ip.length + body.length, 2);
    ip.writeUInt16BE(spec.fragment === 'first' ? 0x2000 : spec.fragment === 'later' ? 0x2000 | 185 : 0x4000, 6);
    ip[8] = 64;
    ip[9] = l4 === 'icmp' ? PROTO.icmp : PROTO[l4];
    ip.writeUInt32BE(0xc6120000 + (typeof spec.src === 'number' ? spec.src : 1), 12); // 198.18.0.1
    ip.writeUInt32BE(0xc6120002, 16);
    for (let i = 20; i < ip.length; i++) ip[i] = 1; // NOP options
    parts.push(ip, body);
    return finish(parts, spec);
  }

  typeAt.buf.writeUInt16BE(ETH_P.ipv6, typeAt.off);
  const ip6 = Buffer.alloc(40);
  ip6[0] = (spec.badVersion ? 4 : 6) << 4;
  ip6[1] = (spec.ecn ?? 0) << 4; // traffic class low nibble: its low 2 bits are ECN
  ip6[7] = 64;
  ip6[8] = 0xfd;
  ip6[23] = typeof spec.src === 'number' ? spec.src : 1;
  if (Buffer.isBuffer(spec.src)) spec.src.copy(ip6, 8);
  ip6[24] = 0xfd;
  ip6[39] = 2;
  const chain: Buffer[] = [];
  const ext = spec.ext ?? [];
  const finalProto = l4 === 'icmp' ? PROTO.icmp6 : PROTO[l4];
  const protoOf = (e: ExtHeader) =>
    e === 'hop' ? PROTO.hop : e === 'dst' ? PROTO.dst : e === 'routing' ? PROTO.routing : e === 'ah' ? PROTO.ah : PROTO.frag;
  let later = false;
  ext.forEach((e, i) => {
    const next = i + 1 < ext.length ? protoOf(ext[i + 1]!) : finalProto;
    if (e === 'frag-first' || e === 'frag-later') {
      const h = Buffer.alloc(8);
      h[0] = next;
      h.writeUInt16BE(e === 'frag-later' ? (100 << 3) | 1 : 1, 2);
      later ||= e === 'frag-later';
      chain.push(h);
    } else if (e === 'ah') {
      const h = Buffer.alloc(16); // payload len 2 → (2 + 2) * 4 = 16 bytes
      h[0] = next;
      h[1] = 2;
      chain.push(h);
    } else {
      const h = Buffer.alloc(16); // hdrlen 1 → (1 + 1) * 8 = 16 bytes
      h[0] = next;
      h[1] = 1;
      if (e !== 'routing') h[2] = 1; // PadN
      chain.push(h);
    }
  });
  ip6[6] = ext.length ? protoOf(ext[0]!) : finalProto;
  const body = later ? payload : Buffer.concat([l4hdr, payload]);
  const extLen = chain.reduce((n, b) => n + b.length, 0);
  ip6.writeUInt16BE(extLen + body.length, 4);
  parts.push(ip6, ...chain, body);
  return finish(parts, spec);
}

function buildL4(spec: FrameSpec, l4: 'tcp' | 'udp' | 'icmp'): Buffer {
  if (l4 === 'tcp') {
    const doff = spec.tcpDoff ?? 5;
    const h = Buffer.alloc(Math.max(20, doff * 4));
    h.writeUInt16BE(spec.sport ?? 40000, 0);
    h.writeUInt16BE(spec.dport ?? 80, 2);
    h[12] = doff << 4;
    h[13] = spec.tcpFlags ?? 0x10; // ACK
    h.writeUInt16BE(65535, 14);
    return h;
  }
  if (l4 === 'udp') {
    const h = Buffer.alloc(8);
    h.writeUInt16BE(spec.sport ?? 40000, 0);
    h.writeUInt16BE(spec.dport ?? 80, 2);
    h.writeUInt16BE(8 + (spec.payload ?? 18), 4);
    return h;
  }
  const h = Buffer.alloc(8);
  h[0] = 8; // echo request
  return h;
}

function finish(parts: Buffer[], spec: FrameSpec): Buffer {
  let frame = Buffer.concat(parts);
  // BPF_PROG_TEST_RUN wants at least an Ethernet header's worth; pad short
  // frames like a NIC would (the padding is not part of any header).
  if (frame.length < 60 && spec.truncate === undefined) frame = Buffer.concat([frame, Buffer.alloc(60 - frame.length)]);
  return spec.truncate === undefined ? frame : frame.subarray(0, spec.truncate);
}

/** A struct __sk_buff image for BPF_PROG_TEST_RUN's ctx_in (192 bytes on 6.x). */
export function skbContext(opts: { ifindex?: number; gsoSegs?: number; gsoSize?: number }): Buffer {
  const ctx = Buffer.alloc(192);
  ctx.writeUInt32LE(opts.ifindex ?? 1, 40);
  ctx.writeUInt32LE(opts.gsoSegs ?? 0, 164);
  ctx.writeUInt32LE(opts.gsoSize ?? 0, 176);
  return ctx;
}
