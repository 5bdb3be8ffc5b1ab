//! The local control plane: the upstream kube-apiserver with embedded etcd, built by
//! `scripts/tools` from the Go modules (tests/controlplane), started on loopback for a test
//! and torn down when dropped, even when the test fails.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// Where `scripts/tools` put controlplane, kubectl and helm.
pub fn tools_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("HUBGUARD_TOOLS_BIN") {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("HUBGUARD_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("hubguard")))
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hubguard"));
    cache.join("bin")
}

pub fn tool(name: &str) -> PathBuf {
    let path = tools_bin().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the tools with scripts/tools (scripts/test does this first)",
        path.display()
    );
    path
}

/// Makes the child die with the test process, so a killed test leaves no server behind.
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no Rust state.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

pub struct ControlPlane {
    child: Child,
    pub dir: TempDir,
    pub server: String,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        let dir = TempDir::new("controlplane");
        let log = std::fs::File::create(dir.path("controlplane.log")).unwrap();
        let mut command = Command::new(tool("controlplane"));
        command
            .args(["serve", "--dir"])
            .arg(&dir.0)
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut command);
        let child = command.spawn().unwrap();
        let mut plane = ControlPlane {
            child,
            kubeconfig: dir.path("admin.kubeconfig"),
            server: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Ok(server) = std::fs::read_to_string(plane.dir.path("ready")) {
                plane.server = server.trim().to_string();
                break;
            }
            if let Ok(Some(status)) = plane.child.try_wait() {
                panic!("the control plane exited ({status}):\n{}", plane.log());
            }
            assert!(
                Instant::now() < deadline,
                "control plane not ready in 90s:\n{}",
                plane.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        plane
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("controlplane.log")).unwrap_or_default()
    }

    /// kubectl with the given kubeconfig.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        kubectl_with(kubeconfig, args, stdin)
    }

    /// kubectl as the cluster admin; panics with kubectl's stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_as(&self.kubeconfig, args, stdin);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kubeconfig that authenticates as service account NAMESPACE/NAME (a bound token).
    pub fn kubeconfig_for(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self
            .kubectl(&["create", "token", name, "-n", namespace, "--duration", "1h"])
            .trim()
            .to_string();
        let ca = std::fs::read(self.dir.path("ca.crt")).unwrap();
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD.encode(ca);
        let path = self.dir.path(&format!("{namespace}-{name}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: sa\n  user:\n    token: {token}\ncontexts:\n- name: local\n  context: {{cluster: local, user: sa, namespace: {namespace}}}\ncurrent-context: local\n",
                self.server
            ),
        )
        .unwrap();
        path
    }

    pub fn helm(&self, args: &[&str]) -> Output {
        let mut command = Command::new(tool("helm"));
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HELM_CACHE_HOME", self.dir.path("helm-cache"))
            .env("HELM_CONFIG_HOME", self.dir.path("helm-config"))
            .env("HELM_DATA_HOME", self.dir.path("helm-data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        command.output().unwrap()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// kubectl with a kubeconfig, `stdin` fed to it; dies with the test process.
pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut command = Command::new(tool("kubectl"));
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut command);
    let mut child = command.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    pipe.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(pipe);
    child.wait_with_output().unwrap()
}

/// `helm` without a cluster (lint, template), with its state in `dir`.
pub fn helm_offline(dir: &Path, args: &[&str]) -> Output {
    Command::new(tool("helm"))
        .args(args)
        .env("HELM_CACHE_HOME", dir.join("helm-cache"))
        .env("HELM_CONFIG_HOME", dir.join("helm-config"))
        .env("HELM_DATA_HOME", dir.join("helm-data"))
        .env("KUBECONFIG", dir.join("no-kubeconfig"))
        .output()
        .unwrap()
}
