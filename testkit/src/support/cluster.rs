//! A real one-node cluster for the tests and `scripts/run`: the control plane (etcd,
//! kube-apiserver, kube-scheduler, kube-controller-manager with per-controller credentials),
//! containerd with runc, the CNI bridge, a kubelet, kube-proxy (iptables mode: Services'
//! cluster IPs work) and CoreDNS behind the `kube-dns` Service (Service names resolve), all
//! inside one network namespace with no link to the host.
//!
//! Isolation, in the order it is set up:
//! - the network namespace gets only `lo`, carrying the node's address (where the API server
//!   listens), a fake metadata address and a fake public host; it is asserted to have no
//!   other link and no default route before anything starts. The CNI bridge and the pods' veths
//!   are made inside it later;
//! - a holder process owns it and a private mount namespace, where tmpfs covers the paths
//!   containerd and the kubelet hard-code (/run/containerd, /var/lib/kubelet, /var/lib/cni), a
//!   bpffs of its own covers /sys/fs/bpf, and files holding the values the kubelet expects cover
//!   the host-wide sysctls it would otherwise rewrite (`protectKernelDefaults`);
//! - every component runs as `nsenter -t HOLDER -n -m -- ...` (not `ip netns exec`, which
//!   remounts /sys and hides the cgroup mounts);
//! - pods get a cgroup root of their own in every hierarchy, named after this run.
//!
//! The host reaches the API server through a forwarder: a listener on the host's loopback
//! whose connections are opened from a thread that entered the cluster's namespace. Nothing in
//! the cluster can open a connection towards the host.
//!
//! Dropping the cluster stops everything and removes what it made, on failure too.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::controlplane::{kubectl_with, tool, tools_bin};
use super::images;
use super::node::{outcomes, Netns};

pub const NODE_NAME: &str = "hubguard-node";
pub const NODE_IP: &str = "10.250.0.1";
/// The API server's port on the node's address, where the node's components reach it. Pods
/// use the `kubernetes` Service (10.96.0.1:443), which kube-proxy leads here, as in clusters
/// kubeadm makes: a component that reached the API server through the Service would lose it
/// while the API server restarts (its endpoint goes, kube-proxy rejects the Service) and could
/// not learn that it is back.
pub const API_PORT: u16 = 6443;
/// The `kubernetes` Service's address (the first of the Service range).
pub const API_SERVICE_IP: &str = "10.96.0.1";
/// The `kube-dns` Service's address, which the kubelet gives every pod as its nameserver.
pub const DNS_SERVICE_IP: &str = "10.96.0.10";
/// The Service range (tests/controlplane's --service-cluster-ip-range).
pub const SERVICE_RANGE: &str = "10.96.0.0/16";
pub const POD_SUBNET: &str = "10.244.0.0/24";
pub const METADATA_IP: &str = "169.254.169.254";
/// A stand-in for a host on the public internet (TEST-NET-2), served inside the node namespace.
pub const PUBLIC_IP: &str = "198.51.100.10";
/// The taint the kubelet registers the node with; hubguard's agent removes it once enforcing.
pub const AGENT_NOT_READY_TAINT: &str = "hubguard.dev/agent-not-ready=true:NoSchedule";

/// The endpoints served inside the node's namespace for pods to probe.
pub const FAKE_ENDPOINTS: &[&str] = &[
    "tcp:169.254.169.254:80",
    "tcp:198.51.100.10:443",
    "tcp:198.51.100.10:80",
    "tcp:198.51.100.10:22",
];

/// The host-wide sysctls the kubelet checks with `protectKernelDefaults`, and the values it
/// wants: files with these values cover them inside the cluster's mount namespace only.
const KERNEL_DEFAULTS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// Paths containerd and the kubelet use whatever they are told; tmpfs covers them inside the
/// cluster's mount namespace. They must exist on the host as mount points.
const PRIVATE_TMPFS: &[&str] = &["/run/containerd", "/var/lib/kubelet", "/var/lib/cni"];

pub struct Options {
    /// The state directory: certificates, logs, containerd's root, kubeconfigs.
    pub dir: PathBuf,
    /// hubguard's binary, packed into the `hubguard` image for the chart's pods.
    pub hubguard: Option<PathBuf>,
    /// hubguard-netprobe, packed into the probe image and serving the fake endpoints.
    pub netprobe: PathBuf,
    /// Register the node with hubguard's not-ready taint.
    pub agent_taint: bool,
    /// Enforce NetworkPolicy (kube-router's firewall), as a cluster that has a NetworkPolicy
    /// provider does.
    pub network_policy: bool,
}

/// What the cluster cost, for the harness to print.
#[derive(Debug, Default, Clone)]
pub struct Costs {
    pub images: Duration,
    pub node_ready: Duration,
    pub first_pod_running: Option<Duration>,
}

pub struct Cluster {
    pub dir: PathBuf,
    /// The admin's kubeconfig, reaching the API server from the host through the forwarder.
    pub kubeconfig: PathBuf,
    pub netns: Netns,
    pub cgroup_name: String,
    pub costs: Costs,
    holder: Option<Child>,
    /// Started components, in start order; stopped in reverse.
    components: Vec<(String, Child)>,
    servers: Option<Child>,
    forwarder: Option<Forwarder>,
    /// More forwarders from the host's loopback into the node (`forward`).
    forwards: Vec<Forwarder>,
    created_mount_points: Vec<PathBuf>,
    socket_dir: PathBuf,
    started: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] images::ImageError),
}

fn setup(message: impl Into<String>) -> ClusterError {
    ClusterError::Setup(message.into())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let what = what.into();
    move |source| ClusterError::Io { what, source }
}

fn run(program: &str, args: &[&str]) -> Result<String, ClusterError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(io(format!("running {program}")))?;
    if !out.status.success() {
        return Err(setup(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every mounted cgroup hierarchy (v1 controllers and the unified one).
fn cgroup_mounts() -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 2 && (fields[2] == "cgroup" || fields[2] == "cgroup2"))
                .then(|| PathBuf::from(fields[1]))
        })
        .collect()
}

impl Cluster {
    pub fn up(options: Options) -> Result<Cluster, ClusterError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(setup(
                "a node needs root (namespaces, cgroups, mounts, eBPF); run as root",
            ));
        }
        let started = Instant::now();
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let netns = Netns::isolated(
            "node",
            &[
                &format!("{NODE_IP}/32"),
                &format!("{METADATA_IP}/32"),
                &format!("{PUBLIC_IP}/32"),
            ],
        );
        let cgroup_name = format!("hubguard-node-{}", std::process::id());
        let mut cluster = Cluster {
            kubeconfig: dir.join("admin.kubeconfig"),
            dir,
            netns,
            cgroup_name,
            costs: Costs::default(),
            holder: None,
            components: Vec::new(),
            servers: None,
            forwarder: None,
            forwards: Vec::new(),
            created_mount_points: Vec::new(),
            socket_dir: short_socket_dir(),
            started,
        };
        // From here on a failure drops `cluster`, which removes what was made so far.
        cluster.start_servers(&options.netprobe)?;
        cluster.start_holder()?;
        cluster.make_cgroups()?;
        let images_started = Instant::now();
        let archives = cluster.write_images(&options)?;
        cluster.costs.images = images_started.elapsed();
        cluster.start_control_plane()?;
        cluster.start_containerd()?;
        for archive in &archives {
            cluster.import_image(archive)?;
        }
        cluster.write_cni_config()?;
        cluster.start_kubelet(options.agent_taint)?;
        cluster.start_kube_proxy()?;
        if options.network_policy {
            cluster.start_network_policy()?;
        }
        cluster.start_scheduler_and_controllers()?;
        cluster.start_forwarder()?;
        cluster.wait_node_ready()?;
        // The service-account controller gives every namespace its `default` account; pods
        // cannot be created in `default` before it has.
        cluster.wait_for(
            "kube-controller-manager",
            "no default service account",
            Duration::from_secs(60),
            |cluster| {
                cluster
                    .kubectl_output(&["get", "serviceaccount", "default", "-n", "default"])
                    .map(|out| out.status.success())
                    .unwrap_or(false)
            },
        )?;
        // The cluster's DNS is a pod like any other: it runs once the node takes pods (after
        // hubguard's agent, where the node is tainted until then); wait_dns_ready waits for it.
        cluster.kubectl_stdin(&["apply", "-f", "-"], Some(&cluster_dns_manifests()));
        cluster.costs.node_ready = cluster.started.elapsed();
        Ok(cluster)
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    fn controlplane_dir(&self) -> PathBuf {
        self.path("controlplane")
    }

    fn holder_pid(&self) -> u32 {
        self.holder.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The fake metadata server and public host, listening before the node namespace has any
    /// link but `lo` (the probe tool refuses to serve in a namespace with other links).
    fn start_servers(&mut self, netprobe: &Path) -> Result<(), ClusterError> {
        self.netns.assert_isolated();
        let mut child = Command::new(netprobe)
            .arg("serve")
            .args(["--netns", &self.netns.path()])
            .args(FAKE_ENDPOINTS)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(io(format!("starting {}", netprobe.display())))?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
            &mut line,
        )
        .map_err(io("reading the fake servers' readiness"))?;
        self.servers = Some(child);
        if line.trim() != "ready" {
            return Err(setup(format!("the fake servers did not start: {line}")));
        }
        Ok(())
    }

    fn start_holder(&mut self) -> Result<(), ClusterError> {
        for point in PRIVATE_TMPFS {
            let point = Path::new(point);
            if !point.exists() {
                std::fs::create_dir_all(point)
                    .map_err(io(format!("creating the mount point {}", point.display())))?;
                self.created_mount_points.push(point.to_path_buf());
            }
        }
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net={}", self.netns.path()))
            .args(["--", "unshare", "--mount", "--propagation", "private", "--"])
            .args(["sleep", "infinity"])
            .stdin(Stdio::null());
        die_with_parent(&mut command);
        let holder = command
            .spawn()
            .map_err(io("starting the namespace holder"))?;
        let pid = holder.id();
        self.holder = Some(holder);
        let own_mnt = namespace_inode("self", "mnt");
        let deadline = Instant::now() + Duration::from_secs(10);
        while namespace_inode(&pid.to_string(), "mnt") == own_mnt
            || std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .unwrap_or_default()
                .trim()
                != "sleep"
        {
            if Instant::now() > deadline {
                return Err(setup("the namespace holder did not start"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let sysctl_dir = self.path("sysctl");
        std::fs::create_dir_all(&sysctl_dir).map_err(io("creating the sysctl files' directory"))?;
        let mut script = String::from("set -e\n");
        for point in PRIVATE_TMPFS {
            script += &format!("mount -t tmpfs -o mode=0755 tmpfs {point}\n");
        }
        // Shared (within this namespace only): the agent's pod mounts it with HostToContainer
        // propagation, which needs a shared or slave source.
        // Whatever the host has there (another test's bpffs) is detached in this namespace
        // only, so that the pods see this one alone.
        script += "while mountpoint -q /sys/fs/bpf; do umount -l /sys/fs/bpf; done\n";
        script += "mount -t bpf bpf /sys/fs/bpf\nmount --make-shared /sys/fs/bpf\n";
        for (name, value) in KERNEL_DEFAULTS {
            let file = sysctl_dir.join(name.replace('/', "."));
            std::fs::write(&file, format!("{value}\n")).map_err(io("writing a sysctl file"))?;
            script += &format!("mount --bind {} /proc/sys/{name}\n", file.display());
        }
        let out = self
            .in_node(&["sh", "-c", &script])
            .output()
            .map_err(io("nsenter"))?;
        if !out.status.success() {
            return Err(setup(format!(
                "preparing the node's mount namespace: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// A command run inside the node's network and mount namespaces.
    pub fn in_node(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["-t", &self.holder_pid().to_string(), "-n", "-m", "--"])
            .args(argv);
        command
    }

    fn make_cgroups(&mut self) -> Result<(), ClusterError> {
        for mount in cgroup_mounts() {
            let dir = mount.join(&self.cgroup_name);
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        }
        Ok(())
    }

    /// The cgroup v2 directory of kubelet's pods (what hubguard's agent attaches to).
    pub fn pods_cgroup_v2(&self) -> PathBuf {
        hubguard_node_agent::cgroups::find_cgroup2_mount()
            .expect("cgroup v2 mount")
            .join(&self.cgroup_name)
            .join("kubepods")
    }

    fn write_images(&self, options: &Options) -> Result<Vec<PathBuf>, ClusterError> {
        let dir = self.path("images");
        std::fs::create_dir_all(&dir).map_err(io("creating the images directory"))?;
        let mut list = vec![
            images::pause(&tools_bin()),
            images::probe(&options.netprobe)?,
            images::coredns(&tools_bin())?,
        ];
        if let Some(hubguard) = &options.hubguard {
            list.push(images::hubguard(hubguard)?);
        }
        let mut archives = Vec::new();
        for image in list {
            let file = dir.join(format!("{}.tar", image.name().replace(['/', ':'], "_")));
            image.write_archive(&file)?;
            archives.push(file);
        }
        Ok(archives)
    }

    fn spawn_component(
        &mut self,
        name: &str,
        argv: &[&str],
        env: &[(&str, String)],
    ) -> Result<(), ClusterError> {
        // Appended to: a restarted component keeps its earlier log.
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.path(&format!("{name}.log")))
            .map_err(io(format!("creating {name}.log")))?;
        let mut command = self.in_node(argv);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("log file"))?)
            .stderr(log);
        for (key, value) in env {
            command.env(key, value);
        }
        die_with_parent(&mut command);
        let child = command.spawn().map_err(io(format!("starting {name}")))?;
        self.components.push((name.to_string(), child));
        Ok(())
    }

    /// Fails with the component's log when it exited.
    fn check_running(&mut self, name: &str) -> Result<(), ClusterError> {
        let exited = self
            .components
            .iter_mut()
            .find(|(n, _)| n == name)
            .and_then(|(_, child)| child.try_wait().ok().flatten());
        match exited {
            Some(status) => Err(setup(format!(
                "{name} exited ({status}):\n{}",
                self.log_tail(name, 40)
            ))),
            None => Ok(()),
        }
    }

    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn wait_for(
        &mut self,
        name: &str,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            self.check_running(name)?;
            if Instant::now() > deadline {
                return Err(setup(format!(
                    "{what} after {timeout:?}; {name}'s log ends:\n{}",
                    self.log_tail(name, 40)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn start_control_plane(&mut self) -> Result<(), ClusterError> {
        let dir = self.controlplane_dir();
        let controlplane = tool("controlplane");
        let apiserver_args = [
            // Webhooks and aggregated APIs are called at their endpoints, as before kube-proxy
            // has written its rules.
            "--enable-aggregator-routing=true",
            "--endpoint-reconciler-type=lease",
        ]
        .join(" ");
        self.spawn_component(
            "controlplane",
            &[
                controlplane.to_str().unwrap(),
                "serve",
                "--dir",
                dir.to_str().unwrap(),
                "--address",
                NODE_IP,
                "--port",
                &API_PORT.to_string(),
                "--node",
                NODE_NAME,
                "--apiserver-args",
                &apiserver_args,
            ],
            &[],
        )?;
        let ready = dir.join("ready");
        self.wait_for(
            "controlplane",
            "the API server is not ready",
            Duration::from_secs(120),
            |_| ready.exists(),
        )
    }

    /// Stops the API server (and its etcd) and starts it again on the same state, as when a
    /// control-plane node reboots: certificates, credentials and data are kept, and everything
    /// else keeps running. Returns how long the API was away.
    pub fn restart_control_plane(&mut self) -> Result<Duration, ClusterError> {
        let stopped = Instant::now();
        self.stop_component("controlplane");
        self.components.retain(|(name, _)| name != "controlplane");
        self.start_control_plane()?;
        Ok(stopped.elapsed())
    }

    /// Unix socket paths are limited to about 100 bytes and the state directory may be deep:
    /// the sockets live in a short directory of their own.
    fn containerd_socket(&self) -> PathBuf {
        self.socket_dir.join("containerd.sock")
    }

    fn start_containerd(&mut self) -> Result<(), ClusterError> {
        let root = self.path("containerd");
        std::fs::create_dir_all(&root).map_err(io("creating containerd's directory"))?;
        std::fs::create_dir_all(&self.socket_dir).map_err(io("creating the sockets' directory"))?;
        let bin = tools_bin();
        let config = format!(
            r#"version = 3
root = "{root}/root"
state = "{root}/state"

[grpc]
  address = "{socket}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  # Pods' network namespaces are mounted under the state directory, not the host's /run/netns.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "{bin}/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{bin}/cni"]
    conf_dir = "{root}/net.d"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"

[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
"#,
            root = root.display(),
            socket = self.containerd_socket().display(),
            bin = bin.display(),
            pause = images::PAUSE,
        );
        std::fs::write(root.join("config.toml"), config)
            .map_err(io("writing containerd's config"))?;
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            bin.display()
        );
        let containerd = tool("containerd");
        let config_path = root.join("config.toml");
        self.spawn_component(
            "containerd",
            &[
                containerd.to_str().unwrap(),
                "--config",
                config_path.to_str().unwrap(),
            ],
            &[("PATH", path)],
        )?;
        let socket = self.containerd_socket();
        self.wait_for(
            "containerd",
            "containerd is not serving",
            Duration::from_secs(30),
            |_| socket.exists(),
        )
    }

    /// Writes `image` as an archive and loads it into the node's containerd: an image only
    /// some tests need, on a node that is already up.
    pub fn load_image(&self, image: &images::Image) -> Result<(), ClusterError> {
        let dir = self.path("images");
        std::fs::create_dir_all(&dir).map_err(io("creating the images directory"))?;
        let file = dir.join(format!("{}.tar", image.name().replace(['/', ':'], "_")));
        image.write_archive(&file)?;
        self.import_image(&file)?;
        // The archive is a copy of what containerd now holds.
        let _ = std::fs::remove_file(&file);
        Ok(())
    }

    fn import_image(&self, archive: &Path) -> Result<(), ClusterError> {
        let ctr = tool("ctr");
        let socket = self.containerd_socket();
        run(
            ctr.to_str().unwrap(),
            &[
                "--address",
                socket.to_str().unwrap(),
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack=false",
                archive.to_str().unwrap(),
            ],
        )
        .map(|_| ())
    }

    fn write_cni_config(&self) -> Result<(), ClusterError> {
        let dir = self.path("containerd/net.d");
        std::fs::create_dir_all(&dir).map_err(io("creating the CNI config directory"))?;
        let config = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "hubguard-test",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                // Nothing leaves the node's namespace, so there is nothing to masquerade for.
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": self.path("cni-ipam"),
                },
            }],
        });
        std::fs::write(
            dir.join("10-bridge.conflist"),
            serde_json::to_vec_pretty(&config).unwrap(),
        )
        .map_err(io("writing the CNI config"))
    }

    fn start_kubelet(&mut self, agent_taint: bool) -> Result<(), ClusterError> {
        let dir = self.path("kubelet");
        std::fs::create_dir_all(&dir).map_err(io("creating the kubelet's directory"))?;
        std::fs::write(dir.join("resolv.conf"), "options ndots:1\n").map_err(io("resolv.conf"))?;
        let ca = self.controlplane_dir().join("ca.crt");
        let config = format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {NODE_IP}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
containerRuntimeEndpoint: unix://{socket}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup}
failCgroupV1: false
failSwapOn: false
# Root here lacks CAP_SYS_RESOURCE.
oomScoreAdj: 0
# Check the host-wide kernel settings instead of rewriting them (files with the values it wants
# cover them in the node's mount namespace).
protectKernelDefaults: true
resolvConf: {resolv}
podLogsDir: {logs}
clusterDomain: cluster.local
clusterDNS: [{DNS_SERVICE_IP}]
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
nodeStatusUpdateFrequency: 2s
syncFrequency: 10s
"#,
            ca = ca.display(),
            socket = self.containerd_socket().display(),
            cgroup = self.cgroup_name,
            resolv = dir.join("resolv.conf").display(),
            logs = dir.join("pod-logs").display(),
        );
        std::fs::write(dir.join("config.yaml"), config)
            .map_err(io("writing the kubelet's config"))?;
        let controlplane = tool("controlplane");
        let kubeconfig = self
            .controlplane_dir()
            .join(format!("{NODE_NAME}.kubeconfig"));
        let taints = format!("--register-with-taints={AGENT_NOT_READY_TAINT}");
        let mut argv = vec![
            controlplane.to_str().unwrap().to_string(),
            "kubelet".into(),
            format!("--config={}", dir.join("config.yaml").display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--node-ip={NODE_IP}"),
            format!("--hostname-override={NODE_NAME}"),
            "--root-dir=/var/lib/kubelet".into(),
            "--v=1".into(),
        ];
        if agent_taint {
            argv.push(taints);
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let path = format!(
            "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            tools_bin().display()
        );
        self.spawn_component("kubelet", &argv, &[("PATH", path)])
    }

    /// kube-proxy in iptables mode, in the node's namespace: Services' cluster IPs are DNATed
    /// to their endpoints there. The bridge's netfilter hook is on in every new namespace, so
    /// replies between pods on the bridge are un-NATed without masquerading everything.
    /// Conntrack sizes and timeouts are left as they are: some are host-wide.
    fn start_kube_proxy(&mut self) -> Result<(), ClusterError> {
        let dir = self.path("kube-proxy");
        std::fs::create_dir_all(&dir).map_err(io("creating kube-proxy's directory"))?;
        let kubeconfig = self.controlplane_dir().join("kube-proxy.kubeconfig");
        let config = format!(
            r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {{kubeconfig: {kubeconfig}}}
hostnameOverride: {NODE_NAME}
mode: iptables
clusterCIDR: {POD_SUBNET}
detectLocalMode: ClusterCIDR
# NodePorts only on the node's address: localhost NodePorts would need route_localnet.
nodePortAddresses: ["{NODE_IP}/32"]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Root here lacks CAP_SYS_RESOURCE.
oomScoreAdj: 0
conntrack: {{maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}}
"#,
            kubeconfig = kubeconfig.display(),
        );
        std::fs::write(dir.join("config.yaml"), config)
            .map_err(io("writing kube-proxy's config"))?;
        let controlplane = tool("controlplane");
        let config_flag = format!("--config={}", dir.join("config.yaml").display());
        self.spawn_component(
            "kube-proxy",
            &[controlplane.to_str().unwrap(), "kube-proxy", &config_flag],
            &[],
        )?;
        self.wait_for(
            "kube-proxy",
            "kube-proxy wrote no Service rules",
            Duration::from_secs(60),
            |cluster| {
                cluster
                    .in_node(&["iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES"])
                    .output()
                    .map(|out| {
                        String::from_utf8_lossy(&out.stdout)
                            .contains(&format!("{API_SERVICE_IP}/32"))
                    })
                    .unwrap_or(false)
            },
        )
    }

    /// kube-router 2's firewall alone (no routing, no service proxy, no CNI: the bridge and
    /// kube-proxy do those), enforcing NetworkPolicy in the node's namespace with iptables and
    /// ipsets; bridged pod-to-pod traffic passes it through the bridge's netfilter hook. It acts
    /// with the admin's credentials (a test cluster's component, not a pod).
    fn start_network_policy(&mut self) -> Result<(), ClusterError> {
        let kube_router = tool("kube-router");
        let kubeconfig = format!(
            "--kubeconfig={}",
            self.controlplane_dir().join("admin.kubeconfig").display()
        );
        self.spawn_component(
            "kube-router",
            &[
                kube_router.to_str().unwrap(),
                &kubeconfig,
                "--run-firewall=true",
                "--run-router=false",
                "--run-service-proxy=false",
                "--enable-cni=false",
                "--enable-ipv6=false",
                &format!("--hostname-override={NODE_NAME}"),
                "--health-port=0",
                "--v=1",
            ],
            &[(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            )],
        )?;
        self.wait_for(
            "kube-router",
            "kube-router wrote no firewall chains",
            Duration::from_secs(60),
            |cluster| {
                cluster
                    .in_node(&["iptables", "-w", "-S", "FORWARD"])
                    .output()
                    .map(|out| String::from_utf8_lossy(&out.stdout).contains("KUBE-ROUTER-FORWARD"))
                    .unwrap_or(false)
            },
        )
    }

    /// Packets NetworkPolicy has dropped so far: the counters of the firewall's drop and
    /// reject rules (0 without an enforcer).
    pub fn network_policy_drops(&self) -> u64 {
        let out = self
            .in_node(&["iptables-save", "-c", "-t", "filter"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        out.lines()
            .filter(|line| {
                line.contains("-A KUBE-")
                    && (line.contains("-j REJECT") || line.contains("-j DROP"))
            })
            .filter_map(|line| {
                let counters = line.strip_prefix('[')?.split(']').next()?;
                counters.split(':').next()?.parse::<u64>().ok()
            })
            .sum()
    }

    /// Waits until the cluster's DNS answers (its pod is ready and the kube-dns Service has it).
    /// Then the node's own processes reach Services too: a real node sends them its default
    /// route's way and kube-proxy's NAT leads them to a pod; this namespace has no default
    /// route, so the Service range gets one over the pod bridge (which exists once a pod has
    /// started).
    pub fn wait_dns_ready(&mut self, timeout: Duration) -> Result<(), ClusterError> {
        self.wait_for(
            "kubelet",
            "the cluster's DNS (kube-system/coredns) is not ready",
            timeout,
            |cluster| {
                cluster
                    .kubectl_output(&[
                        "get",
                        "endpointslices",
                        "-n",
                        "kube-system",
                        "-l",
                        "kubernetes.io/service-name=kube-dns",
                        "-o",
                        "jsonpath={.items[*].endpoints[*].conditions.ready}",
                    ])
                    .map(|out| String::from_utf8_lossy(&out.stdout).contains("true"))
                    .unwrap_or(false)
            },
        )?;
        let out = self
            .in_node(&["ip", "route", "replace", SERVICE_RANGE, "dev", "cni0"])
            .output()
            .map_err(io("ip route"))?;
        if !out.status.success() {
            return Err(setup(format!(
                "routing the Service range over the pod bridge: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    fn start_scheduler_and_controllers(&mut self) -> Result<(), ClusterError> {
        let controlplane = tool("controlplane");
        let cp = self.controlplane_dir();
        let file = |name: &str| cp.join(name).display().to_string();
        let scheduler_kubeconfig = file("scheduler.kubeconfig");
        // z2jh's user-scheduler is a kube-scheduler under its own profile name, and KubeSpawner
        // names it in every user pod: here one scheduler serves both names (a stand-in for
        // z2jh's user-scheduler Deployment, whose image the node cannot pull).
        let scheduler_config = cp.join("scheduler.yaml");
        std::fs::write(
            &scheduler_config,
            format!(
                "apiVersion: kubescheduler.config.k8s.io/v1\n\
                 kind: KubeSchedulerConfiguration\n\
                 clientConnection: {{kubeconfig: {scheduler_kubeconfig}}}\n\
                 leaderElection: {{leaderElect: false}}\n\
                 profiles:\n  - schedulerName: default-scheduler\n  - schedulerName: user-scheduler\n"
            ),
        )
        .map_err(io("writing the scheduler's configuration"))?;
        self.spawn_component(
            "kube-scheduler",
            &[
                controlplane.to_str().unwrap(),
                "kube-scheduler",
                &format!("--config={}", scheduler_config.display()),
                &format!("--authentication-kubeconfig={scheduler_kubeconfig}"),
                &format!("--authorization-kubeconfig={scheduler_kubeconfig}"),
                "--bind-address=127.0.0.1",
            ],
            &[],
        )?;
        let manager_kubeconfig = file("controller-manager.kubeconfig");
        self.spawn_component(
            "kube-controller-manager",
            &[
                controlplane.to_str().unwrap(),
                "kube-controller-manager",
                &format!("--kubeconfig={manager_kubeconfig}"),
                &format!("--authentication-kubeconfig={manager_kubeconfig}"),
                &format!("--authorization-kubeconfig={manager_kubeconfig}"),
                // Each controller acts as its own service account, as kubeadm sets it up.
                "--use-service-account-credentials=true",
                &format!("--root-ca-file={}", file("ca.crt")),
                &format!("--service-account-private-key-file={}", file("sa.key")),
                &format!("--cluster-signing-cert-file={}", file("ca.crt")),
                &format!("--cluster-signing-key-file={}", file("ca.key")),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--allocate-node-cidrs=false",
                "--controllers=*,-nodeipam",
            ],
            &[],
        )
    }

    /// A port on the host's loopback that leads to `target` inside the node (a Service's
    /// cluster IP, say): what a browser on this machine opens. Closed with the cluster.
    pub fn forward(&mut self, target: SocketAddr) -> Result<u16, ClusterError> {
        let forwarder = Forwarder::start(&self.netns.path(), target)?;
        let port = forwarder.port;
        self.forwards.push(forwarder);
        Ok(port)
    }

    fn start_forwarder(&mut self) -> Result<(), ClusterError> {
        let target: SocketAddr = format!("{NODE_IP}:{API_PORT}").parse().expect("an address");
        let forwarder = Forwarder::start(&self.netns.path(), target)?;
        let admin = std::fs::read_to_string(self.controlplane_dir().join("admin.kubeconfig"))
            .map_err(io("reading the admin kubeconfig"))?;
        let host_side = admin.replace(
            &format!("https://{NODE_IP}:{API_PORT}"),
            &format!("https://127.0.0.1:{}", forwarder.port),
        );
        std::fs::write(&self.kubeconfig, host_side).map_err(io("writing the admin kubeconfig"))?;
        self.forwarder = Some(forwarder);
        Ok(())
    }

    fn wait_node_ready(&mut self) -> Result<(), ClusterError> {
        self.wait_for(
            "kubelet",
            "the node is not Ready",
            Duration::from_secs(120),
            |cluster| {
                cluster
                    .kubectl_output(&[
                        "get",
                        "node",
                        NODE_NAME,
                        "-o",
                        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                    ])
                    .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "True")
                    .unwrap_or(false)
            },
        )
    }

    pub fn kubectl_output(&self, args: &[&str]) -> std::io::Result<Output> {
        Command::new(tool("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
    }

    /// Runs kubectl as the admin; panics with its error output when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_as(&self.kubeconfig, args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(kubeconfig, args, stdin)
    }

    /// A kubeconfig for a service account (a bound token), reaching the API server from the host.
    pub fn kubeconfig_for(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl(&["create", "token", name, "-n", namespace, "--duration", "2h"]);
        let admin = std::fs::read_to_string(&self.kubeconfig).unwrap();
        let server = admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("server in the admin kubeconfig")
            .to_string();
        let ca = admin
            .lines()
            .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
            .expect("CA in the admin kubeconfig")
            .to_string();
        let path = self.dir.join(format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: local, cluster: {{server: {server}, certificate-authority-data: {ca}}}}}]\nusers: [{{name: sa, user: {{token: {}}}}}]\ncontexts: [{{name: local, context: {{cluster: local, user: sa, namespace: {namespace}}}}}]\ncurrent-context: local\n",
                token.trim()
            ),
        )
        .unwrap();
        path
    }

    /// Waits until the pod is Running with every container ready.
    pub fn wait_pod_running(
        &mut self,
        namespace: &str,
        pod: &str,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let started = Instant::now();
        self.wait_for(
            "kubelet",
            &format!("pod {namespace}/{pod} is not running"),
            timeout,
            |cluster| {
                cluster
                    .kubectl_output(&[
                        "get",
                        "pod",
                        pod,
                        "-n",
                        namespace,
                        "-o",
                        "jsonpath={.status.phase} {.status.containerStatuses[*].ready}",
                    ])
                    .map(|out| {
                        let text = String::from_utf8_lossy(&out.stdout).to_string();
                        text.starts_with("Running") && !text.contains("false")
                    })
                    .unwrap_or(false)
            },
        )?;
        if self.costs.first_pod_running.is_none() {
            self.costs.first_pod_running = Some(started.elapsed());
        }
        Ok(())
    }

    /// Probes from inside a running pod of the probe image: probe → "ok", "EPERM" or an error.
    pub fn probe_from(
        &self,
        namespace: &str,
        pod: &str,
        probes: &[&str],
    ) -> BTreeMap<String, String> {
        let mut args = vec![
            "exec",
            "-n",
            namespace,
            pod,
            "--",
            "/bin/hubguard-netprobe",
            "probe",
            "--netns",
            "pod",
        ];
        args.extend_from_slice(probes);
        let out = self.kubectl_output(&args).expect("kubectl");
        assert!(
            out.status.success(),
            "probing from {namespace}/{pod} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outcomes(&String::from_utf8_lossy(&out.stdout))
    }

    /// Resident memory of the whole cluster: every process in the node's network namespace
    /// (components, shims) or in its pods' cgroups.
    pub fn rss_bytes(&self) -> u64 {
        let node_net = namespace_inode(&self.holder_pid().to_string(), "net");
        let marker = format!("/{}/", self.cgroup_name);
        let mut total = 0;
        for pid in all_pids() {
            let in_node = namespace_inode(&pid.to_string(), "net") == node_net;
            let in_pods = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map(|c| c.contains(&marker))
                .unwrap_or(false);
            if in_node || in_pods {
                total += vm_rss(pid);
            }
        }
        total
    }

    /// Resident memory of the pods' processes whose command line holds every one of
    /// `arguments` (e.g. `["hubguard", "node-agent"]`).
    pub fn pod_process_rss_bytes(&self, arguments: &[&str]) -> u64 {
        self.pod_pids()
            .into_iter()
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
                arguments.iter().all(|a| {
                    words
                        .iter()
                        .any(|w| *w == a.as_bytes() || w.ends_with(format!("/{a}").as_bytes()))
                })
            })
            .map(vm_rss)
            .sum()
    }

    pub fn cost_report(&self) -> String {
        format!(
            "test node cost: images built in {:.1}s, node Ready {:.1}s after start, first pod Running {}, RSS {:.0} MiB",
            self.costs.images.as_secs_f64(),
            self.costs.node_ready.as_secs_f64(),
            self.costs
                .first_pod_running
                .map(|d| format!("{:.1}s after its create", d.as_secs_f64()))
                .unwrap_or_else(|| "(none yet)".into()),
            self.rss_bytes() as f64 / 1048576.0
        )
    }

    fn stop_component(&mut self, name: &str) {
        if let Some((_, child)) = self.components.iter_mut().find(|(n, _)| n == name) {
            stop_child(child, Duration::from_secs(5));
        }
    }

    /// Kills every process in the pods' cgroups, in every hierarchy, until none is left.
    fn kill_pods(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let pids = self.pod_pids();
            if pids.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in pids {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pod_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for mount in cgroup_mounts() {
            collect_procs(&mount.join(&self.cgroup_name), &mut pids);
        }
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Kills what is left in the node's network namespace (containerd's shims), the holder
    /// excepted.
    fn kill_namespace_processes(&self) {
        let node_net = namespace_inode(&self.holder_pid().to_string(), "net");
        if node_net == 0 {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<u32> = all_pids()
                .into_iter()
                .filter(|&pid| {
                    pid != self.holder_pid() && namespace_inode(&pid.to_string(), "net") == node_net
                })
                .filter(|&pid| !is_zombie(pid))
                .collect();
            if left.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in left {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn remove_cgroups(&self) {
        for mount in cgroup_mounts() {
            remove_tree(&mount.join(&self.cgroup_name));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for forwarder in self.forwards.drain(..) {
            forwarder.stop();
        }
        if let Some(forwarder) = self.forwarder.take() {
            forwarder.stop();
        }
        for name in [
            "kube-controller-manager",
            "kube-scheduler",
            "kube-router",
            "kube-proxy",
            "kubelet",
        ] {
            self.stop_component(name);
        }
        self.kill_pods();
        self.stop_component("containerd");
        self.kill_namespace_processes();
        self.stop_component("controlplane");
        for (_, child) in self.components.iter_mut() {
            stop_child(child, Duration::from_secs(1));
        }
        self.remove_cgroups();
        if let Some(mut servers) = self.servers.take() {
            let _ = servers.kill();
            let _ = servers.wait();
        }
        // Ending the holder ends the private mount namespace: the tmpfs mounts, the bpffs and
        // its pins, the containers' rootfs mounts and the pods' network namespaces go with it.
        if let Some(mut holder) = self.holder.take() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
        for point in self.created_mount_points.iter().rev() {
            let _ = std::fs::remove_dir(point);
        }
        let _ = std::fs::remove_dir_all(&self.socket_dir);
        // The network namespace is deleted when `netns` drops, after this.
    }
}

fn cluster_dns_manifests() -> String {
    include_str!("cluster-dns.yaml")
        .replace("IMAGE", images::COREDNS)
        .replace("DNS_SERVICE_IP", DNS_SERVICE_IP)
}

fn short_socket_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    PathBuf::from(format!(
        "/tmp/hgn-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ))
}

fn stop_child(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn collect_procs(dir: &Path, pids: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_procs(&entry.path(), pids);
            }
        }
    }
}

/// Removes a cgroup directory tree, deepest first.
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

fn namespace_inode(pid: &str, kind: &str) -> u64 {
    std::fs::metadata(format!("/proc/{pid}/ns/{kind}"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with('Z'))
                .unwrap_or(true)
        })
        .unwrap_or(true)
}

fn vm_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| {
                    v.split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                })
        })
        .map(|kib| kib * 1024)
        .unwrap_or(0)
}

/// Makes the child die with this process (SIGKILL), so nothing outlives a killed harness.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no Rust state.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Forwards connections made to a listener on the host's loopback to one address inside the
/// cluster's network namespace. Each upstream connection is opened by a thread that entered that
/// namespace (a socket belongs to the namespace it was created in), so the cluster never gets
/// a way out.
struct Forwarder {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    fn start(netns_path: &str, target: SocketAddr) -> Result<Forwarder, ClusterError> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(io("binding the forwarder"))?;
        let port = listener
            .local_addr()
            .map_err(io("the forwarder's port"))?
            .port();
        let netns = File::open(netns_path).map_err(io(format!("opening {netns_path}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::Builder::new()
            .name("cluster-forwarder".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(netns) = netns.try_clone() else {
                        continue;
                    };
                    let _ = std::thread::Builder::new()
                        .name("cluster-forward".into())
                        .spawn(move || {
                            // SAFETY: setns on this thread only, with a namespace fd we own.
                            if unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                                return;
                            }
                            if let Ok(upstream) =
                                TcpStream::connect_timeout(&target, Duration::from_secs(5))
                            {
                                splice(client, upstream);
                            }
                        });
                }
            })
            .map_err(io("starting the forwarder"))?;
        Ok(Forwarder { port, stop })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn splice(client: TcpStream, upstream: TcpStream) {
    let (Ok(client_read), Ok(upstream_write)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let mut from = client_read;
        let mut to = upstream_write;
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
    let mut from = upstream;
    let mut to = client;
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
    let _ = up.join();
}
