// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// hubguard's egress programs: run on every connect() and unconnected sendmsg() of a process
// under an attach point (the pods' cgroup tree, or a standalone hub's user cgroups), on every
// IPv4/IPv6 socket it creates, and on every packet its sockets send, and answer allow or deny
// (EPERM). The maps hold the whole policy; the node agent decides what goes in them. The
// kernel side only looks up and reports.
//
// Two layers judge the same rules. The socket hooks judge the address a program names and give
// it a clear EPERM at connect(). The packet layer (cgroup_skb/egress) judges what they cannot
// see, packet by packet, after routing and after the node's NAT:
// - a packet that carries IPv4 options or an IPv6 extension header (source routing: its header
//   names the next hop, not the address the hook judged): judged by that next hop, as a
//   protocol of its own, which only an every-port rule allows (a class with egress rules sends
//   no such packet; one without still reaches no credential endpoint by it);
// - a packet of a raw socket, an ICMP echo socket or any protocol but TCP and UDP: judged by
//   its header (an ICMP echo by its destination alone);
// - a datagram of a connected socket: judged by the address the socket connected to, which is
//   also what a Service's cluster IP looks like before the node's NAT rewrote it. A UDP
//   connect() sends nothing, so the connect hook lets it through (programs probe routes with
//   it: distributed's get_ip, glibc's address sorting) unless it names a credential endpoint;
//   UDP-Lite's connect() runs no hook at all.
// TCP and unconnected datagrams without options were judged by the socket hooks, by the
// address the program named (before NAT); the packet layer lets them be.
//
// Order of a decision: loopback is always allowed, and so is the unspecified address (0.0.0.0,
// ::), which the kernel routes to loopback (programs probe routes with it); an IPv6 address
// that carries an IPv4 address the network delivers to (v4-mapped, IPv4-compatible, NAT64
// 64:ff9b::/96, 6to4) is judged as that IPv4 address; otherwise the destination is looked up in the trie of the
// class that owns the calling cgroup (a cgroup the agent has not mapped yet gets class 0, the
// strictest); the entry found says which ports and protocols it allows and whether it is a
// credential endpoint (for the reason reported).
//
// Sockets that no connect hook sees — raw sockets, and ICMP echo ("ping") datagram sockets,
// whose sendto() passes no sendmsg hook — are refused at creation unless the caller's class
// may use them; the packets of a class that may, the packet layer judges. Likewise IPv4
// options and IPv6 extension headers (source routing names hops no hook judged) are refused
// at setsockopt() for a class with egress rules; given as ancillary data to sendmsg(), which
// no hook sees, their packets meet the packet layer.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "abi.h"

#define MAX_CGROUP_DEPTH 32 // a power of two: the depth is found by bisection

#define FAMILY_INET 2 // AF_INET, which the uapi headers here do not define
#ifndef SOCK_STREAM
#define SOCK_STREAM 1
#endif
#ifndef SOCK_DGRAM
#define SOCK_DGRAM 2
#endif
#ifndef SOCK_RAW
#define SOCK_RAW 3
#endif
#define PROTO_ICMPV6 58

// What a program returns to the kernel.
#define VERDICT_DENY 0 // the call fails with EPERM
#define VERDICT_ALLOW 1

// What judge() returns when nothing denies (otherwise a REASON_*).
#define ALLOWED 0

// The kernel's own cache, not part of the ABI: the class the ancestor walk found for a caller.
struct cached_class {
	__u64 mapped_id; // the mapped ancestor, or the caller's own id when none is mapped
	__u32 class_id;
	__u32 generation; // settings.generation when the walk found it
	__u64 tenant_id;
};

// Key: a cgroup id (the inode number of the cgroup's directory): a pod's cgroup, or a
// standalone user cgroup. Value: the class whose rules apply to it and its descendants, and
// its tenant.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct cgroup_owner);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cgroup_classes SEC(".maps");

// Key: tenant + caller's rule class + a pod address of that tenant. Value: the ports and
// protocols the class's "same tenant" rules open to it (consulted when the trie denies).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RULE_SET_ENTRIES * RULE_SETS);
	__type(key, struct peer_key);
	__type(value, struct rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tenant_peers SEC(".maps");

// Key: rule class + IPv4 prefix. Value: the ports and protocols an address whose longest
// matching prefix this is may be sent to.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RULE_SET_ENTRIES * RULE_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v4_key);
	__type(value, struct rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} v4_rules SEC(".maps");

// Key: rule class + IPv6 prefix. Value: as v4_rules. v4-mapped addresses use v4_rules.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RULE_SET_ENTRIES * RULE_SETS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct v6_key);
	__type(value, struct rule);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} v6_rules SEC(".maps");

// Key: rule class. Value: CLASS_* flags of what the class may do beyond its egress rules.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CLASSES * RULE_SETS);
	__type(key, __u32);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} class_flags SEC(".maps");

// Key: 0. Value: agent-wide settings, and which rule set is live.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} settings SEC(".maps");

// Key: class id * REASONS + reason. Value: denials (or lost events) counted on this CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_CLASSES * REASONS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} denials SEC(".maps");

// Key: the caller's own cgroup id (a container's). Value: the class the ancestor walk found
// for it, valid while settings.generation is unchanged: later connects skip the walk.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct cached_class);
} class_cache SEC(".maps");

// One struct denial per denied (or, in dry run, would-be denied) connect or send.
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} events SEC(".maps");

static __always_inline int port_allowed(const struct rule *rule, __u16 port, __u8 protocol);

// Who is asking: the packet layer's caller is the socket that sent the packet (skb), since the
// kernel sends some packets (retransmissions, say) from no task of the pod's; the socket
// hooks' caller is the current task (skb is NULL). Inlined with a constant skb, each program
// keeps only the helpers its type may call.
static __always_inline __u64 ancestor_id(struct __sk_buff *skb, int level)
{
	return skb ? bpf_skb_ancestor_cgroup_id(skb, level) : bpf_get_current_ancestor_cgroup_id(level);
}

// The caller's depth in the cgroup tree: the deepest level with an ancestor. Found by
// bisection (5 helper calls) rather than by asking every level, which cost ~350 ns a call.
static __always_inline int caller_depth(struct __sk_buff *skb)
{
	int low = 0, high = MAX_CGROUP_DEPTH - 1;
	for (int step = 0; step < 5; step++) {
		int middle = (low + high + 1) / 2;
		if (ancestor_id(skb, middle) != 0)
			low = middle;
		else
			high = middle - 1;
	}
	return low;
}

// The nearest ancestor (or self) the agent mapped decides the class: walking up from the
// caller stops at the pod's cgroup, one or two levels above a container's.
static __always_inline __u32 walk_to_mapped(struct __sk_buff *skb, int depth, __u64 *mapped_id,
					    __u64 *tenant_id)
{
	for (int up = 0; up < MAX_CGROUP_DEPTH; up++) {
		int level = depth - up;
		if (level < 0)
			break;
		__u64 id = ancestor_id(skb, level);
		struct cgroup_owner *owner = bpf_map_lookup_elem(&cgroup_classes, &id);
		if (owner) {
			*mapped_id = id;
			*tenant_id = owner->tenant_id;
			return owner->class_id < MAX_CLASSES ? owner->class_id : CLASS_UNMAPPED;
		}
	}
	return CLASS_UNMAPPED;
}

// Who is calling, as one lookup of settings and one of the cache (or the walk) found it.
struct caller {
	__u64 cgroup_id; // the mapped cgroup, or the caller's own when none is mapped
	__u64 tenant_id;
	__u32 class_id;
	__u32 rules; // the class in the live rule set: the class field of the policy maps' keys
	__u8 dry_run;
};

static __always_inline void find_caller(struct __sk_buff *skb, struct caller *caller)
{
	__u64 self = skb ? bpf_skb_cgroup_id(skb) : bpf_get_current_cgroup_id();
	__u32 zero = 0;
	struct settings *s = bpf_map_lookup_elem(&settings, &zero);
	__u32 flags = s ? s->flags : 0;
	__u32 generation = s ? s->generation : 0;
	caller->dry_run = (flags & SETTING_DRY_RUN) != 0;
	struct cached_class *cached = bpf_map_lookup_elem(&class_cache, &self);
	if (cached && cached->generation == generation) {
		caller->cgroup_id = cached->mapped_id;
		caller->tenant_id = cached->tenant_id;
		caller->class_id = cached->class_id;
	} else {
		struct cached_class found = { .mapped_id = self, .generation = generation };
		found.class_id =
			walk_to_mapped(skb, caller_depth(skb), &found.mapped_id, &found.tenant_id);
		bpf_map_update_elem(&class_cache, &self, &found, BPF_ANY);
		caller->cgroup_id = found.mapped_id;
		caller->tenant_id = found.tenant_id;
		caller->class_id = found.class_id;
	}
	caller->rules = caller->class_id + ((flags & SETTING_RULE_SET_B) ? MAX_CLASSES : 0);
}

// A destination the trie denied may be a pod of the caller's own tenant that a "same tenant"
// rule of the caller's class opens.
static __always_inline int peer_allows(const struct caller *caller, __u8 family,
				       const __u32 *addr, __u16 port, __u8 protocol)
{
	if (caller->tenant_id == 0)
		return 0;
	struct peer_key key = { .tenant_id = caller->tenant_id,
				.class_id = caller->rules,
				.family = family };
	key.addr[0] = addr[0];
	key.addr[1] = addr[1];
	key.addr[2] = addr[2];
	key.addr[3] = addr[3];
	struct rule *rule = bpf_map_lookup_elem(&tenant_peers, &key);
	return rule && port_allowed(rule, port, protocol);
}

static __always_inline int port_allowed(const struct rule *rule, __u16 port, __u8 protocol)
{
	if (rule->flags & RULE_ANY_PORT)
		return 1;
	// An echo has no port: a destination the class may reach on some port answers pings.
	if (protocol == IPPROTO_ICMP || protocol == PROTO_ICMPV6)
		return rule->count > 0;
	for (int i = 0; i < MAX_PORT_RANGES; i++) {
		if (i >= rule->count)
			break;
		const struct port_range *range = &rule->ranges[i];
		if (range->protocol == protocol && port >= range->first && port <= range->last)
			return 1;
	}
	return 0;
}

static __always_inline void count(__u32 class_id, __u32 reason);

// ALLOWED, or the reason to deny.
static __always_inline int judge(const struct rule *rule, __u32 class_id, __u16 port,
				 __u8 protocol)
{
	if (!rule)
		return REASON_DESTINATION;
	if (port_allowed(rule, port, protocol)) {
		if (rule->flags & RULE_GRANT)
			count(class_id, REASON_GRANT_USED);
		return ALLOWED;
	}
	if (rule->flags & RULE_METADATA)
		return REASON_METADATA;
	return rule->count ? REASON_PORT : REASON_DESTINATION;
}

static __always_inline void count(__u32 class_id, __u32 reason)
{
	__u32 key = class_id * REASONS + reason;
	__u64 *counter = bpf_map_lookup_elem(&denials, &key);
	if (counter)
		*counter += 1;
}

static __always_inline int verdict(struct __sk_buff *skb, int reason, const struct caller *caller,
				   __u8 family, const __u32 *addr, __u16 port, __u8 protocol)
{
	if (reason == ALLOWED)
		return VERDICT_ALLOW;
	__u32 class_id = caller->class_id;
	count(class_id, reason);
	struct denial *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (event) {
		event->cgroup_id = caller->cgroup_id;
		event->class_id = class_id;
		// A packet may leave from no task of the sender's (pid 0: the cgroup says who).
		event->pid = skb ? 0 : bpf_get_current_pid_tgid() >> 32;
		event->addr[0] = addr[0];
		event->addr[1] = family == 6 ? addr[1] : 0;
		event->addr[2] = family == 6 ? addr[2] : 0;
		event->addr[3] = family == 6 ? addr[3] : 0;
		event->port = port;
		event->family = family;
		event->protocol = protocol;
		event->reason = reason;
		event->dry_run = caller->dry_run;
		event->layer = skb ? LAYER_PACKET : LAYER_SOCKET;
		event->pad = 0;
		bpf_ringbuf_submit(event, 0);
	} else {
		count(class_id, REASON_EVENT_LOST);
	}
	return caller->dry_run ? VERDICT_ALLOW : VERDICT_DENY;
}

// A UDP connect() sends nothing; only a credential endpoint is refused there (see the top).
static __always_inline int route_probe(struct __sk_buff *skb, int connect, __u8 protocol,
				       int reason)
{
	return !skb && connect && protocol != IPPROTO_TCP && reason != REASON_METADATA;
}

// `local`: loopback and the unspecified address stay on this host (an IPv4 address, or one
// v4-mapped); in a form the network carries (NAT64, 6to4, IPv4-compatible) they are judged
// like any other address.
static __always_inline int decide_v4(struct __sk_buff *skb, int connect, __u32 addr, __u16 port,
				     __u8 protocol, int local)
{
	if (local && ((bpf_ntohl(addr) >> 24) == 127 || addr == 0))
		return VERDICT_ALLOW;
	struct caller caller;
	find_caller(skb, &caller);
	struct v4_key key = { .prefixlen = 64, .class_id = caller.rules, .addr = addr };
	int reason = judge(bpf_map_lookup_elem(&v4_rules, &key), caller.class_id, port, protocol);
	__u32 addrs[4] = { addr, 0, 0, 0 };
	if (reason != ALLOWED && reason != REASON_METADATA &&
	    peer_allows(&caller, 4, addrs, port, protocol))
		reason = ALLOWED;
	if (route_probe(skb, connect, protocol, reason))
		reason = ALLOWED;
	return verdict(skb, reason, &caller, 4, addrs, port, protocol);
}

static __always_inline int decide_v6(struct __sk_buff *skb, int connect, const __u32 *addr,
				     __u16 port, __u8 protocol)
{
	if (addr[0] == 0 && addr[1] == 0 && addr[2] == 0 && addr[3] == bpf_htonl(1))
		return VERDICT_ALLOW;
	// Forms that deliver to an IPv4 address are judged as it (policies/src/egress.rs,
	// embedded_ipv4, is the same rule): v4-mapped ::ffff:a.b.c.d, IPv4-translated
	// ::ffff:0:a.b.c.d, IPv4-compatible ::a.b.c.d, NAT64 64:ff9b::a.b.c.d (a translator on an
	// IPv6-only cluster forwards it), and 6to4 2002:aabb:ccdd::/48. One call judges them all
	// (each inlined copy is one more for the verifier to walk).
	__u32 v4 = addr[3];
	int local = 0, embedded = 1;
	if (addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0x0000ffff))
		local = 1;
	else if (addr[0] == 0 && addr[1] == 0 && addr[2] == 0)
		local = addr[3] == 0; // :: is the unspecified address (::1 is above)
	else if (addr[0] == 0 && addr[1] == 0 && addr[2] == bpf_htonl(0xffff0000))
		;
	else if (addr[0] == bpf_htonl(0x0064ff9b) && addr[1] == 0 && addr[2] == 0)
		;
	else if ((bpf_ntohl(addr[0]) >> 16) == 0x2002)
		v4 = bpf_htonl((bpf_ntohl(addr[0]) << 16) | (bpf_ntohl(addr[1]) >> 16));
	else
		embedded = 0;
	if (embedded)
		return decide_v4(skb, connect, v4, port, protocol, local);
	struct caller caller;
	find_caller(skb, &caller);
	struct v6_key key = { .prefixlen = 160, .class_id = caller.rules };
	key.addr[0] = addr[0];
	key.addr[1] = addr[1];
	key.addr[2] = addr[2];
	key.addr[3] = addr[3];
	int reason = judge(bpf_map_lookup_elem(&v6_rules, &key), caller.class_id, port, protocol);
	// Local-use NAT64 (64:ff9b:1::/48) carries its IPv4 address where the operator chose, so
	// it is never read as one; but at the end (a /96 in it, the usual place) a credential
	// endpoint is refused, whatever the class may send to the prefix.
	if (addr[0] == bpf_htonl(0x0064ff9b) && (bpf_ntohl(addr[1]) >> 16) == 1) {
		struct v4_key embedded_key = { .prefixlen = 64,
					       .class_id = caller.rules,
					       .addr = addr[3] };
		struct rule *rule = bpf_map_lookup_elem(&v4_rules, &embedded_key);
		if (rule && (rule->flags & RULE_METADATA) && !port_allowed(rule, port, protocol))
			reason = REASON_METADATA;
	}
	if (reason != ALLOWED && reason != REASON_METADATA &&
	    peer_allows(&caller, 6, addr, port, protocol))
		reason = ALLOWED;
	if (route_probe(skb, connect, protocol, reason))
		reason = ALLOWED;
	return verdict(skb, reason, &caller, 6, addr, port, protocol);
}

static __always_inline int from_ctx_v6(struct bpf_sock_addr *ctx, int connect)
{
	__u32 addr[4];
	addr[0] = ctx->user_ip6[0];
	addr[1] = ctx->user_ip6[1];
	addr[2] = ctx->user_ip6[2];
	addr[3] = ctx->user_ip6[3];
	return decide_v6(NULL, connect, addr, bpf_ntohs((__u16)ctx->user_port), (__u8)ctx->protocol);
}

SEC("cgroup/connect4")
int hubguard_connect4(struct bpf_sock_addr *ctx)
{
	return decide_v4(NULL, 1, ctx->user_ip4, bpf_ntohs((__u16)ctx->user_port),
			 (__u8)ctx->protocol, 1);
}

SEC("cgroup/connect6")
int hubguard_connect6(struct bpf_sock_addr *ctx)
{
	return from_ctx_v6(ctx, 1);
}

SEC("cgroup/sendmsg4")
int hubguard_sendmsg4(struct bpf_sock_addr *ctx)
{
	return decide_v4(NULL, 0, ctx->user_ip4, bpf_ntohs((__u16)ctx->user_port),
			 (__u8)ctx->protocol, 1);
}

SEC("cgroup/sendmsg6")
int hubguard_sendmsg6(struct bpf_sock_addr *ctx)
{
	return from_ctx_v6(ctx, 0);
}

// The destination port of a TCP or UDP packet whose transport header starts at `offset` (0
// for other protocols, and for a header the program cannot read: no port rule matches it).
static __always_inline __u16 packet_port(struct __sk_buff *skb, __u32 offset, __u8 protocol)
{
	__u16 port;
	if (protocol != IPPROTO_TCP && protocol != IPPROTO_UDP)
		return 0;
	if (bpf_skb_load_bytes(skb, offset + 2, &port, sizeof(port)))
		return 0;
	return bpf_ntohs(port);
}

// Whether the socket hooks already judged where this packet goes: TCP and UDP of an ordinary
// socket, without options.
static __always_inline int hooks_judged(struct bpf_sock *sk, __u8 protocol, int options)
{
	if (options || sk->type == SOCK_RAW)
		return 0;
	if (protocol == IPPROTO_TCP)
		return 1;
	return protocol == IPPROTO_UDP && sk->protocol == IPPROTO_UDP &&
	       sk->state != BPF_TCP_ESTABLISHED;
}

// Every packet a socket under an attach point sends (see the top for what it judges). One
// destination is judged per packet, through one call of each decision (the verifier walks
// every inlined copy): a packet with options by its next hop, as a protocol of its own (IPv4
// options: 0; an IPv6 extension header: its number), which only an every-port rule allows; a
// datagram of a connected socket by the address it connected to; anything else by its header.
// A header the program cannot read is refused.
SEC("cgroup_skb/egress")
int hubguard_packet(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	if (!sk)
		return VERDICT_ALLOW; // the kernel runs cgroup programs for sockets' packets only
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return VERDICT_ALLOW;
	// Nearly every packet: TCP of a stream socket, without options, which the connect hook
	// judged. Read in place (no helper call): this runs for every packet of a bulk transfer.
	if (sk->type == SOCK_STREAM) {
		void *data = (void *)(long)skb->data;
		void *end = (void *)(long)skb->data_end;
		if (skb->protocol == bpf_htons(ETH_P_IP)) {
			struct iphdr *ip = data;
			if ((void *)(ip + 1) <= end && ip->ihl == 5 && ip->protocol == IPPROTO_TCP)
				return VERDICT_ALLOW;
		} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
			struct ipv6hdr *ip = data;
			if ((void *)(ip + 1) <= end && ip->nexthdr == IPPROTO_TCP)
				return VERDICT_ALLOW;
		}
	}
	__u32 addr[4] = { 0, 0, 0, 0 };
	__u32 offset;
	__u8 protocol;
	int v4, options;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return VERDICT_DENY;
		v4 = 1;
		addr[0] = ip.daddr;
		protocol = ip.protocol;
		offset = ip.ihl * 4;
		options = ip.ihl > 5;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)))
			return VERDICT_DENY;
		v4 = 0;
		__builtin_memcpy(addr, ip.daddr.in6_u.u6_addr32, sizeof(addr));
		protocol = ip.nexthdr;
		offset = sizeof(ip);
		options = protocol != IPPROTO_TCP && protocol != IPPROTO_UDP &&
			  protocol != IPPROTO_UDPLITE && protocol != PROTO_ICMPV6;
	} else {
		return VERDICT_ALLOW;
	}
	if (hooks_judged(sk, protocol, options))
		return VERDICT_ALLOW;
	__u16 port = 0;
	if (options) {
		if (v4)
			protocol = IPPROTO_IP;
	} else if (sk->type == SOCK_DGRAM && sk->state == BPF_TCP_ESTABLISHED &&
		   (sk->protocol == IPPROTO_UDP || sk->protocol == IPPROTO_UDPLITE)) {
		port = bpf_ntohs((__u16)sk->dst_port);
		protocol = (__u8)sk->protocol;
		v4 = sk->family == FAMILY_INET;
		if (v4) {
			addr[0] = sk->dst_ip4;
		} else {
			addr[0] = sk->dst_ip6[0];
			addr[1] = sk->dst_ip6[1];
			addr[2] = sk->dst_ip6[2];
			addr[3] = sk->dst_ip6[3];
		}
	} else {
		port = packet_port(skb, offset, protocol);
	}
	if (v4)
		return decide_v4(skb, 0, addr[0], port, protocol, 1);
	return decide_v6(skb, 0, addr, port, protocol);
}

// For what a class may do beyond its egress rules (a CLASS_* flag): allowed, or refused for
// `reason` with no destination.
static __always_inline int class_may(__u32 flag, int reason, __u8 family, __u8 protocol)
{
	struct caller caller;
	find_caller(NULL, &caller);
	__u32 *flags = bpf_map_lookup_elem(&class_flags, &caller.rules);
	if (flags && (*flags & flag))
		return VERDICT_ALLOW;
	__u32 none[4] = { 0, 0, 0, 0 };
	return verdict(NULL, reason, &caller, family, none, 0, protocol);
}

// Raw sockets (any protocol) and ICMP echo datagram sockets: what they send passes no connect
// or sendmsg hook, so a class that may not use them cannot create them. Other families (a
// packet socket needs CAP_NET_RAW, which the restricted level drops) never reach this hook.
SEC("cgroup/sock_create")
int hubguard_sock_create(struct bpf_sock *sk)
{
	int icmp = sk->protocol == IPPROTO_ICMP || sk->protocol == PROTO_ICMPV6;
	if (sk->type != SOCK_RAW && !icmp)
		return VERDICT_ALLOW;
	return class_may(CLASS_RAW_SOCKETS, REASON_SOCKET, sk->family == 10 ? 6 : 4,
			 (__u8)sk->protocol);
}

// The options that put hops of the caller's choosing into a packet's header.
static __always_inline int names_hops(const struct bpf_sockopt *ctx)
{
	if (ctx->level == IPPROTO_IP)
		return ctx->optname == IP_OPTIONS;
	if (ctx->level != IPPROTO_IPV6)
		return 0;
	switch (ctx->optname) {
	case IPV6_RTHDR:
	case IPV6_HOPOPTS:
	case IPV6_DSTOPTS:
	case IPV6_RTHDRDSTOPTS:
	case IPV6_2292RTHDR:
	case IPV6_2292HOPOPTS:
	case IPV6_2292DSTOPTS:
	case IPV6_2292PKTOPTIONS:
		return 1;
	}
	return 0;
}

// IPv4 options and IPv6 extension headers, for a class that may not send them (see the top).
// Clearing them (no value) is always allowed.
SEC("cgroup/setsockopt")
int hubguard_setsockopt(struct bpf_sockopt *ctx)
{
	int optlen = ctx->optlen;
	// The kernel then reads the caller's own buffer: this program changes nothing in it, and an
	// option longer than a page is not refused with EFAULT (as kernels before 6.5 do when a
	// program leaves the length as it found it).
	ctx->optlen = 0;
	if (optlen <= 0 || !names_hops(ctx))
		return VERDICT_ALLOW;
	__u8 family = ctx->level == IPPROTO_IPV6 ? 6 : 4;
	return class_may(CLASS_IP_OPTIONS, REASON_OPTION, family, (__u8)ctx->level);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
