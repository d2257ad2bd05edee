/**
 * Reader of ps_unmatched: traffic no rule matched, per (direction, protocol,
 * local port), summed over CPUs. Filled only on interfaces whose policy sets
 * countUnmatched (PS_IFACE_COUNT_UNMATCHED).
 */
import type { DataPlane } from './dataplane.js';
import { PS, psPortTraffic } from './layout.js';
import { roundUp8 } from './maps.js';

/** One (direction, protocol, port) row with traffic. */
export interface UnmatchedRow {
  direction: 'ingress' | 'egress';
  protocol: 'tcp' | 'udp';
  port: number;
  packets: number;
  bytes: number;
}

/** Map a ps_unmatched index back to its direction, protocol and port (inverse of unmatchedIndex). */
export function decodeUnmatchedIndex(index: number): Pick<UnmatchedRow, 'direction' | 'protocol' | 'port'> {
  const high = index >>> 16;
  return {
    direction: high >> 1 === PS.PS_DIR_INGRESS ? 'ingress' : 'egress',
    protocol: (high & 1) === PS.PS_PROTO_TCP ? 'tcp' : 'udp',
    port: index & 0xffff,
  };
}

/**
 * Every row with traffic, read with batch syscalls (the whole per-CPU array:
 * PS_UNMATCHED_SIZE × CPUs × 16 bytes, so call it about once a second).
 */
export function readUnmatched(dp: DataPlane): UnmatchedRow[] {
  const map = dp.maps.ps_unmatched;
  const { values, count } = map.readAll();
  const step = roundUp8(psPortTraffic.size);
  const out: UnmatchedRow[] = [];
  for (let i = 0; i < count; i++) {
    let packets = 0n;
    let bytes = 0n;
    for (let cpu = 0; cpu < dp.cpus; cpu++) {
      const at = i * map.stride + cpu * step;
      packets += values.readBigUInt64LE(at);
      bytes += values.readBigUInt64LE(at + 8);
    }
    if (packets > 0n) out.push({ ...decodeUnmatchedIndex(i), packets: Number(packets), bytes: Number(bytes) });
  }
  return out;
}
