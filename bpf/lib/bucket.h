/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * One token bucket per rule, shared by all CPUs.
 *
 * Credit is kept in nanoseconds of transmission time at the rule's rate, as
 * act_police and nft_limit do: a packet costs len * 8e9 / rate ns, and idle
 * time adds credit one for one up to the burst. Refill, charge and verdict
 * happen under the bucket's bpf_spin_lock; per-CPU buckets would multiply the
 * rate by the number of CPUs, and a lock-free read-then-write overshoots.
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

/*
 * Refill, then charge cost_ns if the packet conforms. Returns 1 to pass.
 *
 * - Overflow-safe after any idle time: elapsed is compared with the room left
 *   in the bucket before it is added, never multiplied by the rate.
 * - GSO: a packet costlier than the whole burst would otherwise never pass; it
 *   passes when the bucket is full and leaves the bucket in debt (credit < 0)
 *   by its cost, so the long-run rate stays exact (bounded debt).
 * - now was read before the lock (no helper calls under a bpf_spin_lock), so
 *   another CPU may already have stored a later last_ns: never refill
 *   backwards.
 * - A lowered burst clamps the credit at the next packet; credit and last_ns
 *   are never reset by a configuration change.
 */
static __always_inline int ps_bucket_take(struct ps_bucket *b, __u64 burst_ns,
					  __u64 cost_ns, __u64 now)
{
	__s64 burst = (__s64)burst_ns;
	__s64 credit;
	int pass;

	bpf_spin_lock(&b->lock);
	credit = b->credit_ns;
	if (now > b->last_ns) {
		__u64 elapsed = now - b->last_ns;
		__s64 room = burst - credit;

		if (room <= 0 || elapsed >= (__u64)room)
			credit = burst;
		else
			credit += (__s64)elapsed;
		b->last_ns = now;
	} else if (credit > burst) {
		credit = burst;
	}

	if (credit >= (__s64)cost_ns || credit >= burst) {
		credit -= (__s64)cost_ns;
		pass = 1;
	} else {
		pass = 0;
	}
	b->credit_ns = credit;
	bpf_spin_unlock(&b->lock);
	return pass;
}

#endif /* PS_BUCKET_H */
