//! For the node agent's tests: isolated network namespaces with only `lo`, servers and probes
//! inside them (the `hubguard-netprobe` binary), test cgroups, and the agent process.
//!
//! Network safety: addresses live on the namespace's `lo`; the namespace is asserted to have
//! no other link and no default route before anything is sent, here and again by the probe.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, http_get, metrics, TempDir};

/// These tests need root (eBPF, namespaces, cgroups). CI runs as root: they fail, never skip.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the node agent tests need root (eBPF, network namespaces, cgroups); run scripts/test as root"
    );
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e} (scripts/test installs iproute2)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace with only `lo`, carrying `addresses` (CIDRs), asserted isolated.
    pub fn isolated(tag: &str, addresses: &[&str]) -> Netns {
        let name = format!("hg-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        for address in addresses {
            ns.ip(&["addr", "add", address, "dev", "lo"]);
        }
        ns.assert_isolated();
        ns
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    pub fn assert_isolated(&self) {
        let links = self.ip(&["-o", "link", "show"]);
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(str::trim))
            .collect();
        assert_eq!(
            names,
            ["lo"],
            "the test namespace must have only lo: {links}"
        );
        for family in ["-4", "-6"] {
            let default = self.ip(&[family, "route", "show", "default"]);
            assert!(
                default.trim().is_empty(),
                "the test namespace must have no default route ({family}): {default}"
            );
        }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn netprobe() -> std::path::PathBuf {
    super::binary("hubguard-netprobe")
}

/// `hubguard-netprobe repeat` of one probe from `cgroup` inside `ns`, as fast as it goes, for
/// at most `seconds`, in the background.
pub struct Hammer(Child);

impl Hammer {
    pub fn start(ns: &Netns, cgroup: &Path, probe: &str, seconds: u32) -> Hammer {
        ns.assert_isolated();
        let child = Command::new(netprobe())
            .args(["repeat", "--netns", &ns.path(), "--cgroup"])
            .arg(cgroup)
            .args(["--count", "1000000", "--every", "0", "--for"])
            .arg(seconds.to_string())
            .arg(probe)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        Hammer(child)
    }

    /// Waits for the end: outcome → how many times.
    pub fn finish(self) -> BTreeMap<String, u64> {
        let out = self.0.wait_with_output().unwrap();
        assert!(out.status.success(), "repeat failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(outcome, n)| (outcome.to_string(), n.parse().unwrap()))
            .collect()
    }
}

/// Listeners inside a namespace, until dropped.
pub struct Servers {
    child: Child,
    _stdin: ChildStdin,
}

impl Servers {
    pub fn start(ns: &Netns, endpoints: &[&str]) -> Servers {
        let mut child = Command::new(netprobe())
            .arg("serve")
            .args(["--netns", &ns.path()])
            .args(endpoints)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "servers did not start");
        Servers {
            child,
            _stdin: stdin,
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs probes from `cgroup` inside `ns`, as `uid` with no capabilities when given (root
/// otherwise: CAP_NET_RAW): probe → "ok", "EPERM" or an error.
pub fn probe_as(
    ns: &Netns,
    cgroup: &Path,
    uid: Option<u32>,
    probes: &[&str],
) -> BTreeMap<String, String> {
    ns.assert_isolated();
    let mut command = Command::new(netprobe());
    command
        .arg("probe")
        .args(["--netns", &ns.path()])
        .arg("--cgroup")
        .arg(cgroup);
    if let Some(uid) = uid {
        command.args(["--uid", &uid.to_string()]);
    }
    let out = command.args(probes).output().unwrap();
    assert!(
        out.status.success(),
        "probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    outcomes(&String::from_utf8_lossy(&out.stdout))
}

/// hubguard-netprobe's report, "PROBE OUTCOME" per line, as probe → outcome.
pub fn outcomes(report: &str) -> BTreeMap<String, String> {
    report
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(p, r)| (p.to_string(), r.to_string()))
        .collect()
}

/// Asserts each probe's outcome, reporting every mismatch at once.
pub fn assert_probes(ns: &Netns, cgroup: &Path, cases: &[(&str, &str)], context: &str) {
    assert_probes_as(ns, cgroup, None, cases, context)
}

/// As [`assert_probes`], as `uid` when given.
pub fn assert_probes_as(
    ns: &Netns,
    cgroup: &Path,
    uid: Option<u32>,
    cases: &[(&str, &str)],
    context: &str,
) {
    let probes: Vec<&str> = cases.iter().map(|(p, _)| *p).collect();
    let results = probe_as(ns, cgroup, uid, &probes);
    assert_outcomes(cases, &results, context);
}

/// Asserts each probe got the outcome it should, reporting every mismatch at once.
pub fn assert_outcomes(cases: &[(&str, &str)], results: &BTreeMap<String, String>, context: &str) {
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(p, want)| results.get(*p).map(String::as_str) != Some(*want))
        .map(|(p, want)| format!("{p}: want {want}, got {:?}", results.get(*p)))
        .collect();
    assert!(wrong.is_empty(), "{context}:\n{}", wrong.join("\n"));
}

pub fn cgroup2_mount() -> PathBuf {
    hubguard_node_agent::cgroups::find_cgroup2_mount().expect("cgroup v2 mount")
}

/// A cgroup directory tree for one test, removed (deepest first) when dropped.
pub struct TestCgroup(pub PathBuf);

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        let path = cgroup2_mount().join(format!("hubguard-test-{tag}-{}", std::process::id()));
        let _ = remove_cgroup_tree(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestCgroup(path)
    }

    pub fn child(&self, relative: &str) -> PathBuf {
        let path = self.0.join(relative);
        std::fs::create_dir_all(&path).unwrap();
        path
    }
}

fn remove_cgroup_tree(path: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(path)
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = remove_cgroup_tree(&self.0);
    }
}

pub fn pin_dir(tag: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/hubguard-test-{tag}-{}",
        std::process::id()
    ))
}

/// Uninstalls the pins when dropped, so a failing test leaves nothing attached.
pub struct Pins(pub PathBuf);

impl Pins {
    pub fn new(tag: &str) -> Pins {
        let pins = Pins(pin_dir(tag));
        let _ = uninstall(&pins.0);
        pins
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = run_uninstall(&self.0);
    }
}

fn run_uninstall(pin_dir: &Path) -> std::io::Result<std::process::Output> {
    Command::new(super::binary("hubguard"))
        .args(["node-agent", "--uninstall", "--bpffs"])
        .arg(pin_dir)
        .output()
}

pub fn uninstall(pin_dir: &Path) -> String {
    let out = run_uninstall(pin_dir).unwrap();
    assert!(
        out.status.success(),
        "uninstall failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `hubguard node-agent` with a metrics port, killed when dropped (its pins stay: a test that
/// wants them gone uninstalls).
pub struct Agent {
    child: Child,
    pub metrics_addr: SocketAddr,
    pub dir: TempDir,
}

impl Agent {
    pub fn start(args: &[&str]) -> Agent {
        let dir = TempDir::new("node-agent");
        let port = free_port();
        let metrics_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.path("agent.log")).unwrap();
        let child = Command::new(super::binary("hubguard"))
            .arg("node-agent")
            .args(args)
            .args(["--metrics-listen", &metrics_addr.to_string()])
            .args(["--log-format", "json", "--reload-interval", "0.2"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut agent = Agent {
            child,
            metrics_addr,
            dir,
        };
        agent.wait_ready();
        agent
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the node agent exited ({status}); log:\n{}", self.log());
            }
            if http_get(self.metrics_addr, "/readyz").is_ok_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the node agent was not ready in 30s; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("agent.log")).unwrap_or_default()
    }

    pub fn metrics(&self) -> metrics::Samples {
        let (status, body) = http_get(self.metrics_addr, "/metrics").unwrap();
        assert_eq!(status, 200);
        metrics::parse(&body)
    }

    /// Polls the metrics until `check` holds (events arrive asynchronously), at most 10 s.
    pub fn wait_metrics(
        &self,
        what: &str,
        check: impl Fn(&metrics::Samples) -> bool,
    ) -> metrics::Samples {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let samples = self.metrics();
            if check(&samples) {
                return samples;
            }
            assert!(
                Instant::now() < deadline,
                "metrics never showed {what}: {samples:#?}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to clean up, as in a crash or an OOM kill.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
