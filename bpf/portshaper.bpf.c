// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * portshaper: per-port rate limits on tc clsact (cls_bpf, direct-action):
 * police (drop), monitor (count) or shape (classify into the rule's HTB
 * class, which queues). Entry points only; parsing and the bucket live in lib/.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "portshaper.h"
#include "lib/parse.h"
#include "lib/bucket.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Never read: it only makes the shared enums reach BTF, so that the layout
 * test can check every constant of portshaper.h against the TypeScript. */
const volatile struct {
	enum ps_layout layout;
	enum ps_limits limits;
	enum ps_dir dir;
	enum ps_proto proto;
	enum ps_side side;
	enum ps_mode mode;
	enum ps_rule_flags rule_flags;
	enum ps_iface_flags iface_flags;
	enum ps_global_kind global_kind;
	enum ps_port_index port_index;
	enum ps_unmatched_index unmatched_index;
} ps_btf_anchor __attribute__((used));

/* ps_ports and ps_rules are mmapable: the controller reads and diffs the
 * whole table in memory instead of 2M lookups through syscalls. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, PS_PORT_TABLE_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} ps_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, PS_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct ps_rule);
} ps_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PS_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct ps_bucket);
} ps_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PS_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct ps_counters);
} ps_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PS_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct ps_iface);
} ps_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PS_MAX_IFACES * 2);
	__type(key, __u32);
	__type(value, struct ps_global);
} ps_global SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ps_meta);
} ps_meta SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PS_UNMATCHED_SIZE);
	__type(key, __u32);
	__type(value, struct ps_port_traffic);
} ps_unmatched SEC(".maps");

/*
 * Test clock. The kernel tests set ps_test_clock before load and then drive
 * time through ps_test_now (each in a section of its own, so the controller
 * can address them without knowing the rest of .rodata/.data), so bucket arithmetic can be
 * checked exactly with BPF_PROG_TEST_RUN. In production the rodata stays 0,
 * the verifier sees a constant and removes the branch: no cost per packet.
 */
const volatile __u32 ps_test_clock SEC(".rodata.testclock") = 0;
__u64 ps_test_now SEC(".data.testclock") = 0;

static __always_inline __u64 ps_now(void)
{
	if (ps_test_clock)
		return ps_test_now;
	return bpf_ktime_get_ns();
}

/*
 * Passing traffic returns TC_ACT_UNSPEC, not TC_ACT_OK: it lets any other
 * filter on the same clsact hook (lower priority than ours) still classify
 * the packet, so portshaper coexists with tools it does not know about.
 */
#define PS_PASS TC_ACT_UNSPEC
#define PS_DROP TC_ACT_SHOT

static __always_inline void ps_count_global(__u32 row, __u32 dir, int kind, __u64 bytes)
{
	__u32 key = row * 2 + dir;
	struct ps_global *g = bpf_map_lookup_elem(&ps_global, &key);

	if (!g)
		return;
	if (kind < 0 || kind >= PS_G_KINDS)
		kind = PS_G_UNPARSED;
	g->pkts[kind]++;
	g->bytes[kind] += bytes;
}

/* Per-port accounting of unmatched traffic (by the local port), for
 * "portshaper top": what would be worth limiting. Only reached when the
 * interface's PS_IFACE_COUNT_UNMATCHED bit is set. */
static __always_inline void ps_count_unmatched(struct __sk_buff *skb, const struct ps_pkt *pkt,
					       __u32 dir)
{
	__u32 key = ps_unmatched_index(dir, pkt->proto,
				       dir == PS_DIR_INGRESS ? pkt->dport : pkt->sport);
	struct ps_port_traffic *t = bpf_map_lookup_elem(&ps_unmatched, &key);

	if (!t)
		return;
	t->pkts++;
	t->bytes += ps_wire_bytes(skb, pkt->hdr_len);
}

/* Slot of the rule for (profile, dir, proto, side, port); 0 = none. */
static __always_inline __u32 ps_lookup_slot(__u32 profile, __u32 dir, __u32 proto,
					    __u32 side, __u16 port)
{
	__u32 idx = ps_port_index(profile, dir, proto, side, port);
	__u32 *slot = bpf_map_lookup_elem(&ps_ports, &idx);

	return slot ? *slot : 0;
}

static __always_inline int ps_classify(struct __sk_buff *skb, const __u32 dir)
{
	__u32 ifindex = skb->ifindex;
	struct ps_iface *ifc = bpf_map_lookup_elem(&ps_ifaces, &ifindex);
	struct ps_counters *cnt;
	struct ps_bucket *bucket;
	struct ps_rule *rule;
	struct ps_pkt pkt = {};
	__u32 slot, row, lost = 0;
	__u64 wire;
	int kind, verdict;

	/* Attached but not (or no longer) registered: not ours to judge. */
	if (!ifc) {
		ps_count_global(0, dir, PS_G_UNMATCHED, skb->len);
		return PS_PASS;
	}
	row = ifc->stats_row;

	kind = ps_parse(skb, &pkt);
	/* Headers split between the linear area and paged fragments are rare:
	 * only then pull enough to parse, and parse again. (Comparing data_end
	 * with data up front would be pointer arithmetic, which the verifier
	 * allows only with CAP_PERFMON.) */
	if (kind == PS_G_UNPARSED && skb->len > sizeof(struct ethhdr)) {
		bpf_skb_pull_data(skb, skb->len < PS_PARSE_PULL ? skb->len : PS_PARSE_PULL);
		kind = ps_parse(skb, &pkt);
	}
	if (kind != PS_PARSED || ifc->profile >= PS_MAX_PROFILES) {
		ps_count_global(row, dir, kind, skb->len);
		return PS_PASS;
	}

	slot = ps_lookup_slot(ifc->profile, dir, pkt.proto, PS_SIDE_LOCAL,
			      dir == PS_DIR_INGRESS ? pkt.dport : pkt.sport);
	/* The remote-port half of the table is only read when the profile has
	 * remote rules in this direction: an unmatched packet then costs one
	 * lookup in the 16 MiB table, not two. */
	if (!slot && (ifc->flags & (dir == PS_DIR_INGRESS ? PS_IFACE_REMOTE_INGRESS
							  : PS_IFACE_REMOTE_EGRESS)))
		slot = ps_lookup_slot(ifc->profile, dir, pkt.proto, PS_SIDE_REMOTE,
				      dir == PS_DIR_INGRESS ? pkt.sport : pkt.dport);
	rule = slot ? bpf_map_lookup_elem(&ps_rules, &slot) : NULL;
	bucket = slot ? bpf_map_lookup_elem(&ps_buckets, &slot) : NULL;
	cnt = slot ? bpf_map_lookup_elem(&ps_counters, &slot) : NULL;
	if (!rule || !bucket || !cnt || !(rule->flags & PS_RULE_IN_USE)) {
		ps_count_global(row, dir, PS_G_UNMATCHED, skb->len);
		if (ifc->flags & PS_IFACE_COUNT_UNMATCHED)
			ps_count_unmatched(skb, &pkt, dir);
		return PS_PASS;
	}

	wire = ps_wire_bytes(skb, pkt.hdr_len);
	if (!rule->rate_bps) {
		cnt->pass_pkts++;
		cnt->pass_bytes += wire;
		return PS_PASS;
	}

	verdict = ps_bucket_take(bucket, rule, ps_cost_ns(wire, rule->rate_bps), ps_now(),
				 pkt.ecn != 0, &lost);
	if (lost)
		cnt->cas_retries += lost;
	if (verdict == PS_V_CONTENDED) {
		/* Stated verdict of a bucket that several CPUs keep winning: it is
		 * busy, so err on the side of the limit. Police drops, monitor
		 * counts it over; shape lets HTB queue it uncharged (the class
		 * still holds the rate; the virtual queue misses one packet). */
		cnt->cas_exhausted++;
		verdict = rule->mode == PS_MODE_SHAPE ? PS_V_PASS : PS_V_OVER;
	}
	if (verdict == PS_V_OVER) {
		if (rule->mode != PS_MODE_MONITOR) {
			cnt->drop_pkts++;
			cnt->drop_bytes += wire;
			return PS_DROP;
		}
		cnt->over_pkts++;
		cnt->over_bytes += wire;
	} else if (verdict == PS_V_MARK && bpf_skb_ecn_set_ce(skb)) {
		cnt->mark_pkts++;
		cnt->mark_bytes += wire;
	}
	/* HTB reads skb->priority before any filter: a value equal to one of
	 * its class ids puts the packet in that class (htb_classify()). */
	if (rule->mode == PS_MODE_SHAPE)
		skb->priority = rule->classid;
	cnt->pass_pkts++;
	cnt->pass_bytes += wire;
	return PS_PASS;
}

SEC("tc")
int ps_ingress(struct __sk_buff *skb)
{
	return ps_classify(skb, PS_DIR_INGRESS);
}

SEC("tc")
int ps_egress(struct __sk_buff *skb)
{
	return ps_classify(skb, PS_DIR_EGRESS);
}
