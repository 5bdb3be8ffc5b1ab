//! Container images without a registry: OCI image archives written from local files, loaded
//! into the test node's containerd with `ctr images import`. Pods use them with
//! `imagePullPolicy: Never`.
//!
//! An archive holds `oci-layout`, `index.json` (naming the image), one manifest, one config and
//! one uncompressed layer: enough for containerd, and nothing a registry would add.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use sha2::{Digest, Sha256};

pub const PAUSE: &str = "hubguard.dev/test/pause:1";
pub const PROBE: &str = "hubguard.dev/test/probe:1";
/// The probe image again, under the name of the platform's notebook image, which the presets
/// allow for user pods.
pub const NOTEBOOK: &str = "ghcr.io/tess-platform/tess-notebook:test";
pub const HUBGUARD: &str = "hubguard.dev/test/hubguard:test";
pub const COREDNS: &str = "hubguard.dev/test/coredns:1";
/// The platform's images under the names the recorded Deployments (z2jh 4.4.0's) give them.
pub const HUB: &str = "quay.io/jupyterhub/k8s-hub:4.4.0";
pub const PROXY: &str = "quay.io/jupyterhub/configurable-http-proxy:5.2.0";
/// The gateway's api and controller run the hub's image (its environment has the server).
pub const GATEWAY: &str = "ghcr.io/dask/dask-gateway-server:2026.3.0";
/// `docker.io/traefik:3.3.5` as the kubelet names it.
pub const TRAEFIK: &str = "docker.io/library/traefik:3.3.5";
/// The users' image under the name tess-private's values give notebooks and Dask pods.
pub const TESS_NOTEBOOK: &str = "ghcr.io/tess-platform/tess-notebook:2026.11.0";

/// One file of an image: where it goes, where it comes from.
struct Entry {
    image_path: String,
    source: Source,
}

enum Source {
    File(PathBuf),
    Text(String),
}

pub struct Image {
    name: String,
    /// More names for the same image.
    aliases: Vec<String>,
    entries: Vec<Entry>,
    /// Symbolic links: path in the image, target.
    links: Vec<(String, String)>,
    entrypoint: Vec<String>,
    /// The default arguments (the OCI config's Cmd) when a pod gives none.
    arguments: Vec<String>,
    environment: Vec<String>,
    working_dir: String,
    /// Directories owned by a user: path in the image, uid, gid.
    owned_directories: Vec<(String, u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("ldd {binary}: {detail}")]
    Ldd { binary: String, detail: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let what = what.into();
    move |source| ImageError::Io { what, source }
}

impl Image {
    pub fn new(name: &str, entrypoint: &[&str]) -> Image {
        Image {
            name: name.to_string(),
            aliases: Vec::new(),
            entries: Vec::new(),
            links: Vec::new(),
            entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
            arguments: Vec::new(),
            environment: vec!["PATH=/bin:/usr/bin".to_string()],
            working_dir: "/".to_string(),
            owned_directories: Vec::new(),
        }
    }

    pub fn file(mut self, image_path: &str, source: &Path) -> Image {
        self.entries.push(Entry {
            image_path: image_path.trim_start_matches('/').to_string(),
            source: Source::File(source.to_path_buf()),
        });
        self
    }

    pub fn text(mut self, image_path: &str, contents: &str) -> Image {
        self.entries.push(Entry {
            image_path: image_path.trim_start_matches('/').to_string(),
            source: Source::Text(contents.to_string()),
        });
        self
    }

    pub fn alias(mut self, name: &str) -> Image {
        self.aliases.push(name.to_string());
        self
    }

    /// The directory containers of the image start in.
    /// An empty directory owned by `uid`:`gid` (a user's home, as repo2docker's images have).
    pub fn owned_directory(mut self, image_path: &str, uid: u64, gid: u64) -> Image {
        self.owned_directories
            .push((image_path.trim_start_matches('/').to_string(), uid, gid));
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Image {
        self.working_dir = dir.to_string();
        self
    }

    /// One more variable of the environment every container of the image starts with.
    pub fn env(mut self, name: &str, value: &str) -> Image {
        self.environment
            .retain(|e| !e.starts_with(&format!("{name}=")));
        self.environment.push(format!("{name}={value}"));
        self
    }

    pub fn link(mut self, image_path: &str, target: &str) -> Image {
        self.links.push((
            image_path.trim_start_matches('/').to_string(),
            target.to_string(),
        ));
        self
    }

    /// A dynamically linked binary at `image_path` with the shared libraries it loads, at the
    /// paths the dynamic loader looks for them.
    pub fn binary_with_libraries(
        self,
        image_path: &str,
        source: &Path,
    ) -> Result<Image, ImageError> {
        let libraries = shared_libraries(source)?;
        let mut image = self.file(image_path, source);
        for library in libraries {
            let path = library.display().to_string();
            image = image.file(&path, &library);
        }
        Ok(image)
    }

    fn layer(&self) -> Result<Vec<u8>, ImageError> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(true);
        let mut directories = BTreeSet::new();
        // The same library can come from two binaries' lists: each path once.
        let mut written = std::collections::HashSet::new();
        for entry in self
            .entries
            .iter()
            .filter(|entry| written.insert(entry.image_path.as_str()))
        {
            self.append_parents(&mut builder, &mut directories, Path::new(&entry.image_path))?;
            match &entry.source {
                // Plain entries with the file's bytes: the tar crate writes GNU sparse entries
                // for sparse files, which containerd's unpacker refuses.
                Source::File(source) => {
                    let what = || format!("adding {} to {}", source.display(), self.name);
                    let data = std::fs::read(source).map_err(io(what()))?;
                    let mode = std::fs::metadata(source).map_err(io(what()))?.permissions();
                    let mut header = tar::Header::new_ustar();
                    header.set_size(data.len() as u64);
                    header.set_mode(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o7777);
                    builder
                        .append_data(&mut header, &entry.image_path, data.as_slice())
                        .map_err(io(what()))?
                }
                Source::Text(contents) => {
                    let mut header = tar::Header::new_gnu();
                    header.set_size(contents.len() as u64);
                    header.set_mode(0o644);
                    builder
                        .append_data(&mut header, &entry.image_path, contents.as_bytes())
                        .map_err(io(format!("adding {} to {}", entry.image_path, self.name)))?
                }
            }
        }
        for (path, target) in &self.links {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder
                .append_link(&mut header, path, target)
                .map_err(io(format!("adding the link {path} to {}", self.name)))?;
        }
        for (path, uid, gid) in &self.owned_directories {
            self.append_parents(&mut builder, &mut directories, Path::new(path))?;
            self.append_directory(&mut builder, Path::new(path), 0o755, (*uid, *gid))?;
        }
        // /tmp for programs that want one; a read-only root filesystem gets emptyDirs instead.
        self.append_directory(&mut builder, Path::new("tmp"), 0o1777, (0, 0))?;
        builder
            .into_inner()
            .map_err(io(format!("writing the layer of {}", self.name)))
    }

    /// Appends the directories above `path` that are not written yet, root's.
    fn append_parents(
        &self,
        builder: &mut tar::Builder<Vec<u8>>,
        written: &mut BTreeSet<PathBuf>,
        path: &Path,
    ) -> Result<(), ImageError> {
        let mut missing = Vec::new();
        for dir in path.ancestors().skip(1) {
            if !dir.as_os_str().is_empty() && written.insert(dir.to_path_buf()) {
                missing.push(dir);
            }
        }
        for dir in missing.into_iter().rev() {
            self.append_directory(builder, dir, 0o755, (0, 0))?;
        }
        Ok(())
    }

    fn append_directory(
        &self,
        builder: &mut tar::Builder<Vec<u8>>,
        dir: &Path,
        mode: u32,
        (uid, gid): (u64, u64),
    ) -> Result<(), ImageError> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(mode);
        header.set_uid(uid);
        header.set_gid(gid);
        header.set_size(0);
        builder
            .append_data(&mut header, dir, std::io::empty())
            .map_err(io(format!("adding {} to {}", dir.display(), self.name)))
    }

    /// Writes the OCI image archive to `path`.
    pub fn write_archive(&self, path: &Path) -> Result<(), ImageError> {
        let layer = self.layer()?;
        let layer_digest = digest(&layer);
        let mut runtime = json!({
            "Entrypoint": self.entrypoint,
            "Env": self.environment,
            "WorkingDir": self.working_dir,
        });
        if !self.arguments.is_empty() {
            runtime["Cmd"] = json!(self.arguments);
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": runtime,
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .expect("a JSON value serialises");
        let config_digest = digest(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))
        .expect("a JSON value serialises");
        let manifest_digest = digest(&manifest);
        let manifests: Vec<_> = std::iter::once(&self.name)
            .chain(&self.aliases)
            .map(|name| {
                json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest,
                    "size": manifest.len(),
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rsplit(':').next().unwrap_or("latest"),
                    },
                })
            })
            .collect();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .expect("a JSON value serialises");

        let file =
            std::fs::File::create(path).map_err(io(format!("creating {}", path.display())))?;
        let mut archive = tar::Builder::new(std::io::BufWriter::new(file));
        archive.mode(tar::HeaderMode::Deterministic);
        let blobs = [
            (
                "oci-layout".to_string(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".to_string(), index),
            (blob_path(&manifest_digest), manifest),
            (blob_path(&config_digest), config),
            (blob_path(&layer_digest), layer),
        ];
        for (name, data) in blobs {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            archive
                .append_data(&mut header, &name, data.as_slice())
                .map_err(io(format!("writing {name} into {}", path.display())))?;
        }
        archive
            .into_inner()
            .and_then(|mut w| w.flush())
            .map_err(io(format!("writing {}", path.display())))
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn blob_path(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

/// The shared libraries `binary` loads, the dynamic loader included, from `ldd`.
pub fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>, ImageError> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .map_err(|e| ImageError::Ldd {
            binary: binary.display().to_string(),
            detail: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("not a dynamic executable") || !out.status.success() {
        return Ok(Vec::new());
    }
    // Lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
    // "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            }?;
            path.starts_with('/')
                .then(|| lexically_normal(Path::new(path)))
        })
        .collect())
}

/// `path` without `.` and `..` components (wheels' libraries are found through relative
/// run paths such as `PIL/../pillow.libs`). Links are not resolved: the loader looks a library
/// up by the name it was linked against.
fn lexically_normal(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            std::path::Component::ParentDir => {
                normal.pop();
            }
            std::path::Component::CurDir => {}
            other => normal.push(other),
        }
    }
    normal
}

/// The node's sandbox image: a static program that holds a pod's namespaces.
pub fn pause(tools_bin: &Path) -> Image {
    Image::new(PAUSE, &["/pause"]).file("/pause", &tools_bin.join("pause"))
}

/// What the tests probe with from inside pods: busybox (sh, sleep, nc, wget) and
/// hubguard-netprobe (connects and reports exactly how each one ended).
pub fn probe(netprobe: &Path) -> Result<Image, ImageError> {
    let busybox = Path::new("/bin/busybox");
    let mut image = Image::new(PROBE, &["/bin/sleep", "infinity"])
        .alias(NOTEBOOK)
        .binary_with_libraries("/bin/hubguard-netprobe", netprobe)?
        .file("/bin/busybox", busybox)
        // hubguard-netprobe probes from inside a pod only where this marker is.
        .text("/hubguard-test-node", "");
    for applet in ["sh", "sleep", "nc", "wget", "cat", "ls", "true", "kill"] {
        image = image.link(&format!("/bin/{applet}"), "busybox");
    }
    Ok(image)
}

/// The cluster's DNS: the CoreDNS that `scripts/tools` built (tests/coredns).
pub fn coredns(tools_bin: &Path) -> Result<Image, ImageError> {
    Image::new(COREDNS, &["/coredns"]).binary_with_libraries("/coredns", &tools_bin.join("coredns"))
}

/// The probe image's tools plus a Python environment `scripts/pyenv` made: its interpreter, the
/// standard library, the environment at the same path, and every shared library they load.
/// The test node's notebook and Dask pods run it under the platform's notebook image name.
pub fn probe_with_python(netprobe: &Path, python: &Path, name: &str) -> Result<Image, ImageError> {
    let layout = python_layout(python)?;
    let mut image = probe(netprobe)?;
    image.name = name.to_string();
    image.aliases.clear();
    let mut libraries = BTreeSet::new();
    let mut files = Vec::new();
    for tree in [&layout.stdlib, &layout.environment] {
        walk(tree, &mut |path, metadata| {
            let relative = path.strip_prefix(tree).unwrap_or(path);
            if tree == &layout.stdlib && relative.starts_with("test") {
                return;
            }
            if metadata.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(path) {
                    image.links.push((
                        path.display()
                            .to_string()
                            .trim_start_matches('/')
                            .to_string(),
                        target.display().to_string(),
                    ));
                }
            } else if metadata.is_file() {
                files.push(path.to_path_buf());
            }
        })?;
    }
    let mut binaries = vec![layout.executable.clone()];
    binaries.extend(
        files
            .iter()
            .filter(|f| {
                f.extension().is_some_and(|e| e == "so") || f.to_string_lossy().contains(".so.")
            })
            .cloned(),
    );
    for binary in &binaries {
        libraries.extend(shared_libraries(binary)?);
    }
    // A library inside the environment (a wheel's own) is listed twice; the layer keeps one.
    image = image.file(&layout.executable.display().to_string(), &layout.executable);
    for file in files.iter().chain(&libraries) {
        image = image.file(&file.display().to_string(), file);
    }
    for (link, target) in &layout.interpreter_links {
        image = image.link(&link.display().to_string(), &target.display().to_string());
    }
    image.environment = vec![format!(
        "PATH={}:/bin:/usr/bin",
        layout.environment.join("bin").display()
    )];
    // As repo2docker's images do: the entrypoint runs the pod's arguments (dask-gateway gives
    // only arguments, `dask-scheduler ...`), found on the PATH.
    image.entrypoint = ["/bin/sh", "-c", "exec \"$@\"", "--"]
        .map(String::from)
        .to_vec();
    image.arguments = ["/bin/sleep", "infinity"].map(String::from).to_vec();
    Ok(image)
}

/// The gateway's traefik: the binary `scripts/tools` built, as the image's entrypoint.
pub fn traefik(tools_bin: &Path) -> Result<Image, ImageError> {
    Image::new(TRAEFIK, &["/usr/local/bin/traefik"])
        .binary_with_libraries("/usr/local/bin/traefik", &tools_bin.join("traefik"))
}

/// configurable-http-proxy as z2jh's proxy image runs it: the machine's Node.js (chp 5 needs
/// node 20 or later) and the locked package tree `scripts/npmenv` made, its command on the
/// PATH. The probe's tools ride along (busybox gives the `env` its script's first line runs).
pub fn proxy(netprobe: &Path, node: &Path, packages: &Path) -> Result<Image, ImageError> {
    let mut image = probe(netprobe)?;
    image.name = PROXY.to_string();
    image.aliases.clear();
    image = image
        .binary_with_libraries("/usr/bin/node", node)?
        .link("/usr/bin/env", "/bin/busybox");
    let modules = packages.join("node_modules");
    let mut files = Vec::new();
    let mut links = Vec::new();
    walk(&modules, &mut |path, metadata| {
        let inside = format!(
            "/srv/chp/{}",
            path.strip_prefix(packages).unwrap_or(path).display()
        );
        if metadata.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(path) {
                links.push((inside, target.display().to_string()));
            }
        } else if metadata.is_file() {
            files.push((inside, path.to_path_buf()));
        }
    })?;
    for (inside, source) in files {
        image = image.file(&inside, &source);
    }
    for (inside, target) in links {
        image = image.link(&inside, &target);
    }
    Ok(image
        .link(
            "/usr/local/bin/configurable-http-proxy",
            "/srv/chp/node_modules/configurable-http-proxy/bin/configurable-http-proxy",
        )
        .env("PATH", "/usr/local/bin:/bin:/usr/bin"))
}

/// Where a Python environment's parts are, as its interpreter says.
struct PythonLayout {
    /// The real interpreter binary the environment runs.
    executable: PathBuf,
    /// The links that lead to it (`/usr/bin/python3` → `python3.11`), as on the host.
    interpreter_links: Vec<(PathBuf, PathBuf)>,
    stdlib: PathBuf,
    environment: PathBuf,
}

fn python_layout(python: &Path) -> Result<PythonLayout, ImageError> {
    let out = Command::new(python)
        .args([
            "-c",
            "import os, sys, sysconfig; print(os.path.realpath(sys.executable)); \
             print(sysconfig.get_paths()['stdlib']); print(sys.prefix)",
        ])
        .output()
        .map_err(io(format!("running {}", python.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let [executable, stdlib, environment] = lines[..] else {
        return Err(ImageError::Io {
            what: format!("asking {} where its parts are", python.display()),
            source: std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
        });
    };
    // The environment's bin/python names an interpreter by a path that may be a chain of
    // links; the image keeps the chain.
    let mut interpreter_links = Vec::new();
    let mut at = std::fs::read_link(python.parent().unwrap_or(Path::new("/")).join("python"))
        .map(|t| python.parent().unwrap_or(Path::new("/")).join(t))
        .unwrap_or_default();
    while let Ok(target) = std::fs::read_link(&at) {
        interpreter_links.push((at.clone(), target.clone()));
        at = at.parent().unwrap_or(Path::new("/")).join(target);
    }
    Ok(PythonLayout {
        executable: PathBuf::from(executable),
        interpreter_links,
        stdlib: PathBuf::from(stdlib),
        environment: PathBuf::from(environment),
    })
}

/// Every entry below `dir` (not following links), depth first.
fn walk(dir: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> Result<(), ImageError> {
    let entries = std::fs::read_dir(dir).map_err(io(format!("reading {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(io(format!("reading {}", dir.display())))?;
        let path = entry.path();
        let metadata =
            std::fs::symlink_metadata(&path).map_err(io(format!("reading {}", path.display())))?;
        visit(&path, &metadata);
        if metadata.is_dir() {
            walk(&path, visit)?;
        }
    }
    Ok(())
}

/// hubguard's own image for the test node, from the built binary and its shared libraries.
pub fn hubguard(binary: &Path) -> Result<Image, ImageError> {
    Image::new(HUBGUARD, &["/hubguard"]).binary_with_libraries("/hubguard", binary)
}
