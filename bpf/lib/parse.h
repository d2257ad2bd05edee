/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Header parsing for the classifier: Ethernet, up to two VLAN tags, IPv4
 * (any IHL, fragments), IPv6 (bounded extension-header walk), TCP and UDP.
 * Every access is bounds-checked against data_end; anything we cannot read
 * is reported, never guessed.
 */
#ifndef PS_PARSE_H
#define PS_PARSE_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>

#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif

/* Bytes we want linear before parsing: Ethernet + 2 VLAN + IPv6 + a few
 * extension headers + TCP with options. A pull is only needed for the rare
 * skb whose headers straddle the linear area and its fragments. */
#define PS_PARSE_PULL 256

#define IPV4_FRAG_OFFSET_MASK 0x1fff
#define IPV6_FRAG_OFFSET_MASK 0xfff8

struct ps_pkt {
	__u16 sport;
	__u16 dport;
	__u32 proto;		/* enum ps_proto */
	__u32 hdr_len;		/* bytes from the Ethernet header to the L4 payload */
	__u32 ecn;		/* the IP header's ECN field: 0 = not ECN-capable */
	__u32 syn;		/* TCP SYN without ACK: a new connection */
	__u32 remote_is_src;	/* ingress: the peer is the source; egress: the destination */
	__u32 family;		/* 4 or 6 */
	/* The peer's address (IPv4-mapped for IPv4): a per-client limit's key. */
	__u8 remote[16];
};

/* Outcome of ps_parse(): PS_PARSED (ports found), or the ps_global column
 * the packet is counted under. */
static __always_inline int ps_parse_l4(void *data, void *data_end, __u32 off,
				       __u8 l4proto, struct ps_pkt *pkt)
{
	if (l4proto == IPPROTO_TCP) {
		struct tcphdr *th = data + off;

		if ((void *)(th + 1) > data_end)
			return PS_G_UNPARSED;
		if (th->doff < 5)
			return PS_G_UNPARSED;
		pkt->proto = PS_PROTO_TCP;
		pkt->syn = th->syn && !th->ack;
		pkt->sport = bpf_ntohs(th->source);
		pkt->dport = bpf_ntohs(th->dest);
		pkt->hdr_len = off + th->doff * 4;
		return PS_PARSED;
	}
	if (l4proto == IPPROTO_UDP) {
		struct udphdr *uh = data + off;

		if ((void *)(uh + 1) > data_end)
			return PS_G_UNPARSED;
		pkt->proto = PS_PROTO_UDP;
		pkt->sport = bpf_ntohs(uh->source);
		pkt->dport = bpf_ntohs(uh->dest);
		pkt->hdr_len = off + sizeof(*uh);
		return PS_PARSED;
	}
	/* ICMP, SCTP, ESP...: IP traffic without ports a rule could name. */
	return PS_G_UNMATCHED;
}

static __always_inline int ps_parse_ipv4(void *data, void *data_end, __u32 off,
					 struct ps_pkt *pkt)
{
	struct iphdr *iph = data + off;

	if ((void *)(iph + 1) > data_end)
		return PS_G_UNPARSED;
	if (iph->version != 4 || iph->ihl < 5)
		return PS_G_UNPARSED;
	/* Non-first fragments carry no L4 header; the first one does. */
	if (bpf_ntohs(iph->frag_off) & IPV4_FRAG_OFFSET_MASK)
		return PS_G_FRAGMENT;
	pkt->ecn = iph->tos & 3;
	{
		/* ::ffff:a.b.c.d, so IPv4 and IPv6 clients share one key shape. */
		__be32 addr = pkt->remote_is_src ? iph->saddr : iph->daddr;

		pkt->family = 4;
		__builtin_memset(pkt->remote, 0, 10);
		pkt->remote[10] = 0xff;
		pkt->remote[11] = 0xff;
		__builtin_memcpy(&pkt->remote[12], &addr, 4);
	}
	return ps_parse_l4(data, data_end, off + iph->ihl * 4, iph->protocol, pkt);
}

struct ps_ipv6_opt {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ps_ipv6_frag {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

static __always_inline int ps_ipv6_is_ext(__u8 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
	       nexthdr == IPPROTO_DSTOPTS || nexthdr == IPPROTO_FRAGMENT ||
	       nexthdr == IPPROTO_AH;
}

static __always_inline int ps_parse_ipv6(void *data, void *data_end, __u32 off,
					 struct ps_pkt *pkt)
{
	struct ipv6hdr *ip6h = data + off;
	__u8 nexthdr;
	int i;

	if ((void *)(ip6h + 1) > data_end)
		return PS_G_UNPARSED;
	if (ip6h->version != 6)
		return PS_G_UNPARSED;
	nexthdr = ip6h->nexthdr;
	/* Traffic class = priority:4 . flow_lbl[0]:4 (high nibble); ECN is its low 2 bits. */
	pkt->ecn = (ip6h->flow_lbl[0] >> 4) & 3;
	pkt->family = 6;
	if (pkt->remote_is_src)
		__builtin_memcpy(pkt->remote, &ip6h->saddr, 16);
	else
		__builtin_memcpy(pkt->remote, &ip6h->daddr, 16);
	off += sizeof(*ip6h);

	/* Walk at most PS_MAX_EXTHDRS extension headers; a longer chain is
	 * reported as unparsed rather than walked without bound. */
	for (i = 0; i < PS_MAX_EXTHDRS && ps_ipv6_is_ext(nexthdr); i++) {
		struct ps_ipv6_opt *opt = data + off;

		if ((void *)(opt + 1) > data_end)
			return PS_G_UNPARSED;
		if (nexthdr == IPPROTO_FRAGMENT) {
			struct ps_ipv6_frag *fh = data + off;

			if ((void *)(fh + 1) > data_end)
				return PS_G_UNPARSED;
			if (bpf_ntohs(fh->frag_off) & IPV6_FRAG_OFFSET_MASK)
				return PS_G_FRAGMENT;
			off += sizeof(*fh);
		} else if (nexthdr == IPPROTO_AH) {
			off += (opt->hdrlen + 2) * 4;
		} else {
			off += (opt->hdrlen + 1) * 8;
		}
		nexthdr = opt->nexthdr;
	}
	if (ps_ipv6_is_ext(nexthdr))
		return PS_G_UNPARSED;
	return ps_parse_l4(data, data_end, off, nexthdr, pkt);
}

/*
 * Parse one frame. Returns PS_PARSED with pkt filled when the packet has
 * TCP/UDP ports, otherwise the enum ps_global_kind it is counted under.
 */
static __always_inline int ps_parse(struct __sk_buff *skb, struct ps_pkt *pkt)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 off = sizeof(*eth);
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > data_end)
		return PS_G_UNPARSED;
	proto = eth->h_proto;

	/* 802.1ad outer and 802.1Q inner tag, when they are in the frame
	 * rather than offloaded into skb metadata. */
	for (i = 0; i < 2; i++) {
		struct vlan_hdr {
			__be16 tci;
			__be16 encap_proto;
		} *vh = data + off;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return PS_G_UNPARSED;
		proto = vh->encap_proto;
		off += sizeof(*vh);
	}

	if (proto == bpf_htons(ETH_P_IP))
		return ps_parse_ipv4(data, data_end, off, pkt);
	if (proto == bpf_htons(ETH_P_IPV6))
		return ps_parse_ipv6(data, data_end, off, pkt);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return PS_G_UNPARSED; /* a third tag: more than we walk */
	return PS_G_NON_IP;
}

#endif /* PS_PARSE_H */
