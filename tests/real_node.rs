//! hubguard on a real node: the chart's webhook Deployment and node-agent DaemonSet run as pods
//! of a one-node cluster (kubelet, containerd, runc, CNI bridge, scheduler, controller-manager
//! with per-controller credentials), all inside a network namespace with no link to the host
//! (`support::cluster`). Probes run from inside pods (`kubectl exec`) against a fake metadata
//! server and a fake public host in the node's namespace.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::support::cluster::{Cluster, Options, AGENT_NOT_READY_TAINT, NODE_NAME};
use crate::support::controlplane::tool;
use crate::support::images;
use crate::support::node::{assert_outcomes, require_root};
use crate::support::{binary, root, TempDir};

/// One cluster at a time: each is a whole node (about 1 GiB, both cores while it starts).
static ONE_NODE: Mutex<()> = Mutex::new(());

const METADATA: &str = "tcp:169.254.169.254:80";
const PUBLIC_HTTPS: &str = "tcp:198.51.100.10:443";
const PUBLIC_SSH: &str = "tcp:198.51.100.10:22";

/// The release binary goes into hubguard's image (scripts/test builds it before the tests).
fn release_hubguard() -> PathBuf {
    let path = root().join("target/release/hubguard");
    assert!(
        path.exists(),
        "{} is missing: scripts/test builds it (cargo build --release -p hubguard)",
        path.display()
    );
    path
}

struct Node {
    cluster: Cluster,
    _dir: TempDir,
}

impl Node {
    fn up(agent_taint: bool) -> Node {
        require_root();
        let dir = TempDir::new("real-node");
        let host_sysctls = host_kernel_settings();
        let cluster = Cluster::up(Options {
            dir: dir.path("cluster"),
            hubguard: Some(release_hubguard()),
            netprobe: binary("hubguard-netprobe"),
            agent_taint,
        })
        .unwrap_or_else(|e| panic!("the test node did not come up: {e}"));
        assert_eq!(
            host_kernel_settings(),
            host_sysctls,
            "starting the node changed host-wide kernel settings"
        );
        Node { cluster, _dir: dir }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        self.cluster.kubectl(args)
    }

    fn apply(&self, yaml: &str) {
        self.cluster
            .kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
    }

    fn helm(&self, args: &[&str]) -> Output {
        let state = self.cluster.dir.join("helm");
        Command::new(tool("helm"))
            .args(args)
            .env("KUBECONFIG", &self.cluster.kubeconfig)
            .env("HELM_CACHE_HOME", &state)
            .env("HELM_CONFIG_HOME", &state)
            .env("HELM_DATA_HOME", &state)
            .current_dir(root())
            .output()
            .unwrap()
    }

    /// helm install/upgrade of charts/hubguard with the test image, as pods of this node.
    fn install_hubguard(&self, verb: &str, extra: &[&str]) {
        let pods_cgroup = format!(
            "nodeAgent.podsCgroup={}",
            self.cluster.pods_cgroup_v2().display()
        );
        let mut args = vec![
            verb,
            "hubguard",
            "charts/hubguard",
            "--namespace",
            "hubguard",
            "--create-namespace",
            "--set",
            "policy.preset=tess-private",
            "--set",
            "image.repository=hubguard.dev/test/hubguard",
            "--set",
            "image.tag=test",
            "--set",
            "image.pullPolicy=Never",
            "--set",
            &pods_cgroup,
            // Root on this kind of machine lacks CAP_SYS_RESOURCE, so no container gets it; the
            // kernel (6.x) charges BPF maps to the memory cgroup and the agent does not need it.
            "--set",
            "nodeAgent.capabilities={BPF,NET_ADMIN,PERFMON}",
            "--wait",
            "--timeout",
            "120s",
        ];
        args.extend_from_slice(extra);
        let out = self.helm(&args);
        assert!(
            out.status.success(),
            "helm {verb} failed: {}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.kubectl(&["get", "pods", "-A", "-o", "wide"]),
            self.kubectl(&["get", "events", "-n", "hubguard"])
        );
    }

    /// The documented way back (docs/reliability.md): the release as Helm knows it, taking
    /// back whatever was changed or deleted by hand.
    fn restore_release(&self) {
        let out = self.helm(&[
            "upgrade",
            "hubguard",
            "charts/hubguard",
            "--namespace",
            "hubguard",
            "--reuse-values",
            // Fields edited by hand belong to kubectl's field manager until taken back.
            "--force-conflicts",
            "--wait",
            "--timeout",
            "120s",
        ]);
        assert!(
            out.status.success(),
            "helm upgrade: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{what} after {timeout:?}:\n{}",
                self.kubectl(&["get", "pods", "-A", "-o", "wide"])
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn wait_running(&mut self, namespace: &str, pod: &str) {
        self.cluster
            .wait_pod_running(namespace, pod, Duration::from_secs(90))
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\n{}",
                    self.kubectl(&["describe", "pod", pod, "-n", namespace])
                )
            });
    }

    /// What the pod's metadata probe at its first moment got.
    fn assert_first_probe(&self, namespace: &str, pod: &str, want: &str) {
        let log = self.kubectl(&["logs", "-n", namespace, pod]);
        assert_eq!(
            log.lines().next(),
            Some(format!("{METADATA} {want}").as_str()),
            "{namespace}/{pod} at its start"
        );
    }

    /// The names of the webhook's pods.
    fn webhook_pods(&self) -> Vec<String> {
        self.kubectl(&[
            "get",
            "pods",
            "-n",
            "hubguard",
            "-l",
            "app.kubernetes.io/component=webhook",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect()
    }

    fn node_tainted(&self) -> bool {
        self.kubectl(&[
            "get",
            "node",
            NODE_NAME,
            "-o",
            "jsonpath={.spec.taints[*].key}",
        ])
        .contains("hubguard.dev/agent-not-ready")
    }

    fn assert_probes(&self, namespace: &str, pod: &str, cases: &[(&str, &str)]) {
        let probes: Vec<&str> = cases.iter().map(|(p, _)| *p).collect();
        let results = self.cluster.probe_from(namespace, pod, &probes);
        assert_outcomes(cases, &results, &format!("from {namespace}/{pod}"));
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        eprintln!("{}", self.cluster.cost_report());
    }
}

/// The host-wide settings the kubelet would rewrite without `protectKernelDefaults`.
fn host_kernel_settings() -> Vec<String> {
    [
        "vm/overcommit_memory",
        "vm/panic_on_oom",
        "kernel/panic",
        "kernel/panic_on_oops",
        "kernel/keys/root_maxkeys",
        "kernel/keys/root_maxbytes",
    ]
    .iter()
    .map(|name| std::fs::read_to_string(format!("/proc/sys/{name}")).unwrap_or_default())
    .collect()
}

/// A pod of the probe image (named as the platform's notebook), with the given resources.
/// Its log starts with the outcome of a metadata probe made at its first moment.
fn probe_pod(
    namespace: &str,
    name: &str,
    labels: &str,
    resources: &str,
    extra_spec: &str,
) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels: {{{labels}}}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
{extra_spec}  containers:
    - name: main
      image: {image}
      imagePullPolicy: Never
      # The first thing the pod does is try the metadata endpoint: its log shows whether there
      # was a window at start.
      command: [/bin/sh, -c, "/bin/hubguard-netprobe probe --netns pod {METADATA}; exec /bin/sleep 3600"]
      resources: {resources}
"#,
        image = images::NOTEBOOK
    )
}

/// The tenants of tess-private, without the `default` account: here the controller-manager
/// makes that one, and applying it too would race with it.
fn tenants_fixture() -> String {
    std::fs::read_to_string(root().join("tests/fixtures/e2e/tenants.yaml"))
        .unwrap()
        .split("\n---\n")
        .filter(|doc| !doc.contains("metadata: {name: default, namespace: tess-private}"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[test]
fn the_charts_agent_and_webhook_enforce_on_real_pods() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let mut node = Node::up(true);
    node.apply(&tenants_fixture());
    assert!(
        node.node_tainted(),
        "the node registers with {AGENT_NOT_READY_TAINT}"
    );

    // Before hubguard: a BestEffort pod that tolerates the taint (it runs before the agent
    // exists), and a user pod the taint keeps off the node.
    node.apply(&probe_pod(
        "default",
        "early-besteffort",
        "",
        "{}",
        "  tolerations: [{key: hubguard.dev/agent-not-ready, operator: Exists}]\n",
    ));
    node.wait_running("default", "early-besteffort");
    // Nothing enforces yet: the fake metadata server answers.
    node.assert_first_probe("default", "early-besteffort", "ok");
    node.assert_probes("default", "early-besteffort", &[(METADATA, "ok")]);
    node.apply(&probe_pod(
        "tess-private",
        "waiting-user",
        "hub.jupyter.org/username: alice",
        "{limits: {cpu: 100m, memory: 64Mi}}",
        "",
    ));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        node.kubectl(&[
            "get",
            "pod",
            "waiting-user",
            "-n",
            "tess-private",
            "-o",
            "jsonpath={.status.phase}/{.spec.nodeName}"
        ]),
        "Pending/",
        "the not-ready taint keeps user pods off the node until the agent enforces"
    );

    node.install_hubguard("install", &[]);
    node.wait(
        "the agent removes the not-ready taint",
        Duration::from_secs(60),
        || !node.node_tainted(),
    );
    node.wait_running("tess-private", "waiting-user");
    node.assert_first_probe("tess-private", "waiting-user", "EPERM");

    // Pods of every QoS class, created after the agent by the tenant herself.
    let alice = node.cluster.kubeconfig_for("tess-private", "user-alice");
    for (name, resources) in [
        (
            "alice-guaranteed",
            "{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 100m, memory: 64Mi}}",
        ),
        (
            "alice-burstable",
            "{requests: {cpu: 50m, memory: 32Mi}, limits: {cpu: 200m, memory: 128Mi}}",
        ),
    ] {
        let out = node.cluster.kubectl_as(
            &alice,
            &["create", "-f", "-"],
            Some(&probe_pod(
                "tess-private",
                name,
                "hub.jupyter.org/username: alice",
                resources,
                "",
            )),
        );
        assert!(
            out.status.success(),
            "alice's {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    node.wait_running("tess-private", "alice-guaranteed");
    node.wait_running("tess-private", "alice-burstable");
    for (namespace, pod, qos) in [
        ("tess-private", "alice-guaranteed", "Guaranteed"),
        ("tess-private", "alice-burstable", "Burstable"),
        ("tess-private", "waiting-user", "Guaranteed"),
        ("default", "early-besteffort", "BestEffort"),
    ] {
        assert_eq!(
            node.kubectl(&[
                "get",
                "pod",
                pod,
                "-n",
                namespace,
                "-o",
                "jsonpath={.status.qosClass}"
            ]),
            qos,
            "{namespace}/{pod}"
        );
    }
    for pod in ["alice-guaranteed", "alice-burstable"] {
        node.assert_first_probe("tess-private", pod, "EPERM");
        node.assert_probes(
            "tess-private",
            pod,
            &[
                (METADATA, "EPERM"),
                (PUBLIC_HTTPS, "ok"),
                (PUBLIC_SSH, "EPERM"),
            ],
        );
    }
    // Created before the webhook, never recorded by it: still no metadata endpoint.
    node.assert_probes("tess-private", "waiting-user", &[(METADATA, "EPERM")]);
    node.assert_probes("default", "early-besteffort", &[(METADATA, "EPERM")]);

    // An attack at admission, by the tenant.
    let attack =
        std::fs::read_to_string(root().join("tests/corpus/attack/privileged-pod.yaml")).unwrap();
    let out = node
        .cluster
        .kubectl_as(&alice, &["create", "-f", "-"], Some(&attack));
    assert!(!out.status.success(), "alice's privileged pod was created");
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert!(
        refusal.contains("denied the request: hubguard policy tess-private"),
        "{refusal}"
    );

    // The agent's pod deleted (and replaced by the DaemonSet), then upgraded, while a user pod
    // keeps trying the metadata endpoint: not one connect gets through in the gaps.
    let prober = Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(&node.cluster.kubeconfig)
        .args([
            "exec",
            "-n",
            "tess-private",
            "alice-guaranteed",
            "--",
            "/bin/hubguard-netprobe",
        ])
        .args(["repeat", "--netns", "pod", "--count", "1500", METADATA])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    node.kubectl(&[
        "delete",
        "pod",
        "-n",
        "hubguard",
        "-l",
        "app.kubernetes.io/component=node-agent",
        "--wait=true",
    ]);
    node.kubectl(&[
        "rollout",
        "status",
        "daemonset/hubguard-node-agent",
        "-n",
        "hubguard",
        "--timeout=90s",
    ]);
    node.install_hubguard(
        "upgrade",
        &["--set", "nodeAgent.resources.requests.cpu=25m"],
    );
    node.kubectl(&[
        "rollout",
        "status",
        "daemonset/hubguard-node-agent",
        "-n",
        "hubguard",
        "--timeout=90s",
    ]);
    let tally = prober.wait_with_output().unwrap();
    let tally_text = String::from_utf8_lossy(&tally.stdout);
    assert!(
        tally.status.success(),
        "the prober failed: {}",
        String::from_utf8_lossy(&tally.stderr)
    );
    assert!(
        !tally_text.lines().any(|l| l.starts_with("ok ")),
        "the metadata endpoint answered during the agent's restart or upgrade:\n{tally_text}"
    );
    assert!(tally_text.contains("EPERM"), "{tally_text}");
    node.assert_probes("tess-private", "alice-burstable", &[(METADATA, "EPERM")]);

    // Uninstall takes everything with it: the agent's programs (the endpoint answers again),
    // the webhook configurations, the release's objects.
    let out = node.helm(&[
        "uninstall",
        "hubguard",
        "--namespace",
        "hubguard",
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(
        out.status.success(),
        "helm uninstall: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.wait(
        "the agent's programs are removed",
        Duration::from_secs(60),
        || {
            node.cluster
                .probe_from("tess-private", "alice-burstable", &[METADATA])
                .get(METADATA)
                .map(String::as_str)
                == Some("ok")
        },
    );
    for kind in [
        "validatingwebhookconfigurations",
        "mutatingwebhookconfigurations",
        "clusterroles",
        "clusterrolebindings",
    ] {
        let left = node.kubectl(&["get", kind, "-o", "name"]);
        assert!(!left.contains("hubguard"), "left after uninstall: {left}");
    }
    // The webhook's pods drain for their shutdown delay; the Secret the webhook made itself is
    // removed by the garbage collector, with the webhook configuration that owns it.
    let leftovers = || {
        node.kubectl(&[
            "get",
            "all,configmaps,secrets,serviceaccounts,pdb",
            "-n",
            "hubguard",
            "-o",
            "name",
        ])
        .lines()
        .filter(|l| !l.contains("kube-root-ca.crt") && *l != "serviceaccount/default")
        .map(str::to_string)
        .collect::<Vec<_>>()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !leftovers().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        leftovers(),
        Vec::<String>::new(),
        "left in the hubguard namespace after uninstall"
    );
}

/// The platform's workloads of every kind, as the admin deploys them.
fn platform_workloads() -> String {
    let template = |name: &str, restart: &str| {
        format!(
            r#"metadata:
      labels: {{app: {name}}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      restartPolicy: {restart}
      securityContext: {{runAsUser: 1000, runAsGroup: 1000}}
      containers:
        - name: main
          image: {image}
          imagePullPolicy: Never
          command: [/bin/sleep, "{seconds}"]
          resources: {{limits: {{cpu: 50m, memory: 32Mi}}}}"#,
            image = images::NOTEBOOK,
            seconds = if restart == "Always" { "3600" } else { "1" },
        )
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: platform-deployment, namespace: tess-private}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: platform-deployment}}}}
  template:
    {deployment}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: platform-statefulset, namespace: tess-private}}
spec:
  replicas: 1
  serviceName: platform-statefulset
  selector: {{matchLabels: {{app: platform-statefulset}}}}
  template:
    {statefulset}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: platform-daemonset, namespace: tess-private}}
spec:
  selector: {{matchLabels: {{app: platform-daemonset}}}}
  template:
    {daemonset}
---
apiVersion: batch/v1
kind: Job
metadata: {{name: platform-job, namespace: tess-private}}
spec:
  template:
    {job}
---
apiVersion: batch/v1
kind: CronJob
metadata: {{name: platform-cronjob, namespace: tess-private}}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        {cronjob}
"#,
        deployment = template("platform-deployment", "Always"),
        statefulset = template("platform-statefulset", "Always"),
        daemonset = template("platform-daemonset", "Always"),
        job = template("platform-job", "Never"),
        cronjob = template("platform-cronjob", "Never").replace("\n", "\n    "),
    )
}

#[test]
fn real_controllers_and_webhook_replicas_behind_their_service() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let node = Node::up(false);
    node.apply(&tenants_fixture());
    node.install_hubguard("install", &["--set", "nodeAgent.enabled=false"]);

    // Every built-in controller acts as its own service account
    // (--use-service-account-credentials): the platform's workloads come up through them.
    node.apply(&platform_workloads());
    let ran = |node: &Node, selector: &str| {
        let phases = node.kubectl(&[
            "get",
            "pods",
            "-n",
            "tess-private",
            "-l",
            selector,
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        phases.contains("Running") || phases.contains("Succeeded")
    };
    for app in [
        "platform-deployment",
        "platform-statefulset",
        "platform-daemonset",
        "platform-job",
        "platform-cronjob",
    ] {
        // The CronJob's first Job starts at the next full minute.
        let timeout = Duration::from_secs(if app == "platform-cronjob" { 90 } else { 45 });
        let deadline = Instant::now() + timeout;
        while !ran(&node, &format!("app={app}")) {
            assert!(
                Instant::now() < deadline,
                "{app} has no pod that ran after {timeout:?}:\n{}",
                node.kubectl(&[
                    "get",
                    "events",
                    "-n",
                    "tess-private",
                    "--sort-by=.lastTimestamp"
                ])
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // The tenant's privileged Deployment is refused at the Deployment.
    let alice = node.cluster.kubeconfig_for("tess-private", "user-alice");
    let attack =
        std::fs::read_to_string(root().join("tests/corpus/attack/privileged-deployment.yaml"))
            .unwrap();
    let out = node
        .cluster
        .kubectl_as(&alice, &["create", "-f", "-"], Some(&attack));
    assert!(
        !out.status.success(),
        "alice's privileged Deployment was created"
    );
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert!(
        refusal.contains("hubguard policy tess-private"),
        "{refusal}"
    );

    // What reached the node is exactly what was admitted: the platform's pods, nothing
    // privileged, nothing of alice's.
    let pods = node.kubectl(&[
        "get", "pods", "-n", "tess-private", "-o",
        "jsonpath={range .items[*]}{.metadata.labels.app} {.spec.containers[*].securityContext.privileged}{\"\\n\"}{end}",
    ]);
    for line in pods.lines() {
        let (app, privileged) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            app.starts_with("platform-"),
            "an unexpected pod reached the node: {line}"
        );
        assert_ne!(
            privileged.trim(),
            "true",
            "a privileged pod reached the node: {line}"
        );
    }
    assert!(
        node.kubectl(&["get", "replicasets", "-n", "tess-private", "-o", "name"])
            .lines()
            .all(|l| l.contains("platform-deployment")),
        "only the platform's ReplicaSet exists"
    );

    // Two webhook replicas behind their Service; one is deleted during a stream of creates.
    let endpoints = || {
        node.kubectl(&[
            "get",
            "endpointslices",
            "-n",
            "hubguard",
            "-l",
            "kubernetes.io/service-name=hubguard-webhook",
            "-o",
            "jsonpath={.items[*].endpoints[?(@.conditions.ready==true)].addresses[0]}",
        ])
        .split_whitespace()
        .count()
    };
    node.wait(
        "two ready webhook endpoints",
        Duration::from_secs(60),
        || endpoints() == 2,
    );
    let victim = node.webhook_pods()[0].clone();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut created = 0;
    let mut deleter = None;
    for i in 0..40 {
        if i == 5 {
            deleter = Some(
                Command::new(tool("kubectl"))
                    .arg("--kubeconfig")
                    .arg(&node.cluster.kubeconfig)
                    .args(["delete", "pod", "-n", "hubguard", &victim, "--wait=true"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        let name = format!("stream-{i}");
        let out = node.cluster.kubectl_as(
            &alice,
            &["create", "-f", "-"],
            Some(&probe_pod(
                "tess-private",
                &name,
                "hub.jupyter.org/username: alice",
                "{limits: {cpu: 10m, memory: 16Mi}}",
                "",
            )),
        );
        if out.status.success() {
            created += 1;
        } else {
            failures.push(format!("{name}: {}", String::from_utf8_lossy(&out.stderr)));
        }
    }
    if let Some(deleter) = deleter {
        let out = deleter.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "deleting {victim}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(
        failures.is_empty(),
        "creates failed while a webhook replica went away:\n{}",
        failures.join("\n")
    );
    eprintln!(
        "{created} pod creates in {:.1}s while webhook replica {victim} was deleted: none failed",
        started.elapsed().as_secs_f64()
    );

    // The Deployment replaces the replica; its readiness probe decides when it takes traffic,
    // and the PodDisruptionBudget keeps one replica whatever an eviction asks.
    node.wait(
        "the replacement replica is ready",
        Duration::from_secs(60),
        || endpoints() == 2,
    );
    let replicas = node.webhook_pods();
    assert_eq!(replicas.len(), 2, "{replicas:?}");
    let evict = |pod: &str| {
        let eviction = format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"hubguard"}}}}"#
        );
        node.cluster.kubectl_as(
            &node.cluster.kubeconfig,
            &[
                "create",
                "--raw",
                &format!("/api/v1/namespaces/hubguard/pods/{pod}/eviction"),
                "-f",
                "-",
            ],
            Some(&eviction),
        )
    };
    // The disruption controller computes what the budget allows once both are ready.
    node.wait(
        "the budget allows one disruption",
        Duration::from_secs(60),
        || {
            node.kubectl(&[
                "get",
                "pdb",
                "hubguard-webhook",
                "-n",
                "hubguard",
                "-o",
                "jsonpath={.status.disruptionsAllowed}",
            ]) == "1"
        },
    );
    let first = evict(&replicas[0]);
    assert!(
        first.status.success(),
        "evicting one of two replicas: {}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = evict(&replicas[1]);
    assert!(
        !second.status.success(),
        "the PodDisruptionBudget let the last replica go"
    );
    let refusal = String::from_utf8_lossy(&second.stderr);
    assert!(refusal.contains("disruption budget"), "{refusal}");
}

/// A pod in `namespace` as the admin creates it (not judged as a tenant's).
fn plain_pod(namespace: &str, name: &str) -> String {
    probe_pod(
        namespace,
        name,
        "",
        "{limits: {cpu: 10m, memory: 16Mi}}",
        "",
    )
}

#[test]
fn a_webhook_outage_fails_closed_and_the_emergency_switch_takes_hubguard_out_and_back() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let node = Node::up(false);
    node.apply(&tenants_fixture());
    node.install_hubguard("install", &["--set", "nodeAgent.enabled=false"]);
    let alice = node.cluster.kubeconfig_for("tess-private", "user-alice");
    let alice_creates = |name: &str| {
        node.cluster.kubectl_as(
            &alice,
            &["create", "-f", "-"],
            Some(&probe_pod(
                "tess-private",
                name,
                "hub.jupyter.org/username: alice",
                "{limits: {cpu: 10m, memory: 16Mi}}",
                "",
            )),
        )
    };
    let out = alice_creates("before-outage");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A broken policy pushed through the ConfigMap while tenants create pods: refused by every
    // replica, the last good policy stays (creates go on, attacks are still refused), and the
    // refusal shows as a metric and as an Event on the ConfigMap.
    let attack =
        std::fs::read_to_string(root().join("tests/corpus/attack/privileged-pod.yaml")).unwrap();
    let refused_by_hubguard = || {
        let out = node.cluster.kubectl_as(
            &alice,
            &["create", "--dry-run=server", "-f", "-"],
            Some(&attack),
        );
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr)
                .contains("denied the request: hubguard policy tess-private")
    };
    let refusal_recorded = || {
        !node
            .kubectl(&[
                "get",
                "events",
                "-n",
                "hubguard",
                "--field-selector",
                "reason=PolicyRefused",
                "-o",
                "name",
            ])
            .trim()
            .is_empty()
    };
    let (creates, failures) = std::thread::scope(|scope| {
        let stream = scope.spawn(|| {
            let mut failures = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0;
            // At least 20 creates, and on until the refusal is recorded; bounded in time.
            while Instant::now() < deadline && !(i >= 20 && refusal_recorded()) {
                let out = alice_creates(&format!("during-push-{i}"));
                if !out.status.success() {
                    failures.push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
                i += 1;
            }
            (i, failures)
        });
        std::thread::sleep(Duration::from_secs(2));
        let broken = node.kubectl(&[
            "create",
            "configmap",
            "hubguard-policy",
            "-n",
            "hubguard",
            "--from-literal=policy.yaml=spec: [this is not a policy",
            "--dry-run=client",
            "-o",
            "yaml",
        ]);
        node.cluster
            .kubectl_stdin(&["replace", "-f", "-"], Some(&broken));
        stream.join().unwrap()
    });
    assert!(
        failures.is_empty(),
        "creates failed while a broken policy was pushed:\n{}",
        failures.join("\n")
    );
    assert!(
        refusal_recorded(),
        "no PolicyRefused Event within 2 minutes"
    );
    eprintln!("{creates} pod creates while a broken policy was pushed: none failed");
    let notes = node.kubectl(&[
        "get",
        "events",
        "-n",
        "hubguard",
        "--field-selector",
        "reason=PolicyRefused",
        "-o",
        // The core API shows an events.k8s.io note as the message.
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        notes.contains("the last good policy stays in force"),
        "{notes}"
    );
    assert!(
        refused_by_hubguard(),
        "the last good policy no longer refuses the attack"
    );
    for replica in node.webhook_pods() {
        node.wait(
            &format!("{replica} counts the refusal"),
            Duration::from_secs(60),
            || {
                node.kubectl(&[
                    "get",
                    "--raw",
                    &format!("/api/v1/namespaces/hubguard/pods/{replica}:9090/proxy/metrics"),
                ])
                .lines()
                .any(|l| {
                    l.starts_with("hubguard_policy_reload_errors_total ") && !l.ends_with(" 0")
                })
            },
        );
    }
    // The release's own policy back.
    node.restore_release();

    // The webhook down: tenant namespaces fail closed; kube-system and hubguard's own namespace
    // are outside its path and keep working.
    node.kubectl(&[
        "scale",
        "deployment/hubguard-webhook",
        "-n",
        "hubguard",
        "--replicas=0",
    ]);
    node.wait(
        "the webhook's pods are gone",
        Duration::from_secs(60),
        || node.webhook_pods().is_empty(),
    );
    let out = alice_creates("during-outage");
    assert!(
        !out.status.success(),
        "a tenant's pod was created with the webhook down"
    );
    let refusal = String::from_utf8_lossy(&out.stderr);
    assert!(refusal.contains("failed calling webhook"), "{refusal}");
    for namespace in ["kube-system", "hubguard"] {
        node.cluster.kubectl_stdin(
            &["create", "-f", "-"],
            Some(&plain_pod(namespace, "system-pod")),
        );
    }

    // The emergency switch, one command: hubguard's webhook configurations go, admission works
    // without it. (docs/reliability.md)
    node.kubectl(&[
        "delete",
        "validatingwebhookconfiguration,mutatingwebhookconfiguration",
        "-l",
        "app.kubernetes.io/instance=hubguard",
    ]);
    let out = alice_creates("switched-off");
    assert!(
        out.status.success(),
        "with hubguard switched off: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // ... and back, one command: the release's configurations and replicas return, and the
    // webhook (which keeps the caBundle current) refuses attacks again.
    node.restore_release();
    node.wait(
        "hubguard refuses attacks again",
        Duration::from_secs(60),
        refused_by_hubguard,
    );
    let out = alice_creates("switched-on");
    assert!(
        out.status.success(),
        "after switching back on: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
