/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one header shared by the eBPF program and the controller.
 *
 * Every struct that crosses the kernel boundary lives here, with explicit
 * padding and fixed-width fields only. The TypeScript mirror is
 * src/kernel/layout.ts; test/kernel/layout.test.ts reads this object's BTF and
 * fails if an offset, size or constant differs. Constants are enums (not
 * #defines) so that they reach BTF and can be checked too.
 */
#ifndef PORTSHAPER_H
#define PORTSHAPER_H

/* Bump whenever a pinned map's key, value or meaning changes: an agent refuses
 * pins whose ps_meta carries another version instead of misreading them. */
enum ps_layout { PS_LAYOUT_VERSION = 2 };

enum ps_limits {
	PS_PORTS = 65536,
	/* A profile is one rule set; each attached interface points at one. */
	PS_MAX_PROFILES = 4,
	/* Buckets (slots). Slot 0 is reserved: a zero in ps_ports means "no rule". */
	PS_MAX_SLOTS = 262144,
	/* Global-counter rows: (interface slot, direction). Row 0 collects
	 * interfaces the program is attached to but that are not registered. */
	PS_MAX_IFACES = 64,
	/* Bounded IPv6 extension-header walk (RFC 8200 order has at most 6 before L4). */
	PS_MAX_EXTHDRS = 6,
	/* Compare-and-swap attempts on one bucket per packet. A failed attempt
	 * means another CPU advanced the bucket meanwhile (progress), so four
	 * are exhausted only on a bucket several CPUs hammer at once. */
	PS_CAS_TRIES = 4,
	/* Default size of the per-client table (policy key clientTable). */
	PS_CLIENTS_DEFAULT = 65536,
	/* Per-client configurations (rules with a client: section). */
	PS_MAX_CLIENT_RULES = 65536,
};

enum ps_dir { PS_DIR_INGRESS = 0, PS_DIR_EGRESS = 1 };
enum ps_proto { PS_PROTO_TCP = 0, PS_PROTO_UDP = 1 };
/* Which port of the packet a rule names: the local service port (ingress:
 * destination, egress: source) or the remote one (ingress: source, egress:
 * destination). Local rules win when both match. */
enum ps_side { PS_SIDE_LOCAL = 0, PS_SIDE_REMOTE = 1 };
/*
 * police:  drop what exceeds rate x time + burst (ECN-capable packets within
 *          ecn_ns past the burst are marked CE and pass instead);
 * monitor: drop nothing, count what police would have dropped;
 * shape:   egress only: queue in the rule's HTB class (skb->priority), which
 *          releases at the rate; the bucket is a virtual queue that marks CE
 *          past ecn_ns of queueing delay and drops past horizon_ns.
 */
enum ps_mode { PS_MODE_POLICE = 0, PS_MODE_MONITOR = 1, PS_MODE_SHAPE = 2 };

/* Bits of ps_rule.flags. */
enum ps_rule_flags {
	PS_RULE_IN_USE = 1,
	/* ps_client_cfg[slot] holds a per-client limit: each remote address
	 * (IPv6: its prefix) also gets buckets of its own in ps_clients. */
	PS_RULE_CLIENTS = 2,
};

/* Bits of ps_iface.flags. REMOTE_*: the interface's profile has side: remote
 * rules in that direction; without them the second port lookup is skipped.
 * COUNT_UNMATCHED: count traffic no rule matched per local port in
 * ps_unmatched (off by default: it costs a per-CPU write per packet). */
enum ps_iface_flags {
	PS_IFACE_REMOTE_INGRESS = 1,
	PS_IFACE_REMOTE_EGRESS = 2,
	PS_IFACE_COUNT_UNMATCHED = 4,
};

/* Columns of struct ps_global. */
enum ps_global_kind {
	PS_G_NON_IP = 0,	/* not IPv4/IPv6 (ARP, LLDP, ...) */
	PS_G_UNPARSED = 1,	/* truncated or malformed headers */
	PS_G_FRAGMENT = 2,	/* non-first fragments: they carry no ports */
	PS_G_UNMATCHED = 3,	/* parsed, but no rule names its port */
	PS_G_KINDS = 4,
	/* Not a column: ps_parse() found ports. Traffic a rule matched is
	 * counted by that rule only (no second write on the hot path). */
	PS_PARSED = 4,
};

/*
 * ps_ports: ARRAY of __u32 slot ids indexed by
 *   ((((profile * 2 + dir) * 2 + proto) * 2 + side) << 16) | port
 * O(1) whatever the number of rules, and every port of every protocol,
 * direction and side is addressable at once.
 */
enum ps_port_index {
	PS_PORT_TABLE_SIZE = PS_MAX_PROFILES * 2 * 2 * 2 * PS_PORTS,
};

/* The one formula of the port table's index (portIndex() in layout.ts is its
 * mirror; the classifier test checks both against real lookups). */
static __always_inline __u32 ps_port_index(__u32 profile, __u32 dir, __u32 proto,
					   __u32 side, __u32 port)
{
	return ((((profile * 2 + dir) * 2 + proto) * 2 + side) << 16) | (port & 0xffff);
}

/* ps_rules[slot]: configuration, written only by the controller. Kept apart
 * from the bucket state so that a rate or burst change is a plain map update
 * that cannot touch the bucket's clock (which is time, so it stays meaningful
 * at the new rate). */
struct ps_rule {
	__u64 rate_bps;		/* bits per second of wire bytes; 0 = unlimited */
	__u64 burst_ns;		/* bucket depth, in ns of transmission at rate_bps */
	__u64 key_hash;		/* controller's id of the bucket, to re-adopt it */
	__u64 ecn_ns;		/* police: band past the burst where ECT packets are
				 * marked CE instead of dropped; shape: queueing delay
				 * past which they are marked; 0 = never mark */
	__u64 horizon_ns;	/* shape: queueing delay past which packets drop */
	/* Limits in events, each costing cost_ns (1e9 / rate); 0 = none: */
	__u64 pkt_cost_ns;	/* packets */
	__u64 pkt_burst_ns;
	__u64 syn_cost_ns;	/* new TCP connections (SYN without ACK) on ingress */
	__u64 syn_burst_ns;
	__u32 mode;		/* enum ps_mode */
	__u32 flags;		/* enum ps_rule_flags */
	__u32 classid;		/* shape: HTB class id (major:minor) for skb->priority */
	__u32 pad;
};

/* ps_client_cfg[slot]: the per-client limits of a rule (PS_RULE_CLIENTS). */
struct ps_client_cfg {
	__u64 rate_bps;		/* bits per second of each client; 0 = no bit rate */
	__u64 burst_ns;
	__u64 ecn_ns;		/* band past the burst where ECT packets are marked */
	__u64 pkt_cost_ns;
	__u64 pkt_burst_ns;
	__u64 syn_cost_ns;
	__u64 syn_burst_ns;
	__u32 prefix6;		/* leading bits of an IPv6 source that name one client */
	__u32 pad;
};

/*
 * ps_buckets[slot]: one GCRA ("virtual scheduling") clock per bucket, shared
 * by every CPU and advanced with compare-and-swap (see lib/bucket.h). tat_ns
 * is the theoretical arrival time: the bpf_ktime_get_ns() at which the bucket
 * is full again. 0 (or any past time) = full.
 */
struct ps_bucket {
	__u64 tat_ns;		/* bytes: the rule's rate */
	__u64 pkt_tat_ns;	/* packets: the rule's packet rate */
	__u64 syn_tat_ns;	/* new connections */
};

/* ps_clients key: one client of one bucket. IPv4 addresses are stored
 * IPv4-mapped (::ffff:a.b.c.d); IPv6 ones cut to the rule's prefix. */
struct ps_client_key {
	__u32 slot;
	__u32 family;		/* 4 or 6 */
	__u8 addr[16];
};

/* ps_clients value: the client's own buckets and counters, updated with
 * atomics (a client's packets may arrive on several CPUs). */
struct ps_client {
	__u64 tat_ns;		/* the client's clocks, as in struct ps_bucket */
	__u64 pkt_tat_ns;
	__u64 syn_tat_ns;
	__u64 pass_pkts;
	__u64 pass_bytes;
	__u64 drop_pkts;
	__u64 drop_bytes;
	__u64 last_ns;		/* last packet seen */
};

/* ps_counters[slot]: per-CPU, summed by the reader. Bytes are wire bytes. */
struct ps_counters {
	__u64 pass_pkts;
	__u64 pass_bytes;
	__u64 drop_pkts;
	__u64 drop_bytes;
	__u64 over_pkts;	/* monitor mode: passed although over the limit */
	__u64 over_bytes;
	__u64 mark_pkts;	/* passed with ECN CE set by us */
	__u64 mark_bytes;
	__u64 cas_retries;	/* compare-and-swap attempts lost to another CPU */
	__u64 cas_exhausted;	/* packets that found the bucket contended PS_CAS_TRIES times */
	__u64 syn_drops;	/* new connections refused by a connection-rate limit */
	__u64 new_clients;	/* clients added to ps_clients (first seen, or seen again after eviction) */
};

/* ps_ifaces[ifindex]: which profile an interface uses and its counter row. */
struct ps_iface {
	__u32 profile;
	__u32 stats_row;	/* 1..PS_MAX_IFACES-1; 0 is "unregistered" */
	__u32 flags;		/* enum ps_iface_flags */
	__u32 pad;
};

/* ps_global[stats_row * 2 + dir]: per-CPU traffic no rule accounts for. */
struct ps_global {
	__u64 pkts[PS_G_KINDS];
	__u64 bytes[PS_G_KINDS];
};

/*
 * ps_unmatched: PERCPU_ARRAY of struct ps_port_traffic indexed by
 *   ((dir * 2 + proto) << 16) | local port
 * (ingress: destination port, egress: source port), host-wide: every
 * interface with PS_IFACE_COUNT_UNMATCHED adds to the same rows.
 */
enum ps_unmatched_index { PS_UNMATCHED_SIZE = 2 * 2 * PS_PORTS };

static __always_inline __u32 ps_unmatched_index(__u32 dir, __u32 proto, __u32 port)
{
	return ((dir * 2 + proto) << 16) | (port & 0xffff);
}

/* ps_unmatched value, per CPU. Bytes are wire bytes, as in ps_counters. */
struct ps_port_traffic {
	__u64 pkts;
	__u64 bytes;
};

/* ps_meta[0]: written once by the controller that creates the pins. */
struct ps_meta {
	__u32 layout_version;
	__u32 max_slots;
	__u32 max_profiles;
	__u32 port_table_size;
	__u64 created_ns;
};

#endif /* PORTSHAPER_H */
