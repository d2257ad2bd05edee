/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One bucket per rule, shared by all CPUs, without a lock: GCRA (the "virtual
 * scheduling" form of the generic cell rate algorithm, ITU-T I.371).
 *
 * The bucket is one u64, tat: the time at which it is full again. A packet
 * costs cost = wire bytes * 8e9 / rate ns of transmission. With
 * ahead = max(tat, now) - now (work already admitted and not yet drained):
 *   - police/monitor: the packet conforms iff ahead == 0 (a full bucket,
 *     whatever the packet's size: a GSO super-packet larger than the burst
 *     passes and leaves bounded debt) or ahead + cost <= burst;
 *   - shape: every packet joins the virtual queue; it waits ahead - burst ns
 *     behind the others and is marked CE past ecn_ns, dropped past horizon_ns.
 * On admission tat becomes max(tat, now) + cost, written with one
 * compare-and-swap against the tat that was judged. This is what makes it
 * correct across CPUs: if another CPU admitted a packet between our read
 * and our write, the swap fails and we judge again against its tat; no
 * admission is ever lost or double-counted (a read-then-write bucket, such
 * as per-CPU or unsynchronised ones, overshoots the rate under contention).
 * Drops write nothing, so rejected load costs no cache-line ping-pong.
 *
 * Same semantics as a credit bucket kept in ns (act_police, nft_limit): a new
 * or idle bucket holds exactly `burst`; nothing overflows after any idle time
 * (no elapsed * rate product, and ahead is 0 once tat is in the past); now
 * going backwards on another CPU cannot refill the bucket (max(tat, now)); a
 * rate or burst change keeps tat, i.e. the credit in time.
 */
#ifndef PS_BUCKET_H
#define PS_BUCKET_H

#define PS_NSEC_PER_SEC 1000000000ULL

/* Wire bytes of an skb. For a GSO super-packet skb->len counts one set of
 * headers; the wire carries gso_segs of them (qdisc_pkt_len_init() charges
 * HTB/TBF the same way), so charge the missing ones too. */
static __always_inline __u64 ps_wire_bytes(const struct __sk_buff *skb, __u32 hdr_len)
{
	__u64 len = skb->len;
	__u32 segs = skb->gso_segs;

	if (segs > 1)
		len += (__u64)(segs - 1) * hdr_len;
	return len;
}

/* Transmission time of wire_bytes at rate_bps. The controller rejects rates
 * and bursts that could overflow: wire_bytes < 2^24 and 8e9 < 2^33 keep the
 * product below 2^57. */
static __always_inline __u64 ps_cost_ns(__u64 wire_bytes, __u64 rate_bps)
{
	return wire_bytes * 8 * PS_NSEC_PER_SEC / rate_bps;
}

/* What a clock says about one packet. */
enum ps_verdict {
	PS_V_PASS = 0,		/* admitted */
	PS_V_MARK = 1,		/* admitted; set ECN CE (only returned for ECT packets) */
	PS_V_OVER = 2,		/* not admitted: police drops, monitor counts, shape drops */
	PS_V_CONTENDED = 3,	/* PS_CAS_TRIES swaps lost: not admitted, nothing written */
};

/* One GCRA clock's parameters for one packet. */
struct ps_clock {
	__u64 cost;		/* ns of this packet at the clock's rate */
	__u64 burst;		/* ns the clock may run ahead of now */
	__u64 band;		/* police: ns past the burst where the packet is marked, not dropped */
	__u64 horizon;		/* shape: ns of queueing delay past which it drops */
	__u32 shape;		/* 1: virtual queue (shape); 0: police or monitor */
	__u32 pad;
};

/* The verdict of clock c on a packet at now, given its tat; writes nothing. */
static __noinline int ps_clock_judge(__u64 tat, const struct ps_clock *c, __u64 now)
{
	__u64 start = tat > now ? tat : now;
	__u64 ahead = start - now;

	if (c->shape) {
		__u64 wait = ahead > c->burst ? ahead - c->burst : 0;

		/* wait > 0 implies a queue: a lone packet always goes. */
		if (wait > c->horizon)
			return PS_V_OVER;
		return c->band && wait > c->band ? PS_V_MARK : PS_V_PASS;
	}
	if (ahead && ahead + c->cost > c->burst) {
		/* HBM-style: past the burst, an ECT packet within the band is
		 * marked and admitted; everything else is over the limit. */
		if (ahead + c->cost > c->burst + c->band)
			return PS_V_OVER;
		return PS_V_MARK;
	}
	return PS_V_PASS;
}

/*
 * Judge one packet against the clock at *tat and admit it (advance tat by
 * its cost from max(tat, now)) unless the verdict is OVER or CONTENDED.
 * *lost counts swaps lost to other CPUs.
 */
static __noinline int ps_clock_take(__u64 *tat_p, const struct ps_clock *c, __u64 now,
					 __u32 *lost)
{
	int i;

#pragma clang loop unroll(full)
	for (i = 0; i < PS_CAS_TRIES; i++) {
		__u64 tat = *(volatile __u64 *)tat_p;
		__u64 start = tat > now ? tat : now;
		int verdict = ps_clock_judge(tat, c, now);

		if (verdict == PS_V_OVER)
			return verdict;
		if (__sync_val_compare_and_swap(tat_p, tat, start + c->cost) == tat)
			return verdict;
		(*lost)++;
	}
	return PS_V_CONTENDED;
}

/* The stricter of two verdicts (OVER > CONTENDED > MARK > PASS for admission). */
static __always_inline int ps_worse(int a, int b)
{
	if (a == PS_V_OVER || b == PS_V_OVER)
		return PS_V_OVER;
	if (a == PS_V_CONTENDED || b == PS_V_CONTENDED)
		return PS_V_CONTENDED;
	return a > b ? a : b;
}

#endif /* PS_BUCKET_H */
