//! The kernel ABI, mirrored once: the constants come from `ebpf/abi.h` itself (build.rs turns
//! its `#define`s into Rust constants), and each struct below mirrors the C struct of the same
//! name, with its size and field offsets asserted at compile time against the values the
//! header asserts on the C side.

use std::mem::{offset_of, size_of};

mod defines {
    include!(concat!(env!("OUT_DIR"), "/abi_defines.rs"));
}
pub use defines::*;

/// The maps' layout version: the directory the maps are pinned under. Bump it with any
/// change to a map's key or value in `ebpf/abi.h`.
pub const MAPS_ABI: &str = "abi3";

/// Why the kernel denied (or counted) something; the index into the per-class counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Reason {
    /// Events lost because the ring buffer was full (a counter, not an event).
    EventLost = REASON_EVENT_LOST,
    /// A cloud credential endpoint.
    Metadata = REASON_METADATA,
    /// No rule opens the address.
    Destination = REASON_DESTINATION,
    /// The address is open, not this port or protocol.
    Port = REASON_PORT,
    /// A raw or ICMP echo socket refused at creation.
    Socket = REASON_SOCKET,
    /// Not a denial: a connect a credential grant allowed.
    GrantUsed = REASON_GRANT_USED,
    /// IPv4 options or an IPv6 extension header refused at setsockopt.
    Option = REASON_OPTION,
}

impl Reason {
    pub const ALL: [Reason; REASONS as usize] = [
        Reason::EventLost,
        Reason::Metadata,
        Reason::Destination,
        Reason::Port,
        Reason::Socket,
        Reason::GrantUsed,
        Reason::Option,
    ];

    pub fn from_raw(raw: u32) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| *r as u32 == raw)
    }
}

/// `struct port_range`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawPortRange {
    pub first: u16,
    pub last: u16,
    pub protocol: u8,
    pub pad: [u8; 3],
}

/// `struct rule`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRule {
    pub flags: u32,
    pub count: u32,
    pub ranges: [RawPortRange; MAX_PORT_RANGES as usize],
}

/// `struct settings`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawSettings {
    pub flags: u32,
    /// Bumped after every change to cgroup_classes: the programs' class cache is then stale.
    pub generation: u32,
}

/// `struct cgroup_owner`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawOwner {
    pub class_id: u32,
    pub pad: u32,
    pub tenant_id: u64,
}

/// `struct peer_key`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawPeerKey {
    pub tenant_id: u64,
    pub class_id: u32,
    pub family: u32,
    pub addr: [u32; 4],
}

/// `struct denial`, as the ring buffer carries it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawDenial {
    pub cgroup_id: u64,
    pub class_id: u32,
    pub pid: u32,
    pub addr: [u32; 4],
    pub port: u16,
    pub family: u8,
    pub protocol: u8,
    pub reason: u8,
    pub dry_run: u8,
    pub layer: u8,
    pub pad: u8,
}

/// Trie keys (`struct v4_key`, `struct v6_key`) after their prefix length, as aya's LPM
/// trie keys hold them: the rule class (native order) then the address bytes.
pub type V4Data = [u8; 8];
pub type V6Data = [u8; 20];

// SAFETY (all four): plain old data, repr(C), every byte a field or explicit padding.
unsafe impl aya::Pod for RawRule {}
unsafe impl aya::Pod for RawSettings {}
unsafe impl aya::Pod for RawOwner {}
unsafe impl aya::Pod for RawPeerKey {}

const _: () = {
    assert!(size_of::<RawPortRange>() == SIZEOF_PORT_RANGE as usize);
    assert!(size_of::<RawRule>() == SIZEOF_RULE as usize);
    assert!(4 + size_of::<V4Data>() == SIZEOF_V4_KEY as usize);
    assert!(4 + size_of::<V6Data>() == SIZEOF_V6_KEY as usize);
    assert!(size_of::<RawSettings>() == SIZEOF_SETTINGS as usize);
    assert!(size_of::<RawOwner>() == SIZEOF_CGROUP_OWNER as usize);
    assert!(size_of::<RawPeerKey>() == SIZEOF_PEER_KEY as usize);
    assert!(offset_of!(RawPeerKey, addr) == OFFSETOF_PEER_KEY_ADDR as usize);
    assert!(size_of::<RawDenial>() == SIZEOF_DENIAL as usize);
    assert!(offset_of!(RawDenial, addr) == OFFSETOF_DENIAL_ADDR as usize);
    assert!(offset_of!(RawDenial, port) == OFFSETOF_DENIAL_PORT as usize);
    assert!(offset_of!(RawDenial, reason) == OFFSETOF_DENIAL_REASON as usize);
};

impl RawDenial {
    /// Reads one from a ring-buffer record (`None` when it is too short).
    pub fn read(bytes: &[u8]) -> Option<RawDenial> {
        (bytes.len() >= size_of::<RawDenial>()).then(|| {
            // SAFETY: the record holds at least one RawDenial, a repr(C) plain-old-data
            // struct every bit pattern of which is valid; read_unaligned copies it out.
            unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<RawDenial>()) }
        })
    }
}
