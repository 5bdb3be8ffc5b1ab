//! The integration tests' harness: the real `hubguard` binary as a webhook and a node agent,
//! the local API server, isolated network namespaces and test cgroups, the corpus headers and
//! a metrics parser. The binaries are the ones Cargo built beside the running test.

pub mod cluster;
pub mod controlplane;
pub mod corpus;
pub mod hub;
pub mod images;
pub mod metrics;
pub mod node;
pub mod upstream;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::certs::Authority;
use crate::https_client::{Connection, HttpsClient, Protocol};
use crate::review::ReviewRequest;
use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit sits in the repository")
        .to_path_buf()
}

/// A binary Cargo built beside the running test (`target/<profile>/NAME`): the test binary
/// sits in `target/<profile>/deps`.
pub fn binary(name: &str) -> PathBuf {
    let test = std::env::current_exe().expect("the test binary's path");
    let dir = test
        .parent()
        .and_then(Path::parent)
        .expect("the test binary sits in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build it first (scripts/test runs cargo build -p hubguard -p hubguard-testkit --bins)",
        path.display()
    );
    path
}

/// A fresh directory under the target dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = root().join("target/test-tmp").join(format!(
            "{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        let dir = PathBuf::from(dir.to_string_lossy().replace([' ', '{', '}', ':', ','], ""));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain-HTTP GET: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The documents of a multi-document YAML text (rendered manifests), empty ones left out.
pub fn yaml_documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The object of `kind` whose name ends with `name_suffix`.
pub fn find_object<'a>(objects: &'a [Value], kind: &str, name_suffix: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| {
            o["kind"] == kind
                && o["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with(name_suffix)
        })
        .unwrap_or_else(|| panic!("no {kind} *{name_suffix} rendered"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A CA and a serving certificate for 127.0.0.1 written as ca.crt, tls.crt, tls.key.
pub fn write_certs(dir: &Path) -> Authority {
    let ca = Authority::new("hubguard-test-ca").unwrap();
    write_serving(dir, &ca);
    std::fs::write(dir.join("ca.crt"), &ca.cert_pem).unwrap();
    ca
}

/// A new serving certificate from `ca`, replacing tls.crt and tls.key the way a Secret
/// volume update does: each file swapped in whole by a rename.
pub fn write_serving(dir: &Path, ca: &Authority) {
    let serving = ca.issue(&["localhost", "127.0.0.1"]).unwrap();
    for (name, text) in [
        ("tls.crt", &serving.cert_pem),
        ("tls.key", &serving.key_pem),
    ] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// `hubguard webhook` running on free loopback ports, killed when dropped.
pub struct Webhook {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub dir: TempDir,
    pub ca: Authority,
}

impl Webhook {
    /// Starts with `policy` (copied to DIR/policy.yaml so tests can rewrite it) and waits
    /// until `/readyz` answers.
    pub fn start(policy: &str, extra: &[&str]) -> Webhook {
        let extra: Vec<&str> = [&["--kubeconfig", "/nonexistent/kubeconfig"], extra].concat();
        Webhook::start_on(policy, free_port(), true, &extra)
    }

    /// On `port`; with `own_certs` false the certificate files are left for hubguard to write
    /// (self-managed TLS) and `ca` is unused.
    pub fn start_on(policy: &str, port: u16, own_certs: bool, extra: &[&str]) -> Webhook {
        let dir = TempDir::new("webhook");
        let ca = if own_certs {
            write_certs(&dir.0)
        } else {
            Authority::new("unused").unwrap()
        };
        std::fs::copy(root().join(policy), dir.path("policy.yaml")).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path("webhook.log")).unwrap();
        let child = Command::new(binary("hubguard"))
            .args(["webhook", "--policy"])
            .arg(dir.path("policy.yaml"))
            .arg("--tls-cert")
            .arg(dir.path("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path("tls.key"))
            .args(["--listen", &addr.to_string()])
            .args(["--metrics-listen", &metrics_addr.to_string()])
            .args(["--reload-interval", "0.2"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut webhook = Webhook {
            child,
            addr,
            metrics_addr,
            dir,
            ca,
        };
        webhook.wait_ready();
        webhook
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("webhook exited ({status}); log:\n{}", self.log());
            }
            if self.get("/readyz").is_ok_and(|(status, _)| status == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("webhook not ready in 20s; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("webhook.log")).unwrap_or_default()
    }

    /// A plain-HTTP GET on the operations port: (status, body).
    pub fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.metrics_addr, path)
    }

    pub fn metrics(&self) -> metrics::Samples {
        let (status, body) = self.get("/metrics").unwrap();
        assert_eq!(status, 200);
        metrics::parse(&body)
    }

    pub fn client(&self, protocol: Protocol) -> HttpsClient {
        HttpsClient::new(
            self.addr,
            "127.0.0.1",
            self.ca.cert_pem.as_bytes(),
            protocol,
        )
        .unwrap()
    }

    pub async fn connect(&self) -> Connection {
        self.client(Protocol::Http1).connect().await.unwrap()
    }

    /// Sends one review and returns the AdmissionReview's `response`.
    pub async fn review(&self, path: &str, request: &ReviewRequest<'_>) -> Value {
        let mut connection = self.connect().await;
        review_on(&mut connection, path, request).await
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn review_on(
    connection: &mut Connection,
    path: &str,
    request: &ReviewRequest<'_>,
) -> Value {
    let body = serde_json::to_vec(&request.to_json()).unwrap();
    let (status, body) = connection.post(path, body.into()).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let review: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(review["response"]["uid"], request.uid, "the uid is echoed");
    review["response"].clone()
}

/// A manifest from the repository as JSON.
pub fn manifest(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap();
    serde_norway::from_str(&text).unwrap()
}
