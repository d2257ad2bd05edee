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

/* Per-client limits of the rules that have them, by slot. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PS_MAX_CLIENT_RULES);
	__type(key, __u32);
	__type(value, struct ps_client_cfg);
} ps_client_cfg SEC(".maps");

/* One entry per (bucket, client) seen; the least recently seen is forgotten
 * when full (and starts again with full buckets). The controller sets the
 * size from the policy (clientTable) before the maps are created. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, PS_CLIENTS_DEFAULT);
	__type(key, struct ps_client_key);
	__type(value, struct ps_client);
} ps_clients SEC(".maps");

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

/* A client's entry in ps_clients and its rule's per-client limits. */
struct ps_client_ref {
	struct ps_client *entry;
	struct ps_client_cfg *cfg;
};

/*
 * The per-client state of the packet's peer for the rule in slot, created
 * on first sight (counted in new_clients: evictions are new clients minus
 * the entries alive). 0 when the rule has no client config or the table
 * refuses the entry: the packet is then judged by the rule's limits only.
 */
static __always_inline int ps_client_of(__u32 slot, struct ps_pkt *pkt, struct ps_counters *cnt,
					__u64 now, struct ps_client_ref *ref)
{
	/* The zeroed value a new client starts from (full buckets): in .bss,
	 * not on the stack, which the clocks of ps_judge_packet need. */
	static struct ps_client fresh;
	struct ps_client_key key = { .slot = slot, .family = pkt->family };
	int i;

	ref->cfg = bpf_map_lookup_elem(&ps_client_cfg, &slot);
	if (!ref->cfg)
		return 0;
	__builtin_memcpy(key.addr, pkt->remote, 16);
	/* One IPv6 client owns a prefix (a /64 is one subscriber's LAN):
	 * clear the bits past it. IPv4 keys are whole addresses. */
	if (pkt->family == 6) {
		__u32 prefix = ref->cfg->prefix6;

#pragma clang loop unroll(full)
		for (i = 0; i < 16; i++) {
			if (prefix >= 8 * (i + 1))
				continue;
			key.addr[i] &= prefix > 8 * i ? (__u8)(0xff << (8 - (prefix - 8 * i))) : 0;
		}
	}
	ref->entry = bpf_map_lookup_elem(&ps_clients, &key);
	if (!ref->entry) {
		if (bpf_map_update_elem(&ps_clients, &key, &fresh, BPF_NOEXIST) == 0)
			cnt->new_clients++;
		ref->entry = bpf_map_lookup_elem(&ps_clients, &key);
		if (!ref->entry)
			return 0;
	}
	ref->entry->last_ns = now;
	return 1;
}

/* Fill c for a packet against one limit. */
static __always_inline void ps_clock_set(struct ps_clock *c, __u64 cost, __u64 burst, __u64 band)
{
	c->cost = cost;
	c->burst = burst;
	c->band = band;
	c->horizon = 0;
	c->shape = 0;
}

/*
 * Every limit that applies to the packet must admit it: the rule's bytes
 * (shaped or policed), its packets, its new connections, and the same three
 * for the packet's client. All are judged before any is charged, so a packet
 * one limit refuses costs the others nothing (a race with another CPU
 * between judging and charging can still leave an earlier clock charged
 * for a refused packet: conservative, and counted as retries).
 */
static __always_inline int ps_judge_packet(const struct ps_rule *rule, struct ps_bucket *bucket,
					   struct ps_client_ref *client, __u64 wire, int ect,
					   int is_syn, __u64 now, __u32 *lost, int *syn_over)
{
	struct ps_clock bytes = {}, pkts = {}, syns = {}, cbytes = {}, cpkts = {}, csyns = {};
	__u64 band = ect && rule->mode != PS_MODE_MONITOR ? rule->ecn_ns : 0;
	struct ps_client *e = client ? client->entry : NULL;
	struct ps_client_cfg *cfg = client ? client->cfg : NULL;
	int verdict = PS_V_PASS, v;

	if (rule->rate_bps) {
		ps_clock_set(&bytes, ps_cost_ns(wire, rule->rate_bps), rule->burst_ns,
			     rule->mode == PS_MODE_SHAPE ? rule->ecn_ns * ect : band);
		bytes.horizon = rule->horizon_ns;
		bytes.shape = rule->mode == PS_MODE_SHAPE;
		verdict = ps_worse(verdict, ps_clock_judge(bucket->tat_ns, &bytes, now));
	}
	if (rule->pkt_cost_ns) {
		ps_clock_set(&pkts, rule->pkt_cost_ns, rule->pkt_burst_ns, 0);
		verdict = ps_worse(verdict, ps_clock_judge(bucket->pkt_tat_ns, &pkts, now));
	}
	if (is_syn && rule->syn_cost_ns) {
		ps_clock_set(&syns, rule->syn_cost_ns, rule->syn_burst_ns, 0);
		v = ps_clock_judge(bucket->syn_tat_ns, &syns, now);
		*syn_over |= v == PS_V_OVER;
		verdict = ps_worse(verdict, v);
	}
	if (e && cfg) {
		__u64 cband = ect && rule->mode != PS_MODE_MONITOR ? cfg->ecn_ns : 0;

		if (cfg->rate_bps) {
			ps_clock_set(&cbytes, ps_cost_ns(wire, cfg->rate_bps), cfg->burst_ns, cband);
			verdict = ps_worse(verdict, ps_clock_judge(e->tat_ns, &cbytes, now));
		}
		if (cfg->pkt_cost_ns) {
			ps_clock_set(&cpkts, cfg->pkt_cost_ns, cfg->pkt_burst_ns, 0);
			verdict = ps_worse(verdict, ps_clock_judge(e->pkt_tat_ns, &cpkts, now));
		}
		if (is_syn && cfg->syn_cost_ns) {
			ps_clock_set(&csyns, cfg->syn_cost_ns, cfg->syn_burst_ns, 0);
			v = ps_clock_judge(e->syn_tat_ns, &csyns, now);
			*syn_over |= v == PS_V_OVER;
			verdict = ps_worse(verdict, v);
		}
	}
	/* Drops write nothing; monitor charges nothing for what is over. */
	if (verdict == PS_V_OVER)
		return verdict;

	if (bytes.cost)
		verdict = ps_worse(verdict, ps_clock_take(&bucket->tat_ns, &bytes, now, lost));
	if (pkts.cost && verdict != PS_V_OVER)
		verdict = ps_worse(verdict, ps_clock_take(&bucket->pkt_tat_ns, &pkts, now, lost));
	if (syns.cost && verdict != PS_V_OVER)
		verdict = ps_worse(verdict, ps_clock_take(&bucket->syn_tat_ns, &syns, now, lost));
	if (e) {
		if (cbytes.cost && verdict != PS_V_OVER)
			verdict = ps_worse(verdict, ps_clock_take(&e->tat_ns, &cbytes, now, lost));
		if (cpkts.cost && verdict != PS_V_OVER)
			verdict = ps_worse(verdict, ps_clock_take(&e->pkt_tat_ns, &cpkts, now, lost));
		if (csyns.cost && verdict != PS_V_OVER)
			verdict = ps_worse(verdict, ps_clock_take(&e->syn_tat_ns, &csyns, now, lost));
	}
	return verdict;
}

static __always_inline int ps_classify(struct __sk_buff *skb, const __u32 dir)
{
	__u32 ifindex = skb->ifindex;
	struct ps_iface *ifc = bpf_map_lookup_elem(&ps_ifaces, &ifindex);
	struct ps_counters *cnt;
	struct ps_bucket *bucket;
	struct ps_rule *rule;
	struct ps_pkt pkt = { .remote_is_src = dir == PS_DIR_INGRESS };
	struct ps_client_ref cref = {}, *client;
	__u32 slot, row, lost = 0;
	int kind, verdict, is_syn, syn_over = 0;
	__u64 wire, now;

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
	/* New connections are limited where they arrive: SYN on ingress. */
	is_syn = pkt.syn && dir == PS_DIR_INGRESS;
	if (!rule->rate_bps && !rule->pkt_cost_ns && !(is_syn && rule->syn_cost_ns) &&
	    !(rule->flags & PS_RULE_CLIENTS)) {
		cnt->pass_pkts++;
		cnt->pass_bytes += wire;
		return PS_PASS;
	}

	/* One clock read serves every limit and the client's last-seen time. */
	now = ps_now();
	client = (rule->flags & PS_RULE_CLIENTS) && ps_client_of(slot, &pkt, cnt, now, &cref) ? &cref : NULL;
	verdict = ps_judge_packet(rule, bucket, client, wire, pkt.ecn != 0, is_syn, now,
				  &lost, &syn_over);
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
		if (syn_over)
			cnt->syn_drops++;
		if (rule->mode != PS_MODE_MONITOR) {
			cnt->drop_pkts++;
			cnt->drop_bytes += wire;
			if (client) {
				__sync_fetch_and_add(&client->entry->drop_pkts, 1);
				__sync_fetch_and_add(&client->entry->drop_bytes, wire);
			}
			return PS_DROP;
		}
		cnt->over_pkts++;
		cnt->over_bytes += wire;
	} else if (verdict == PS_V_MARK && bpf_skb_ecn_set_ce(skb)) {
		cnt->mark_pkts++;
		cnt->mark_bytes += wire;
	}
	if (client) {
		__sync_fetch_and_add(&client->entry->pass_pkts, 1);
		__sync_fetch_and_add(&client->entry->pass_bytes, wire);
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
