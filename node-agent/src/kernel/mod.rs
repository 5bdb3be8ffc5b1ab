//! The kernel side as the agent sees it: load `ebpf/egress.bpf.c`, attach it to cgroups with
//! links pinned in bpffs (so enforcement outlives the agent), adopt what an earlier agent left,
//! keep the maps equal to what userspace wants, and remove everything on `--uninstall`.
//!
//! Pins under the pin directory:
//! - `maps/<MAPS_ABI>/<name>`: the maps, shared by every agent version with the same map
//!   layout (pinned by name at load). A new layout gets a directory of its own, filled from
//!   scratch; the old one goes with the old programs' links.
//! - `links/<cgroup id>/<program>-<object version>`: one link per program and attach point.
//!
//! Here: loading. `pins`: attaching, adopting, uninstalling. `maps`: writing the maps as
//! differences. `counters`: the kernel's counters and denial events.

mod counters;
mod maps;
mod pins;

pub use counters::Denial;
pub use pins::uninstall;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::links::{CgroupAttachMode, FdLink};
use aya::programs::{
    CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, CgroupSockopt, ProgramError,
};
use aya::{Ebpf, EbpfError, EbpfLoader};
use ipnet::IpNet;

use crate::abi::{
    RawDenial, RawOwner, RawPeerKey, RawPortRange, RawRule, RawSettings, Reason, V4Data, V6Data,
    LAYER_PACKET, MAPS_ABI, MAX_PORT_RANGES, REASONS, RULE_SETS, SETTING_DRY_RUN,
    SETTING_RULE_SET_B,
};
use crate::cgroups;
use crate::classes::{ClassId, MAX_CLASSES};
use crate::rules::{over_rule_set, Entry, PeerTable, PortRange, RuleTable, RULE_SET_CAPACITY};

/// The compiled kernel programs (built by build.rs with clang).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/egress.bpf.o"));

pub const PROGRAMS: [&str; 7] = [
    "hubguard_connect4",
    "hubguard_connect6",
    "hubguard_sendmsg4",
    "hubguard_sendmsg6",
    "hubguard_sock_create",
    "hubguard_packet",
    "hubguard_setsockopt",
];

const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
    #[error("{path} is not on a bpf filesystem; mount one there (mount -t bpf bpffs {path}) or pass --bpffs")]
    NotBpffs { path: String },
    #[error("loading the kernel programs: {0}")]
    Load(#[from] EbpfError),
    #[error("program {program}: {error}")]
    Program {
        program: &'static str,
        error: ProgramError,
    },
    #[error("map {map}: {error}{}", cause(error))]
    Map { map: &'static str, error: MapError },
    #[error("map {map}: {entries} entries do not fit in a rule set ({capacity} at most); the rules in force stay")]
    DoesNotFit {
        map: &'static str,
        entries: usize,
        capacity: usize,
    },
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KernelError + '_ {
    move |error| KernelError::Io {
        path: path.display().to_string(),
        error,
    }
}

/// The system's own words under an aya error (its Display names only the call).
fn cause(error: &MapError) -> String {
    std::error::Error::source(error).map_or_else(String::new, |source| format!(": {source}"))
}

fn map_error(map: &'static str) -> impl FnOnce(MapError) -> KernelError {
    move |error| KernelError::Map { map, error }
}

/// A version of the kernel object: a new agent with the same programs adopts the pinned links,
/// one with different programs replaces them.
pub fn object_version() -> String {
    let hash = OBJECT.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{:08x}", hash >> 32)
}

/// What userspace wants in the maps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// Cgroup id → its class and tenant id (`rules::tenant_id`).
    pub cgroups: HashMap<u64, (ClassId, u64)>,
    /// "Same tenant" destinations, shared with the compiled policy like `rules`.
    pub peers: std::sync::Arc<PeerTable>,
    /// CLASS_* flags per class (raw and ICMP echo sockets).
    pub class_flags: BTreeMap<ClassId, u32>,
    /// Shared with the compiled policy it came from: 10,000 rules are held once.
    pub rules: std::sync::Arc<RuleTable>,
    pub dry_run: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub written: usize,
    pub removed: usize,
    /// Whether a new rule set became live.
    pub swapped: bool,
    /// Entries in each map after the sync (the policy's maps: in the live rule set).
    pub entries: MapEntries,
}

/// Entry counts of the maps that grow with pods and policy: what an SRE watches for leaks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MapEntries {
    pub cgroup_classes: usize,
    pub tenant_peers: usize,
    pub v4_rules: usize,
    pub v6_rules: usize,
}

impl MapEntries {
    /// (map name, entries), names as in the kernel object.
    pub fn by_map(&self) -> [(&'static str, usize); 4] {
        [
            ("cgroup_classes", self.cgroup_classes),
            ("tenant_peers", self.tenant_peers),
            ("v4_rules", self.v4_rules),
            ("v6_rules", self.v6_rules),
        ]
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AttachReport {
    pub attached: usize,
    pub adopted: usize,
    /// Attach points an earlier agent used that are no longer configured: detached.
    pub detached: Vec<u64>,
}

pub struct Kernel {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    cgroup_classes: BpfHashMap<MapData, u64, RawOwner>,
    tenant_peers: BpfHashMap<MapData, RawPeerKey, RawRule>,
    v4_rules: LpmTrie<MapData, V4Data, RawRule>,
    v6_rules: LpmTrie<MapData, V6Data, RawRule>,
    settings: Array<MapData, RawSettings>,
    class_flags: Array<MapData, u32>,
    denials: PerCpuArray<MapData, u64>,
    events: Option<RingBuf<MapData>>,
}

impl Kernel {
    /// Loads the programs; the maps are the pinned ones if an earlier agent left them.
    pub fn load(pin_dir: &Path) -> Result<Kernel, KernelError> {
        pins::ensure_bpffs(pin_dir)?;
        let maps_dir = pin_dir.join("maps").join(MAPS_ABI);
        std::fs::create_dir_all(&maps_dir).map_err(io_error(&maps_dir))?;
        // No kernel BTF: the programs use no CO-RE relocations (uapi headers only), and
        // parsing /sys/kernel/btf/vmlinux cost the agent about 20 MiB of memory.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .default_map_pin_directory(&maps_dir)
            .load(OBJECT)?;
        fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, KernelError> {
            ebpf.take_map(name).ok_or(KernelError::Map {
                map: name,
                error: MapError::InvalidName {
                    name: name.to_string(),
                },
            })
        }
        let cgroup_classes = BpfHashMap::try_from(take(&mut ebpf, "cgroup_classes")?)
            .map_err(map_error("cgroup_classes"))?;
        let tenant_peers = BpfHashMap::try_from(take(&mut ebpf, "tenant_peers")?)
            .map_err(map_error("tenant_peers"))?;
        let v4_rules =
            LpmTrie::try_from(take(&mut ebpf, "v4_rules")?).map_err(map_error("v4_rules"))?;
        let v6_rules =
            LpmTrie::try_from(take(&mut ebpf, "v6_rules")?).map_err(map_error("v6_rules"))?;
        let settings =
            Array::try_from(take(&mut ebpf, "settings")?).map_err(map_error("settings"))?;
        let class_flags =
            Array::try_from(take(&mut ebpf, "class_flags")?).map_err(map_error("class_flags"))?;
        let denials =
            PerCpuArray::try_from(take(&mut ebpf, "denials")?).map_err(map_error("denials"))?;
        let events = RingBuf::try_from(take(&mut ebpf, "events")?).map_err(map_error("events"))?;
        Ok(Kernel {
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            cgroup_classes,
            tenant_peers,
            v4_rules,
            v6_rules,
            settings,
            class_flags,
            denials,
            events: Some(events),
        })
    }
}
