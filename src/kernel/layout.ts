/**
 * TypeScript mirror of bpf/portshaper.h: the constants and struct layouts
 * shared with the eBPF program, and the one codec that reads and writes them.
 * test/kernel/layout.test.ts checks every offset, size and constant here
 * against the compiled object's BTF, so a drift fails the build, not traffic.
 */

/** Constants of portshaper.h, by their C enum names (checked against BTF). */
export const PS = {
  PS_LAYOUT_VERSION: 2,
  PS_PORTS: 65536,
  PS_MAX_PROFILES: 4,
  PS_MAX_SLOTS: 262144,
  PS_MAX_IFACES: 64,
  PS_MAX_EXTHDRS: 6,
  PS_CAS_TRIES: 4,
  PS_CLIENTS_DEFAULT: 65536,
  PS_MAX_CLIENT_RULES: 65536,
  PS_DIR_INGRESS: 0,
  PS_DIR_EGRESS: 1,
  PS_PROTO_TCP: 0,
  PS_PROTO_UDP: 1,
  PS_SIDE_LOCAL: 0,
  PS_SIDE_REMOTE: 1,
  PS_MODE_POLICE: 0,
  PS_MODE_MONITOR: 1,
  PS_MODE_SHAPE: 2,
  PS_RULE_IN_USE: 1,
  PS_RULE_CLIENTS: 2,
  PS_IFACE_REMOTE_INGRESS: 1,
  PS_IFACE_REMOTE_EGRESS: 2,
  PS_IFACE_COUNT_UNMATCHED: 4,
  PS_G_NON_IP: 0,
  PS_G_UNPARSED: 1,
  PS_G_FRAGMENT: 2,
  PS_G_UNMATCHED: 3,
  PS_G_KINDS: 4,
  PS_PARSED: 4,
  PS_PORT_TABLE_SIZE: 2097152,
  PS_UNMATCHED_SIZE: 262144,
} as const;

/** Names of the ps_global columns, in enum ps_global_kind order. */
export const GLOBAL_KINDS = ['nonIp', 'unparsed', 'fragment', 'unmatched'] as const;
export type GlobalKind = (typeof GLOBAL_KINDS)[number];

/** Index into ps_ports for one (profile, direction, protocol, side, port): ps_port_index() of portshaper.h. */
export function portIndex(profile: number, dir: number, proto: number, side: number, port: number): number {
  return ((((profile * 2 + dir) * 2 + proto) * 2 + side) << 16) | port;
}

/** Index into ps_unmatched for one (direction, protocol, local port): ps_unmatched_index() of portshaper.h. */
export function unmatchedIndex(dir: number, proto: number, port: number): number {
  return ((dir * 2 + proto) << 16) | port;
}

type Scalar = 'u32' | 'u64';
type FieldType = Scalar | { array: 'u64'; length: number };

interface FieldSpec {
  name: string;
  type: FieldType;
}

/** One field's place in a struct, as BTF reports it. */
export interface FieldLayout {
  name: string;
  offset: number;
  size: number;
}

const SCALAR_SIZE: Record<Scalar, number> = { u32: 4, u64: 8 };

function fieldSize(t: FieldType): number {
  return typeof t === 'string' ? SCALAR_SIZE[t] : 8 * t.length;
}
function fieldAlign(t: FieldType): number {
  return typeof t === 'string' ? SCALAR_SIZE[t] : 8;
}

/** TS value type of a field: u32 → number, 64-bit → bigint, arrays → bigint[]. */
type FieldValue<T extends FieldType> = T extends 'u32' ? number : T extends Scalar ? bigint : bigint[];

type Fields = readonly (readonly [string, FieldType])[];
type StructValue<F extends Fields> = { [K in F[number] as K[0]]: FieldValue<K[1]> };

/** A C struct's layout with natural alignment, and its codec. */
export class Struct<F extends Fields> {
  readonly fields: FieldLayout[];
  readonly size: number;
  private readonly specs: FieldSpec[];

  constructor(
    readonly cName: string,
    fields: F,
  ) {
    let offset = 0;
    let maxAlign = 1;
    this.specs = fields.map(([name, type]) => ({ name, type }));
    this.fields = this.specs.map(({ name, type }) => {
      const align = fieldAlign(type);
      maxAlign = Math.max(maxAlign, align);
      offset = Math.ceil(offset / align) * align;
      const layout = { name, offset, size: fieldSize(type) };
      offset += layout.size;
      return layout;
    });
    this.size = Math.ceil(offset / maxAlign) * maxAlign;
  }

  /** Write value at buf[at..at+size). */
  encode(value: StructValue<F>, buf: Buffer = Buffer.alloc(this.size), at = 0): Buffer {
    const v = value as Record<string, unknown>;
    this.specs.forEach((spec, i) => {
      const off = at + this.fields[i]!.offset;
      const t = spec.type;
      if (t === 'u32') buf.writeUInt32LE(v[spec.name] as number, off);
      else if (t === 'u64') buf.writeBigUInt64LE(v[spec.name] as bigint, off);
      else (v[spec.name] as bigint[]).forEach((x, j) => buf.writeBigUInt64LE(x, off + 8 * j));
    });
    return buf;
  }

  /** Read a value from buf at offset `at`. */
  decode(buf: Buffer, at = 0): StructValue<F> {
    const out: Record<string, unknown> = {};
    this.specs.forEach((spec, i) => {
      const off = at + this.fields[i]!.offset;
      const t = spec.type;
      if (t === 'u32') out[spec.name] = buf.readUInt32LE(off);
      else if (t === 'u64') out[spec.name] = buf.readBigUInt64LE(off);
      else out[spec.name] = Array.from({ length: t.length }, (_, j) => buf.readBigUInt64LE(off + 8 * j));
    });
    return out as StructValue<F>;
  }
}

function struct<const F extends Fields>(cName: string, fields: F): Struct<F> {
  return new Struct(cName, fields);
}

export const psRule = struct('ps_rule', [
  ['rate_bps', 'u64'],
  ['burst_ns', 'u64'],
  ['key_hash', 'u64'],
  ['ecn_ns', 'u64'],
  ['horizon_ns', 'u64'],
  ['pkt_cost_ns', 'u64'],
  ['pkt_burst_ns', 'u64'],
  ['syn_cost_ns', 'u64'],
  ['syn_burst_ns', 'u64'],
  ['mode', 'u32'],
  ['flags', 'u32'],
  ['classid', 'u32'],
  ['pad', 'u32'],
]);
export type PsRule = ReturnType<typeof psRule.decode>;

export const psBucket = struct('ps_bucket', [
  ['tat_ns', 'u64'],
  ['pkt_tat_ns', 'u64'],
  ['syn_tat_ns', 'u64'],
]);
export type PsBucket = ReturnType<typeof psBucket.decode>;

export const psCounters = struct('ps_counters', [
  ['pass_pkts', 'u64'],
  ['pass_bytes', 'u64'],
  ['drop_pkts', 'u64'],
  ['drop_bytes', 'u64'],
  ['over_pkts', 'u64'],
  ['over_bytes', 'u64'],
  ['mark_pkts', 'u64'],
  ['mark_bytes', 'u64'],
  ['cas_retries', 'u64'],
  ['cas_exhausted', 'u64'],
  ['syn_drops', 'u64'],
  ['new_clients', 'u64'],
]);
export type PsCounters = ReturnType<typeof psCounters.decode>;

export const psIface = struct('ps_iface', [
  ['profile', 'u32'],
  ['stats_row', 'u32'],
  ['flags', 'u32'],
  ['pad', 'u32'],
]);
export type PsIface = ReturnType<typeof psIface.decode>;

export const psGlobal = struct('ps_global', [
  ['pkts', { array: 'u64', length: PS.PS_G_KINDS }],
  ['bytes', { array: 'u64', length: PS.PS_G_KINDS }],
]);
export type PsGlobal = ReturnType<typeof psGlobal.decode>;

export const psMeta = struct('ps_meta', [
  ['layout_version', 'u32'],
  ['max_slots', 'u32'],
  ['max_profiles', 'u32'],
  ['port_table_size', 'u32'],
  ['created_ns', 'u64'],
]);
export type PsMeta = ReturnType<typeof psMeta.decode>;

export const psPortTraffic = struct('ps_port_traffic', [
  ['pkts', 'u64'],
  ['bytes', 'u64'],
]);
export type PsPortTraffic = ReturnType<typeof psPortTraffic.decode>;

export const psClientCfg = struct('ps_client_cfg', [
  ['rate_bps', 'u64'],
  ['burst_ns', 'u64'],
  ['ecn_ns', 'u64'],
  ['pkt_cost_ns', 'u64'],
  ['pkt_burst_ns', 'u64'],
  ['syn_cost_ns', 'u64'],
  ['syn_burst_ns', 'u64'],
  ['prefix6', 'u32'],
  ['pad', 'u32'],
]);
export type PsClientCfg = ReturnType<typeof psClientCfg.decode>;

/** ps_clients key; addr (16 bytes) is read as two u64 words and formatted by the reader. */
export const psClientKey = struct('ps_client_key', [
  ['slot', 'u32'],
  ['family', 'u32'],
  ['addr', { array: 'u64', length: 2 }],
]);

export const psClient = struct('ps_client', [
  ['tat_ns', 'u64'],
  ['pkt_tat_ns', 'u64'],
  ['syn_tat_ns', 'u64'],
  ['pass_pkts', 'u64'],
  ['pass_bytes', 'u64'],
  ['drop_pkts', 'u64'],
  ['drop_bytes', 'u64'],
  ['last_ns', 'u64'],
]);
export type PsClient = ReturnType<typeof psClient.decode>;

/** Every shared struct, for the layout test. */
export const SHARED_STRUCTS = [psRule, psBucket, psCounters, psIface, psGlobal, psMeta, psClientCfg, psClientKey, psClient, psPortTraffic] as const;

/** Zeroed counters. */
export function zeroCounters(): PsCounters {
  return {
    pass_pkts: 0n,
    pass_bytes: 0n,
    drop_pkts: 0n,
    drop_bytes: 0n,
    over_pkts: 0n,
    over_bytes: 0n,
    mark_pkts: 0n,
    mark_bytes: 0n,
    cas_retries: 0n,
    cas_exhausted: 0n,
    syn_drops: 0n,
    new_clients: 0n,
  };
}
