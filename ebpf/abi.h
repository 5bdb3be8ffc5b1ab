// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The ABI between the kernel programs (egress.bpf.c) and the node agent: every constant and
// every struct that crosses a map or the ring buffer, defined once. The agent's
// node-agent/src/abi.rs reads the #defines of this file at build time (build.rs) and mirrors
// the structs, asserting the sizes and offsets written here; the C side asserts them too, so
// a change on either side that the other does not follow fails to compile.
//
// Changing a map's key or value layout also needs a new MAPS_ABI (node-agent/src/abi.rs):
// the maps are pinned and outlive an agent.

#ifndef HUBGUARD_ABI_H
#define HUBGUARD_ABI_H

#include <linux/types.h>

#define MAX_PORT_RANGES 16
#define MAX_CLASSES 8
#define CLASS_UNMAPPED 0

// Why a destination was denied (the index into the per-class counters). REASON_EVENT_LOST
// counts events lost because the ring buffer was full; REASON_GRANT_USED counts connects a
// credential grant allowed (not a denial); REASON_OPTION is a setsockopt() refused: IPv4
// options or an IPv6 extension header.
#define REASON_EVENT_LOST 0
#define REASON_METADATA 1
#define REASON_DESTINATION 2
#define REASON_PORT 3
#define REASON_SOCKET 4
#define REASON_GRANT_USED 5
#define REASON_OPTION 6
#define REASONS 7

// rule.flags
#define RULE_METADATA 1 // the prefix is a cloud credential endpoint
#define RULE_ANY_PORT 2 // every port and protocol is allowed
#define RULE_GRANT 4 // a credential endpoint the policy grants this class: counted when used

// settings.flags
#define SETTING_DRY_RUN 1 // report what would be denied, deny nothing
#define SETTING_RULE_SET_B 2 // the second rule set is the live one (see below)

// The policy maps (v4_rules, v6_rules, tenant_peers, class_flags) hold two rule sets; a key's
// class field is the rule class: class id + MAX_CLASSES for the second set. The agent writes the
// set that is not live, then flips SETTING_RULE_SET_B in one update of settings: a program sees
// the old rules or the new, never half of a change. Each set holds at most RULE_SET_ENTRIES
// entries of a map, so both always fit.
#define RULE_SETS 2
#define RULE_SET_ENTRIES 32768

// denial.layer
#define LAYER_SOCKET 0 // a connect, sendmsg, socket-creation or setsockopt hook refused the call
#define LAYER_PACKET 1 // the packet layer refused a packet the socket hooks let through

// class_flags values
#define CLASS_RAW_SOCKETS 1 // raw and ICMP echo sockets may be created
#define CLASS_IP_OPTIONS 2 // IPv4 options and IPv6 extension headers may be set on sockets

struct port_range {
	__u16 first;
	__u16 last;
	__u8 protocol; // IPPROTO_TCP or IPPROTO_UDP
	__u8 pad[3];
};

struct rule {
	__u32 flags;
	__u32 count; // used entries of ranges; 0 with no RULE_ANY_PORT denies the prefix
	struct port_range ranges[MAX_PORT_RANGES];
};

// The rule class is part of the prefix (prefixlen counts its 32 bits), so one trie holds
// every class's rules in both sets and a lookup never crosses into another class or set.
struct v4_key {
	__u32 prefixlen;
	__u32 class_id; // the rule class
	__u32 addr; // network byte order
};

struct v6_key {
	__u32 prefixlen;
	__u32 class_id; // the rule class
	__u32 addr[4]; // network byte order
};

struct settings {
	__u32 flags;
	__u32 generation; // bumped by the agent after every change to cgroup_classes
};

// Who a mapped cgroup is: its class, and its tenant (0: unknown, which has no peers).
struct cgroup_owner {
	__u32 class_id;
	__u32 pad;
	__u64 tenant_id;
};

// A pod address of a tenant, as a destination for "pods of the same tenant" rules.
struct peer_key {
	__u64 tenant_id;
	__u32 class_id; // the caller's rule class, whose rules opened the ports
	__u32 family; // 4 or 6
	__u32 addr[4]; // IPv4 in addr[0]; network byte order
};

// One per denied (or, in dry run, would-be denied) connect, send or socket.
struct denial {
	__u64 cgroup_id; // the mapped cgroup (pod or user cgroup), or the caller's own if unmapped
	__u32 class_id;
	__u32 pid;
	__u32 addr[4]; // IPv4 in addr[0]; network byte order; zero for a socket refused
	__u16 port;
	__u8 family; // 4 or 6
	__u8 protocol;
	__u8 reason;
	__u8 dry_run;
	__u8 layer; // LAYER_*
	__u8 pad;
};

// The layout both sides assert.
#define SIZEOF_PORT_RANGE 8
#define SIZEOF_RULE 136
#define SIZEOF_V4_KEY 12
#define SIZEOF_V6_KEY 24
#define SIZEOF_SETTINGS 8
#define SIZEOF_CGROUP_OWNER 16
#define SIZEOF_PEER_KEY 32
#define SIZEOF_DENIAL 40
#define OFFSETOF_DENIAL_ADDR 16
#define OFFSETOF_DENIAL_PORT 32
#define OFFSETOF_DENIAL_REASON 36
#define OFFSETOF_PEER_KEY_ADDR 16

_Static_assert(sizeof(struct port_range) == SIZEOF_PORT_RANGE, "port_range");
_Static_assert(sizeof(struct rule) == SIZEOF_RULE, "rule");
_Static_assert(sizeof(struct v4_key) == SIZEOF_V4_KEY, "v4_key");
_Static_assert(sizeof(struct v6_key) == SIZEOF_V6_KEY, "v6_key");
_Static_assert(sizeof(struct settings) == SIZEOF_SETTINGS, "settings");
_Static_assert(sizeof(struct cgroup_owner) == SIZEOF_CGROUP_OWNER, "cgroup_owner");
_Static_assert(sizeof(struct peer_key) == SIZEOF_PEER_KEY, "peer_key");
_Static_assert(sizeof(struct denial) == SIZEOF_DENIAL, "denial");
_Static_assert(__builtin_offsetof(struct denial, addr) == OFFSETOF_DENIAL_ADDR, "denial.addr");
_Static_assert(__builtin_offsetof(struct denial, port) == OFFSETOF_DENIAL_PORT, "denial.port");
_Static_assert(__builtin_offsetof(struct denial, reason) == OFFSETOF_DENIAL_REASON,
	       "denial.reason");
_Static_assert(__builtin_offsetof(struct peer_key, addr) == OFFSETOF_PEER_KEY_ADDR,
	       "peer_key.addr");

#endif
