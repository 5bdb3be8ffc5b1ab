//! Attaching through links pinned in bpffs, adopting what an earlier agent left, and removing
//! everything on `--uninstall`.

use std::os::fd::AsFd;

use super::*;

impl Kernel {
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
        // attach flags on links, and aya passes none for Single. The socket-address, the
        // socket-creation and the packet programs are three aya types with the same calls.
        macro_rules! attach_link {
            ($program:expr $(, $attach_type:expr)?) => {{
                let program = $program;
                if program.fd().is_err() {
                    program.load().map_err(wrap)?;
                }
                let link_id = program
                    .attach(cgroup, $($attach_type,)? CgroupAttachMode::Single)
                    .map_err(wrap)?;
                let link = program.take_link(link_id).map_err(wrap)?;
                FdLink::try_from(link).map_err(|e| KernelError::Io {
                    path: pin.display().to_string(),
                    error: io::Error::other(e.to_string()),
                })?
            }};
        }
        if let Ok(sockopt) = <&mut CgroupSockopt>::try_from(&mut *program) {
            if sockopt.fd().is_err() {
                sockopt.load().map_err(wrap)?;
            }
            let program_fd = sockopt.fd().map_err(wrap)?;
            return link_and_pin(program_fd.as_fd(), cgroup.as_fd(), ATTACH_SETSOCKOPT, pin)
                .map_err(io_error(pin));
        }
        let link = if let Ok(sock) = <&mut CgroupSock>::try_from(&mut *program) {
            attach_link!(sock)
        } else if let Ok(packet) = <&mut CgroupSkb>::try_from(&mut *program) {
            attach_link!(packet, CgroupSkbAttachType::Egress)
        } else {
            attach_link!(<&mut CgroupSockAddr>::try_from(program).map_err(wrap)?)
        };
        let pin_error = |e: String| KernelError::Io {
            path: pin.display().to_string(),
            error: io::Error::other(e),
        };
        link.pin(pin).map_err(|e| pin_error(e.to_string()))?;
        Ok(())
    }
}

/// `BPF_CGROUP_SETSOCKOPT`, `BPF_LINK_CREATE` and `BPF_OBJ_PIN` of the kernel's uapi
/// (`linux/bpf.h`).
const ATTACH_SETSOCKOPT: u32 = 22;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_OBJ_PIN: libc::c_long = 6;

/// aya 0.14 makes a socket-option program's link but cannot hand it over to be pinned (it has
/// no conversion to `FdLink` for that type): the link is made and pinned here with the two
/// bpf(2) commands, and closed once pinned (the pin holds it).
fn link_and_pin(
    program: std::os::fd::BorrowedFd<'_>,
    cgroup: std::os::fd::BorrowedFd<'_>,
    attach_type: u32,
    pin: &Path,
) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    /// The `link_create` member of `union bpf_attr`, up to its flags (the rest stays zero).
    #[repr(C)]
    struct LinkCreate {
        prog_fd: u32,
        target_fd: u32,
        attach_type: u32,
        flags: u32,
    }
    /// The `BPF_OBJ_*` member of `union bpf_attr`.
    #[repr(C)]
    struct ObjPin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        path_fd: i32,
        pad: u32,
    }
    let create = LinkCreate {
        prog_fd: program.as_raw_fd() as u32,
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type,
        flags: 0,
    };
    let fd = bpf(BPF_LINK_CREATE, &create)?;
    // SAFETY: a descriptor bpf(2) just returned, owned by nothing else.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let path = std::ffi::CString::new(pin.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("a NUL in the pin path"))?;
    let obj = ObjPin {
        pathname: path.as_ptr() as u64,
        bpf_fd: link.as_raw_fd() as u32,
        file_flags: 0,
        path_fd: 0,
        pad: 0,
    };
    // `path` lives until the call has returned.
    bpf(BPF_OBJ_PIN, &obj).map(|_| ())
}

/// bpf(2) with one command and its attribute struct (the rest of `union bpf_attr` is zero).
fn bpf<T>(command: libc::c_long, attr: &T) -> io::Result<libc::c_long> {
    // SAFETY: bpf(2) reads `size_of::<T>()` bytes of a live, initialised `#[repr(C)]` struct.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *const T,
            std::mem::size_of::<T>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
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
pub(super) fn ensure_bpffs(pin_dir: &Path) -> Result<(), KernelError> {
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
