//! The kernel side as the agent sees it: load `ebpf/egress.bpf.c`, attach it to cgroups with
//! links pinned in bpffs (so enforcement outlives the agent), adopt what an earlier agent left,
//! keep the maps equal to what userspace wants, and remove everything on `--uninstall`.
//!
//! Pins under the pin directory:
//! - `maps/<MAPS_ABI>/<name>`: the maps, shared by every agent version with the same map
//!   layout (pinned by name at load). A new layout gets a directory of its own, filled from
//!   scratch; the old one goes with the old programs' links.
//! - `links/<cgroup id>/<program>-<object version>`: one link per program and attach point.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aya::maps::lpm_trie::{Key, LpmTrie};
use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError, PerCpuArray, RingBuf};
use aya::programs::links::{CgroupAttachMode, FdLink};
use aya::programs::{CgroupSock, CgroupSockAddr, ProgramError};
use aya::{Ebpf, EbpfError, EbpfLoader};
use ipnet::IpNet;

use crate::abi::{
    RawDenial, RawOwner, RawPeerKey, RawPortRange, RawRule, RawSettings, Reason, V4Data, V6Data,
    MAPS_ABI, MAX_PORT_RANGES, REASONS, SETTING_DRY_RUN,
};
use crate::cgroups;
use crate::classes::{ClassId, MAX_CLASSES};
use crate::rules::{Entry, PeerTable, PortRange, RuleTable};

/// The compiled kernel programs (built by build.rs with clang).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/egress.bpf.o"));

pub const PROGRAMS: [&str; 5] = [
    "hubguard_connect4",
    "hubguard_connect6",
    "hubguard_sendmsg4",
    "hubguard_sendmsg6",
    "hubguard_sock_create",
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
    #[error("map {map}: {error}")]
    Map { map: &'static str, error: MapError },
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KernelError + '_ {
    move |error| KernelError::Io {
        path: path.display().to_string(),
        error,
    }
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

impl From<&Entry> for RawRule {
    fn from(entry: &Entry) -> Self {
        let mut raw = RawRule {
            flags: entry.flags,
            count: entry.ranges.len().min(MAX_PORT_RANGES as usize) as u32,
            ranges: [RawPortRange::default(); MAX_PORT_RANGES as usize],
        };
        for (slot, range) in raw.ranges.iter_mut().zip(&entry.ranges) {
            let PortRange {
                protocol,
                first,
                last,
            } = *range;
            *slot = RawPortRange {
                first,
                last,
                protocol,
                pad: [0; 3],
            };
        }
        raw
    }
}

impl RawPeerKey {
    pub fn new(class: ClassId, tenant_id: u64, ip: &IpAddr) -> Self {
        let mut addr = [0u32; 4];
        let family = match ip {
            IpAddr::V4(v4) => {
                addr[0] = u32::from_ne_bytes(v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                for (slot, chunk) in addr.iter_mut().zip(v6.octets().chunks(4)) {
                    *slot = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                }
                6
            }
        };
        RawPeerKey {
            tenant_id,
            class_id: class as u32,
            family,
            addr,
        }
    }
}

fn trie_data<const N: usize>(class: ClassId, addr: &[u8]) -> [u8; N] {
    let mut data = [0u8; N];
    data[..4].copy_from_slice(&(class as u32).to_ne_bytes());
    data[4..].copy_from_slice(addr);
    data
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
        ensure_bpffs(pin_dir)?;
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

    /// Makes the programs attached, through pinned links, at exactly these cgroups: adopts
    /// links of this version, attaches where missing, then removes older versions' links
    /// (both run during the swap, so there is no gap) and links at cgroups no longer listed.
    pub fn attach(&mut self, cgroups: &[PathBuf]) -> Result<AttachReport, KernelError> {
        let version = object_version();
        let links_dir = self.pin_dir.join("links");
        std::fs::create_dir_all(&links_dir).map_err(io_error(&links_dir))?;
        let mut wanted = BTreeMap::new();
        for path in cgroups {
            wanted.insert(cgroups::cgroup_id(path)?, path.clone());
        }
        let mut report = AttachReport::default();
        for id in pinned_attach_points(&links_dir)? {
            if !wanted.contains_key(&id) {
                remove_tree(&links_dir.join(id.to_string()))?;
                report.detached.push(id);
            }
        }
        for (id, path) in &wanted {
            let dir = links_dir.join(id.to_string());
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            let cgroup = File::open(path).map_err(io_error(path))?;
            for program_name in PROGRAMS {
                let pin = dir.join(format!("{program_name}-{version}"));
                if pin.exists() {
                    report.adopted += 1;
                } else {
                    self.attach_one(program_name, &cgroup, &pin)?;
                    report.attached += 1;
                }
                for old in std::fs::read_dir(&dir).map_err(io_error(&dir))? {
                    let old = old.map_err(io_error(&dir))?.path();
                    let name = old.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    if name.starts_with(&format!("{program_name}-")) && old != pin {
                        std::fs::remove_file(&old).map_err(io_error(&old))?;
                    }
                }
            }
        }
        // The old programs are detached now: the maps of another layout go with them.
        let maps_root = self.pin_dir.join("maps");
        for entry in std::fs::read_dir(&maps_root).map_err(io_error(&maps_root))? {
            let path = entry.map_err(io_error(&maps_root))?.path();
            if path.file_name().and_then(|n| n.to_str()) != Some(MAPS_ABI) {
                if path.is_dir() {
                    remove_tree(&path)?;
                } else {
                    std::fs::remove_file(&path).map_err(io_error(&path))?;
                }
            }
        }
        Ok(report)
    }

    fn attach_one(
        &mut self,
        program_name: &'static str,
        cgroup: &File,
        pin: &Path,
    ) -> Result<(), KernelError> {
        let wrap = |error| KernelError::Program {
            program: program_name,
            error,
        };
        let program = self
            .ebpf
            .program_mut(program_name)
            .ok_or(KernelError::Program {
                program: program_name,
                error: ProgramError::NotLoaded,
            })?;
        // A bpf_link on a cgroup always coexists with other programs; the kernel refuses
        // attach flags on links, and aya passes none for Single.
        let link = if let Ok(program) = <&mut CgroupSock>::try_from(&mut *program) {
            if program.fd().is_err() {
                program.load().map_err(wrap)?;
            }
            let link_id = program
                .attach(cgroup, CgroupAttachMode::Single)
                .map_err(wrap)?;
            let link = program.take_link(link_id).map_err(wrap)?;
            FdLink::try_from(link).map_err(|e| KernelError::Io {
                path: pin.display().to_string(),
                error: io::Error::other(e.to_string()),
            })?
        } else {
            let program: &mut CgroupSockAddr = program.try_into().map_err(wrap)?;
            if program.fd().is_err() {
                program.load().map_err(wrap)?;
            }
            let link_id = program
                .attach(cgroup, CgroupAttachMode::Single)
                .map_err(wrap)?;
            let link = program.take_link(link_id).map_err(wrap)?;
            FdLink::try_from(link).map_err(|e| KernelError::Io {
                path: pin.display().to_string(),
                error: io::Error::other(e.to_string()),
            })?
        };
        let pin_error = |e: String| KernelError::Io {
            path: pin.display().to_string(),
            error: io::Error::other(e),
        };
        link.pin(pin).map_err(|e| pin_error(e.to_string()))?;
        Ok(())
    }

    /// Writes the differences between the maps and `desired`: new and changed entries first,
    /// then removals, so a destination being re-keyed is never briefly absent. Without
    /// `prune` nothing is removed: for a view known to be incomplete (a restarted agent that
    /// has not listed the node's pods yet must not forget the pods its predecessor mapped).
    pub fn sync(&mut self, desired: &Desired, prune: bool) -> Result<SyncReport, KernelError> {
        let mut report = SyncReport::default();
        let current: HashMap<u64, RawOwner> = self
            .cgroup_classes
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_error("cgroup_classes"))?;
        let mut cgroups_changed = false;
        for (id, (class, tenant_id)) in &desired.cgroups {
            let owner = RawOwner {
                class_id: *class as u32,
                pad: 0,
                tenant_id: *tenant_id,
            };
            if current.get(id) != Some(&owner) {
                self.cgroup_classes
                    .insert(id, owner, 0)
                    .map_err(map_error("cgroup_classes"))?;
                report.written += 1;
                cgroups_changed = true;
            }
        }
        for id in current
            .keys()
            .filter(|id| prune && !desired.cgroups.contains_key(id))
        {
            self.cgroup_classes
                .remove(id)
                .map_err(map_error("cgroup_classes"))?;
            report.removed += 1;
            cgroups_changed = true;
        }

        // After the cgroup map changed, never before: a program that reads the new generation
        // then walks the new map.
        let old = self.settings.get(&0, 0).map_err(map_error("settings"))?;
        let new = RawSettings {
            flags: if desired.dry_run { SETTING_DRY_RUN } else { 0 },
            generation: old.generation.wrapping_add(u32::from(cgroups_changed)),
        };
        if new != old {
            self.settings
                .set(0, new, 0)
                .map_err(map_error("settings"))?;
            report.written += 1;
        }

        let mut v4 = HashMap::new();
        let mut v6 = HashMap::new();
        for ((class, net), entry) in desired.rules.iter() {
            let raw = RawRule::from(entry);
            match net {
                IpNet::V4(n) => {
                    v4.insert(
                        (
                            n.prefix_len() as u32 + 32,
                            trie_data(*class, &n.addr().octets()),
                        ),
                        raw,
                    );
                }
                IpNet::V6(n) => {
                    v6.insert(
                        (
                            n.prefix_len() as u32 + 32,
                            trie_data(*class, &n.addr().octets()),
                        ),
                        raw,
                    );
                }
            }
        }
        for class in 0..MAX_CLASSES {
            let want = desired
                .class_flags
                .get(&ClassId::from_raw(class))
                .copied()
                .filter(|_| ClassId::from_raw(class) as u32 == class)
                .unwrap_or(0);
            let have = self
                .class_flags
                .get(&class, 0)
                .map_err(map_error("class_flags"))?;
            if want != have {
                self.class_flags
                    .set(class, want, 0)
                    .map_err(map_error("class_flags"))?;
                report.written += 1;
            }
        }
        let peers: HashMap<RawPeerKey, RawRule> = desired
            .peers
            .iter()
            .map(|((class, tenant, ip), entry)| {
                (RawPeerKey::new(*class, *tenant, ip), RawRule::from(entry))
            })
            .collect();
        let current_peers: HashMap<RawPeerKey, RawRule> = self
            .tenant_peers
            .iter()
            .collect::<Result<_, _>>()
            .map_err(map_error("tenant_peers"))?;
        for (key, rule) in &peers {
            if current_peers.get(key) != Some(rule) {
                self.tenant_peers
                    .insert(key, rule, 0)
                    .map_err(map_error("tenant_peers"))?;
                report.written += 1;
            }
        }
        for key in current_peers
            .keys()
            .filter(|k| prune && !peers.contains_key(k))
        {
            self.tenant_peers
                .remove(key)
                .map_err(map_error("tenant_peers"))?;
            report.removed += 1;
        }
        sync_trie(&mut self.v4_rules, &v4, "v4_rules", prune, &mut report)?;
        sync_trie(&mut self.v6_rules, &v6, "v6_rules", prune, &mut report)?;
        Ok(report)
    }

    /// Denials counted by the kernel since the maps were created, per class and reason
    /// (reason 0: events lost because the ring buffer was full).
    pub fn denial_counts(&self) -> Result<Vec<(ClassId, Reason, u64)>, KernelError> {
        let mut out = Vec::new();
        for class in 0..MAX_CLASSES {
            for reason in Reason::ALL {
                let values = self
                    .denials
                    .get(&(class * REASONS + reason as u32), 0)
                    .map_err(map_error("denials"))?;
                let total: u64 = values.iter().sum();
                if total > 0 {
                    out.push((ClassId::from_raw(class), reason, total));
                }
            }
        }
        Ok(out)
    }

    /// The ring buffer of denial events; once.
    pub fn take_events(&mut self) -> Option<RingBuf<MapData>> {
        self.events.take()
    }
}

fn sync_trie<const N: usize>(
    trie: &mut LpmTrie<MapData, [u8; N], RawRule>,
    desired: &HashMap<(u32, [u8; N]), RawRule>,
    name: &'static str,
    prune: bool,
    report: &mut SyncReport,
) -> Result<(), KernelError>
where
    [u8; N]: aya::Pod,
{
    let current: HashMap<(u32, [u8; N]), RawRule> = trie
        .iter()
        .map(|item| item.map(|(k, v)| ((k.prefix_len(), k.data()), v)))
        .collect::<Result<_, _>>()
        .map_err(map_error(name))?;
    for (key, value) in desired {
        if current.get(key) != Some(value) {
            trie.insert(&Key::new(key.0, key.1), value, 0)
                .map_err(map_error(name))?;
            report.written += 1;
        }
    }
    for key in current.keys().filter(|k| prune && !desired.contains_key(k)) {
        trie.remove(&Key::new(key.0, key.1))
            .map_err(map_error(name))?;
        report.removed += 1;
    }
    Ok(())
}

fn pinned_attach_points(links_dir: &Path) -> Result<Vec<u64>, KernelError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(links_dir).map_err(io_error(links_dir))? {
        let entry = entry.map_err(io_error(links_dir))?;
        if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Unpinning a link detaches its program once nothing else holds it.
fn remove_tree(dir: &Path) -> Result<(), KernelError> {
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.is_dir() {
            remove_tree(&path)?;
        } else {
            std::fs::remove_file(&path).map_err(io_error(&path))?;
        }
    }
    std::fs::remove_dir(dir).map_err(io_error(dir))
}

/// Removes every link and map hubguard pinned under `pin_dir`: its programs detach and its
/// maps go. Returns what was removed.
pub fn uninstall(pin_dir: &Path) -> Result<Vec<String>, KernelError> {
    if !pin_dir.exists() {
        return Ok(Vec::new());
    }
    let mut removed = Vec::new();
    collect_files(pin_dir, &mut removed)?;
    remove_tree(pin_dir)?;
    Ok(removed)
}

fn collect_files(dir: &Path, out: &mut Vec<String>) -> Result<(), KernelError> {
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push(path.display().to_string());
        }
    }
    Ok(())
}

/// The pin directory must be on bpffs. `/sys/fs/bpf` is mounted if nothing is there yet, as
/// systemd would; anywhere else is the operator's choice.
fn ensure_bpffs(pin_dir: &Path) -> Result<(), KernelError> {
    let existing = pin_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    if is_bpffs(existing)? {
        return Ok(());
    }
    let default = Path::new("/sys/fs/bpf");
    if existing == default {
        mount_bpffs(default)?;
        if is_bpffs(default)? {
            return Ok(());
        }
    }
    Err(KernelError::NotBpffs {
        path: existing.display().to_string(),
    })
}

fn is_bpffs(path: &Path) -> Result<bool, KernelError> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        KernelError::NotBpffs {
            path: path.display().to_string(),
        }
    })?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statfs buffer of the right type.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(io_error(path)(io::Error::last_os_error()));
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(stat.f_type as i64 == BPF_FS_MAGIC)
}

fn mount_bpffs(path: &Path) -> Result<(), KernelError> {
    let target = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"bpffs".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io_error(path)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Decodes a `struct denial` from the ring buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub cgroup_id: u64,
    pub class: ClassId,
    pub pid: u32,
    pub destination: IpAddr,
    pub port: u16,
    pub protocol: u8,
    pub reason: Reason,
    pub dry_run: bool,
}

impl Denial {
    /// `None` for a record too short or with a reason this agent does not know.
    pub fn parse(bytes: &[u8]) -> Option<Denial> {
        let raw = RawDenial::read(bytes)?;
        let mut addr = [0u8; 16];
        for (chunk, word) in addr.chunks_mut(4).zip(raw.addr) {
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        let destination = if raw.family == 4 {
            IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
        } else {
            IpAddr::from(addr)
        };
        Some(Denial {
            cgroup_id: raw.cgroup_id,
            class: ClassId::from_raw(raw.class_id),
            pid: raw.pid,
            destination,
            port: raw.port,
            protocol: raw.protocol,
            reason: Reason::from_raw(u32::from(raw.reason))?,
            dry_run: raw.dry_run != 0,
        })
    }
}
