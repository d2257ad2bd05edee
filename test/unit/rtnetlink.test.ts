/**
 * The rtnetlink codec and the HTB structs, byte for byte, without a kernel.
 * Golden bytes follow from the layouts in linux/netlink.h, rtnetlink.h and
 * pkt_sched.h (little-endian host order); the kernel test checks that the
 * kernel reads them as meant.
 */
import { describe, expect, it } from 'vitest';
import { KernelError, NetlinkError } from '../../src/errors.js';
import { classId, encodeHtbOpt, htbClassOptions, htbClassParams, leafHandle, PS_HTB_MAJOR } from '../../src/kernel/qdisc.js';
import {
  attrString,
  encodeMessage,
  encodeTcPayload,
  NLM_F,
  NLMSG_DONE,
  NLMSG_ERROR,
  nlAttr,
  nlAttrString,
  nlAttrU32,
  nlAttrU64,
  nlNest,
  parseAttrs,
  parseMessages,
  parseStatus,
  parseTcPayload,
  refusal,
  RTM,
  TC_H_ROOT,
  TCA_KIND,
  TCA_OPTIONS,
} from '../../src/kernel/rtnetlink.js';

const hex = (b: Buffer): string => b.toString('hex');
const bytes = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

describe('netlink attributes', () => {
  it('pads payloads to 4 bytes; the length field excludes the padding', () => {
    expect(hex(nlAttrString(TCA_KIND, 'htb')), 'TCA_KIND "htb"').toBe('08000100' + '68746200');
    expect(hex(nlAttrString(TCA_KIND, 'bfifo')), 'TCA_KIND "bfifo"').toBe('0a000100' + '626669666f00' + '0000');
    expect(hex(nlAttrU64(6, 5_000_000_000n)), 'u64 attribute').toBe('0c000600' + '00f2052a01000000');
  });

  it('nests child attributes in the parent payload', () => {
    expect(hex(nlNest(TCA_OPTIONS, [nlAttrU32(5, 1000)])), 'TCA_OPTIONS { u32 5 = 1000 }').toBe('0c000200' + '08000500' + 'e8030000');
  });

  it('decodes by type with NLA_F_NESTED masked off, and stops at a truncated attribute', () => {
    const nestedFlag = bytes('0c000280 08000500 e8030000');
    const attrs = parseAttrs(Buffer.concat([nlAttrString(TCA_KIND, 'bfifo'), nestedFlag, bytes('2000 0300 0000')]));
    expect([...attrs.keys()], 'attribute types').toEqual([TCA_KIND, TCA_OPTIONS]);
    expect(attrString(attrs.get(TCA_KIND)!)).toBe('bfifo');
    expect(parseAttrs(attrs.get(TCA_OPTIONS)!).get(5)!.readUInt32LE(0), 'nested u32').toBe(1000);
  });
});

describe('netlink messages', () => {
  const install = encodeMessage({
    type: RTM.NEWQDISC,
    flags: NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE,
    seq: 7,
    pid: 0,
    payload: encodeTcPayload({ ifindex: 3, handle: 0x5053_0000, parent: TC_H_ROOT }, [nlAttrString(TCA_KIND, 'htb')]),
  });

  it('encodes nlmsghdr + tcmsg + attributes', () => {
    expect(hex(install), 'RTM_NEWQDISC htb 5053: root on ifindex 3').toBe(
      hex(bytes(`
        2c000000 2400 0504 07000000 00000000
        00 00 0000 03000000 00005350 ffffffff 00000000
        08000100 68746200`)),
    );
  });

  it('splits a datagram into messages and decodes their tcmsg', () => {
    const [first, second] = parseMessages(Buffer.concat([install, install]));
    expect(second, 'second message of the datagram').toEqual(first);
    expect(first).toMatchObject({ type: RTM.NEWQDISC, seq: 7, flags: 0x405 });
    const tc = parseTcPayload(first!.payload);
    expect(tc).toMatchObject({ ifindex: 3, handle: 0x5053_0000, parent: TC_H_ROOT, info: 0 });
    expect(attrString(tc.attrs.get(TCA_KIND)!)).toBe('htb');
  });
});

describe('ACKs and errors', () => {
  const header = (flags: number, payload: Buffer) => parseMessages(encodeMessage({ type: NLMSG_ERROR, flags, seq: 9, pid: 0, payload }))[0]!;
  const request = encodeMessage({ type: RTM.NEWTCLASS, flags: 0x405, seq: 9, pid: 0, payload: encodeTcPayload({ ifindex: 3, handle: 0x5053_000c, parent: 0x5053_0000 }) });
  const reason = nlAttrString(1, 'Specified class not found');
  const errno = (e: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(-e);
    return b;
  };

  it('reads an ACK as errno 0', () => {
    expect(parseStatus(header(0x100, Buffer.concat([errno(0), request.subarray(0, 16)])))).toEqual({ errno: 0, extAck: '' });
  });

  it('finds the extended-ack text after a capped request header', () => {
    const m = header(0x100 | 0x200, Buffer.concat([errno(2), request.subarray(0, 16), reason]));
    expect(parseStatus(m)).toEqual({ errno: 2, extAck: 'Specified class not found' });
  });

  it('finds the extended-ack text after a fully echoed request', () => {
    const m = header(0x200, Buffer.concat([errno(22), request, reason]));
    expect(parseStatus(m)).toEqual({ errno: 22, extAck: 'Specified class not found' });
  });

  it('reads the status of NLMSG_DONE, with its attributes right after the int', () => {
    const done = parseMessages(encodeMessage({ type: NLMSG_DONE, flags: 0x200, seq: 9, pid: 0, payload: Buffer.concat([errno(95), reason]) }))[0]!;
    expect(parseStatus(done)).toEqual({ errno: 95, extAck: 'Specified class not found' });
  });

  it('becomes a KernelError whose first line carries operation, errno and the kernel reason', () => {
    const e = refusal('PS_QDISC', 'set HTB class 5053:c on veth0', { errno: 2, extAck: 'Specified class not found' }, 'check it');
    expect(e).toBeInstanceOf(NetlinkError);
    expect(e).toBeInstanceOf(KernelError);
    expect(e).toMatchObject({ code: 'PS_QDISC', operation: 'set HTB class 5053:c on veth0', errno: 2, errnoName: 'ENOENT', extAck: 'Specified class not found', hint: 'check it' });
    expect(e.message).toBe('set HTB class 5053:c on veth0 failed: ENOENT (errno 2): Specified class not found\n  fix: check it');
  });

  it('reads without a reason when the kernel gave none, and files EPERM under PS_PERMISSION', () => {
    expect(refusal('PS_QDISC', 'install HTB root 5053: on veth0', { errno: 22, extAck: '' }).message).toBe('install HTB root 5053: on veth0 failed: EINVAL (errno 22)');
    expect(refusal('PS_QDISC', 'install HTB root 5053: on veth0', { errno: 1, extAck: '' }).code).toBe('PS_PERMISSION');
  });
});

describe('HTB class encoding', () => {
  const spec = { minor: 7, rateBytesPerSec: 1_250_000, burstNs: 1_000_000, quantum: 125_000, leafLimitBytes: 159_100 };

  it('encodes struct tc_htb_opt: rate = ceil, linklayer ethernet, buckets in 64 ns ticks', () => {
    // tc_ratespec: cell_log 0, linklayer 1, overhead 0, cell_align 0, mpu 0, rate 1250000 (0x1312d0).
    const ratespec = '00 01 0000 0000 0000 d0121300';
    // buffer = cbuffer = ceil(1 ms / 64 ns) = 15625 ticks (0x3d09); quantum 125000 (0x1e848); level 0; prio 0.
    expect(hex(encodeHtbOpt(spec)), 'tc_htb_opt of 10mbit, 1 ms').toBe(hex(bytes(`${ratespec} ${ratespec} 093d0000 093d0000 48e80100 00000000 00000000`)));
  });

  it('adds RATE64 and CEIL64 only above 2^32-1 bytes/s, saturating the 32-bit fields', () => {
    const fits = parseAttrs(parseAttrs(htbClassOptions({ ...spec, rateBytesPerSec: 0xffff_ffff })).get(TCA_OPTIONS)!);
    expect([...fits.keys()], 'TCA_HTB_* at 2^32-1 bytes/s').toEqual([1]);
    const wide = htbClassOptions({ ...spec, rateBytesPerSec: 5_000_000_000 });
    expect(wide.readUInt16LE(0), 'TCA_OPTIONS length: parms 48 + two u64 of 12').toBe(4 + 48 + 12 + 12);
    const opts = parseAttrs(parseAttrs(wide).get(TCA_OPTIONS)!);
    expect([...opts.keys()], 'TCA_HTB_PARMS, RATE64, CEIL64').toEqual([1, 6, 7]);
    expect(opts.get(1)!.readUInt32LE(8), '32-bit rate').toBe(0xffff_ffff);
    expect(opts.get(1)!.readUInt32LE(20), '32-bit ceil').toBe(0xffff_ffff);
    expect(opts.get(6)!.readBigUInt64LE(), 'RATE64').toBe(5_000_000_000n);
    expect(opts.get(7)!.readBigUInt64LE(), 'CEIL64').toBe(5_000_000_000n);
  });
});

describe('handles', () => {
  it('numbers classes 5053:N with leaves N:', () => {
    expect(classId(7)).toBe(0x5053_0007);
    expect(leafHandle(7)).toBe(0x0007_0000);
    expect(leafHandle(0xfffe)).toBe(0xfffe_0000);
  });

  it('refuses minors outside 1..0xfffe and 0x5053, so no leaf takes the root or clsact handle', () => {
    for (const minor of [0, 0xffff, PS_HTB_MAJOR, 1.5, -1]) expect(() => classId(minor), `minor ${minor}`).toThrow(RangeError);
    const leaves = new Set<number>();
    for (let minor = 1; minor <= 0xfffe; minor++) if (minor !== PS_HTB_MAJOR) leaves.add(leafHandle(minor));
    expect(leaves.size, 'distinct leaf handles').toBe(0xfffe - 1);
    for (const taken of [0, 0x5053_0000, 0xffff_0000]) expect(leaves.has(taken), `leaf handle 0x${taken.toString(16)}`).toBe(false);
  });
});

describe('htbClassParams', () => {
  it('derives a 10mbit class: one full frame of burst at least, quantum rate/10, leaf above what the BPF program admits', () => {
    // 1514 B at 1.25 MB/s is 1.2112 ms > 1 ms; admitted = 1.25 MB/s × (10 + 1.2112) ms = 14014 B.
    expect(htbClassParams(10e6, 1e6, 10e6)).toEqual({ rateBytesPerSec: 1_250_000, burstNs: 1_211_200, quantum: 125_000, leafLimitBytes: 2 * 14_014 + 2 * 65_536 });
  });

  it('keeps the quantum in [1514, 200000] so HTB never substitutes its own', () => {
    for (const bps of [8e3, 64e3, 1e6, 100e6, 1e9, 40e9, 400e9]) {
      const { quantum } = htbClassParams(bps, 1e6, 10e6);
      expect(quantum, `quantum at ${bps} bit/s`).toBeGreaterThanOrEqual(1514);
      expect(quantum, `quantum at ${bps} bit/s`).toBeLessThanOrEqual(200_000);
    }
  });

  it('keeps a long burst and caps the leaf at the u32 bfifo limit', () => {
    expect(htbClassParams(1e9, 50e6, 10e6).burstNs, 'burst longer than a frame').toBe(50e6);
    expect(htbClassParams(400e9, 1e9, 1e9).leafLimitBytes, '400gbit, 2 s').toBe(0xffff_ffff);
  });
});
