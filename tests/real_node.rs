//! hubguard on a real node: the chart's webhook Deployment and node-agent DaemonSet run as pods
//! of a one-node cluster (kubelet, containerd, runc, CNI bridge, scheduler, controller-manager
//! with per-controller credentials), all inside a network namespace with no link to the host
//! (`support::cluster`). Probes run from inside pods (`kubectl exec`) against a fake metadata
//! server and a fake public host in the node's namespace.

use crate::support::hub::{apply_json, bound_claim};
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
pub(crate) static ONE_NODE: Mutex<()> = Mutex::new(());

pub(crate) const METADATA: &str = "tcp:169.254.169.254:80";
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

pub(crate) struct Node {
    pub(crate) cluster: Cluster,
    _dir: TempDir,
}

impl Node {
    fn up(agent_taint: bool) -> Node {
        Node::up_with(agent_taint, false)
    }

    /// A node that also enforces NetworkPolicy (kube-router's firewall).
    pub(crate) fn up_with(agent_taint: bool, network_policy: bool) -> Node {
        require_root();
        let dir = TempDir::new("real-node");
        let host_sysctls = host_kernel_settings();
        let cluster = Cluster::up(Options {
            dir: dir.path("cluster"),
            hubguard: Some(release_hubguard()),
            netprobe: binary("hubguard-netprobe"),
            agent_taint,
            network_policy,
        })
        .unwrap_or_else(|e| panic!("the test node did not come up: {e}"));
        assert_eq!(
            host_kernel_settings(),
            host_sysctls,
            "starting the node changed host-wide kernel settings"
        );
        Node { cluster, _dir: dir }
    }

    pub(crate) fn kubectl(&self, args: &[&str]) -> String {
        self.cluster.kubectl(args)
    }

    pub(crate) fn apply(&self, yaml: &str) {
        self.cluster
            .kubectl_stdin(&["apply", "-f", "-"], Some(yaml));
    }

    pub(crate) fn helm(&self, args: &[&str]) -> Output {
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
    pub(crate) fn install_hubguard(&self, verb: &str, extra: &[&str]) {
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

    pub(crate) fn wait(&self, what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
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

    /// One field of a pod, by jsonpath (`{.status.podIP}`).
    pub(crate) fn pod_field(&self, namespace: &str, pod: &str, jsonpath: &str) -> String {
        self.kubectl(&[
            "get",
            "pod",
            pod,
            "-n",
            namespace,
            "-o",
            &format!("jsonpath={jsonpath}"),
        ])
    }

    pub(crate) fn wait_running(&mut self, namespace: &str, pod: &str) {
        self.cluster
            .wait_pod_running(namespace, pod, Duration::from_secs(90))
            .unwrap_or_else(|e| {
                let log = self
                    .cluster
                    .kubectl_output(&["logs", pod, "-n", namespace, "--tail=40"])
                    .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                    .unwrap_or_default();
                panic!(
                    "{e}\n{}\nits log ends:\n{log}",
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
        self.component_pods("webhook")
    }

    /// Every webhook replica gone (the Deployment scaled to 0).
    fn take_webhook_down(&self) {
        self.kubectl(&[
            "scale",
            "deployment/hubguard-webhook",
            "-n",
            "hubguard",
            "--replicas=0",
        ]);
        self.wait(
            "the webhook's pods are gone",
            Duration::from_secs(60),
            || self.webhook_pods().is_empty(),
        );
    }

    /// The names of hubguard's pods of one component (`webhook`, `node-agent`).
    fn component_pods(&self, component: &str) -> Vec<String> {
        self.kubectl(&[
            "get",
            "pods",
            "-n",
            "hubguard",
            "-l",
            &format!("app.kubernetes.io/component={component}"),
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
        .split_whitespace()
        .map(str::to_string)
        .collect()
    }

    /// A counter of one webhook replica (0 when absent).
    fn replica_counter(&self, replica: &str, name: &str) -> f64 {
        self.pod_metric(replica, 9090, name)
    }

    /// A sample of a hubguard pod's metric, read through the API server's pod proxy; `series`
    /// is the name with its labels as exposed (0 when absent).
    fn pod_metric(&self, pod: &str, port: u16, series: &str) -> f64 {
        self.kubectl(&[
            "get",
            "--raw",
            &format!("/api/v1/namespaces/hubguard/pods/{pod}:{port}/proxy/metrics"),
        ])
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
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

    /// Whether one probe from the pod has the outcome `want` now.
    fn probe_gets(&self, namespace: &str, pod: &str, probe: &str, want: &str) -> bool {
        self.cluster
            .probe_from(namespace, pod, &[probe])
            .get(probe)
            .is_some_and(|outcome| outcome == want)
    }

    pub(crate) fn assert_probes(&self, namespace: &str, pod: &str, cases: &[(&str, &str)]) {
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
    // The first thing the pod does is try the metadata endpoint: its log shows whether there
    // was a window at start.
    let command =
        format!("/bin/hubguard-netprobe probe --netns pod {METADATA}; exec /bin/sleep 3600");
    probe_pod_running(namespace, name, labels, resources, extra_spec, &command)
}

/// A pod of the probe image running `command` (a shell line).
pub(crate) fn probe_pod_running(
    namespace: &str,
    name: &str,
    labels: &str,
    resources: &str,
    extra_spec: &str,
    command: &str,
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
      command: [/bin/sh, -c, "{command}"]
      resources: {resources}
"#,
        image = images::NOTEBOOK
    )
}

/// The tenants of tess-private, without the `default` account: here the controller-manager
/// makes that one, and applying it too would race with it.
pub(crate) fn tenants_fixture() -> String {
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
            node.pod_field(namespace, pod, "{.status.qosClass}"),
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
    // What no hook of the agent sees is closed another way in a restricted pod: a packet socket
    // needs CAP_NET_RAW (dropped), vsock is refused by the runtime's RuntimeDefault seccomp
    // profile; an IPv6 segment routing header, which needs no privilege, the agent refuses at
    // setsockopt.
    node.assert_probes(
        "tess-private",
        "alice-guaranteed",
        &[
            ("family:packet", "EPERM"),
            ("family:vsock", "EPERM"),
            ("srh:[fd00:ec2::254]:[2001:db8::10]:80", "EPERM"),
        ],
    );
    // Credential endpoints beyond the best-known one, in other forms and by other paths
    // (docs/node-agent.md), from a pod whose class opens the public web: each refused.
    node.assert_probes(
        "tess-private",
        "alice-guaranteed",
        &[
            ("tcp:168.63.129.16:80", "EPERM"),
            ("tcp:168.63.129.16:32526", "EPERM"),
            ("tcp:169.254.169.252:988", "EPERM"),
            ("tcp:100.100.100.200:80", "EPERM"),
            ("tcp:[fd00:ec2::254]:80", "EPERM"),
            ("tcp:[::ffff:0:a9fe:a9fe]:80", "EPERM"),
            ("tcp:[64:ff9b::a9fe:a9fe]:80", "EPERM"),
            ("udpc:169.254.169.254:80", "EPERM"),
            ("udplite:169.254.169.254:80", "EPERM"),
            ("route:169.254.169.254:80", "EPERM"),
        ],
    );
    // Services as pods use them: the hub's API by name (cluster DNS) and by cluster IP
    // (kube-proxy), which the user class's hub-api rule opens; the same port at the hub pod's
    // own address is not the Service and stays closed.
    node.apply(&format!(
        "{}---\n{}",
        probe_pod_running(
            "tess-private",
            "hub-stand-in",
            "app: hub-stand-in",
            "{limits: {cpu: 100m, memory: 64Mi}}",
            "",
            // It serves until its stdin closes.
            "/bin/sleep 3600 | /bin/hubguard-netprobe serve --netns pod tcp:0.0.0.0:8081",
        ),
        "apiVersion: v1\nkind: Service\nmetadata: {name: hub, namespace: tess-private}\n\
         spec: {selector: {app: hub-stand-in}, ports: [{port: 8081}]}\n"
    ));
    node.wait_running("tess-private", "hub-stand-in");
    node.cluster
        .wait_dns_ready(Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e}"));
    let hub_ip = node.kubectl(&[
        "get",
        "service",
        "hub",
        "-n",
        "tess-private",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let hub_pod_ip = node.pod_field("tess-private", "hub-stand-in", "{.status.podIP}");
    let by_ip = format!("tcp:{hub_ip}:8081");
    let at_pod = format!("tcp:{hub_pod_ip}:8081");
    node.wait(
        "the hub Service answers at its cluster IP",
        Duration::from_secs(30),
        || node.probe_gets("tess-private", "alice-guaranteed", &by_ip, "ok"),
    );
    node.assert_probes(
        "tess-private",
        "alice-guaranteed",
        &[
            ("tcp:hub.tess-private:8081", "ok"),
            ("tcp:hub.tess-private.svc.cluster.local:8081", "ok"),
            (&by_ip, "ok"),
            (&at_pod, "EPERM"),
        ],
    );
    // The tenant goes for the hub's Service (her Role may create and delete Services): she
    // may not delete it, take its pods into a Service of hers, or publish them; afterwards
    // the hub's name and cluster IP still reach the hub.
    for (what, verb, object, rule) in [
        ("delete the hub's Service", "delete", "apiVersion: v1\nkind: Service\nmetadata: {name: hub, namespace: tess-private}\n", "tenantActions"),
        ("select the hub's pods", "create", "apiVersion: v1\nkind: Service\nmetadata: {name: alice-hub, namespace: tess-private}\nspec: {selector: {app: hub-stand-in}, ports: [{port: 8081}]}\n", "serviceSelector"),
        ("publish her pods on every node", "create", "apiVersion: v1\nkind: Service\nmetadata: {name: alice-open, namespace: tess-private}\nspec: {type: NodePort, selector: {hubguard.dev/tenant: alice}, ports: [{port: 8081}]}\n", "serviceExposure"),
    ] {
        let out = node
            .cluster
            .kubectl_as(&alice, &[verb, "-f", "-"], Some(object));
        let refusal = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "alice could {what}");
        assert!(
            refusal.contains("hubguard policy tess-private denied") && refusal.contains(&format!("[{rule}]")),
            "{what}: {refusal}"
        );
    }
    node.assert_probes(
        "tess-private",
        "alice-guaranteed",
        &[("tcp:hub.tess-private:8081", "ok"), (&by_ip, "ok")],
    );

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
        || node.probe_gets("tess-private", "alice-burstable", METADATA, "ok"),
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
            || node.replica_counter(&replica, "hubguard_policy_reload_errors_total") > 0.0,
        );
    }
    // The release's own policy back.
    node.restore_release();

    // The webhook down: tenant namespaces fail closed; kube-system and hubguard's own namespace
    // are outside its path and keep working.
    node.take_webhook_down();
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

/// The webhook's serving certificate rotated while tenants create pods, then the API server
/// restarted under the webhook and the agent, then restarted again with the webhook down.
#[test]
fn certificate_rotation_and_api_server_restarts_leave_no_gap() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let mut node = Node::up(false);
    node.apply(&tenants_fixture());
    node.install_hubguard("install", &[]);
    let alice = node.cluster.kubeconfig_for("tess-private", "user-alice");
    let user_pod = |name: &str| {
        probe_pod(
            "tess-private",
            name,
            "hub.jupyter.org/username: alice",
            "{limits: {cpu: 50m, memory: 32Mi}}",
            "",
        )
    };
    let attack =
        std::fs::read_to_string(root().join("tests/corpus/attack/privileged-pod.yaml")).unwrap();
    // One allowed and one denied create (server-side dry run: judged, not stored); what went
    // wrong, if anything.
    let judged_pair = |node: &Node, i: usize| -> Vec<String> {
        let mut wrong = Vec::new();
        let out = node.cluster.kubectl_as(
            &alice,
            &["create", "--dry-run=server", "-f", "-"],
            Some(&user_pod(&format!("judged-{i}"))),
        );
        if !out.status.success() {
            wrong.push(format!(
                "allowed pod refused: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let out = node.cluster.kubectl_as(
            &alice,
            &["create", "--dry-run=server", "-f", "-"],
            Some(&attack),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            wrong.push("attack admitted".to_string());
        } else if !stderr.contains("denied the request: hubguard policy tess-private") {
            wrong.push(format!("attack refused, but not by hubguard: {stderr}"));
        }
        wrong
    };

    // A pod of alice's that tries the metadata endpoint every 20 ms for as long as it runs,
    // logging a tally every 250 tries: an "ok" line is a gap in enforcement.
    node.apply(&probe_pod_running(
        "tess-private",
        "metadata-watch",
        "hub.jupyter.org/username: alice",
        "{limits: {cpu: 100m, memory: 32Mi}}",
        "",
        &format!(
            "while true; do /bin/hubguard-netprobe repeat --netns pod --count 250 {METADATA}; done"
        ),
    ));
    node.wait_running("tess-private", "metadata-watch");

    // The serving certificate rotated under load: the Secret says it expires within the
    // renewal margin, a replica renews it at its next check and every replica takes the new
    // one into use. The API server trusts the same CA throughout: no request may fail.
    let reloads_before: Vec<(String, f64)> = node
        .webhook_pods()
        .into_iter()
        .map(|r| {
            let n = node.replica_counter(&r, "hubguard_tls_reloads_total");
            (r, n)
        })
        .collect();
    assert_eq!(
        reloads_before.len(),
        2,
        "the chart runs two webhook replicas"
    );
    let serving_cert = || {
        node.kubectl(&[
            "get",
            "secret",
            "hubguard-webhook-tls",
            "-n",
            "hubguard",
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ])
    };
    let cert_before = serving_cert();
    let reloads_of = |node: &Node| -> Vec<f64> {
        reloads_before
            .iter()
            .map(|(r, _)| node.replica_counter(r, "hubguard_tls_reloads_total"))
            .collect()
    };
    let wait_all_reloaded = |node: &Node, before: &[f64], what: &str| {
        for ((replica, _), before) in reloads_before.iter().zip(before) {
            node.wait(
                &format!("{replica} serves {what}"),
                Duration::from_secs(90),
                || node.replica_counter(replica, "hubguard_tls_reloads_total") > *before,
            );
        }
    };
    let mut rotation = Duration::ZERO;
    let (pairs, wrong) = judged_while(&node, &judged_pair, || {
        let before = reloads_of(&node);
        let started = Instant::now();
        let soon = Command::new("date")
            .args(["-u", "-d", "+30 days", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        let soon = String::from_utf8_lossy(&soon.stdout).trim().to_string();
        node.kubectl(&[
            "annotate",
            "secret",
            "hubguard-webhook-tls",
            "-n",
            "hubguard",
            "--overwrite",
            &format!("hubguard.dev/serving-not-after={soon}"),
        ]);
        wait_all_reloaded(&node, &before, "the renewed certificate");
        rotation = started.elapsed();
    });
    assert_ne!(
        serving_cert(),
        cert_before,
        "the serving certificate was not renewed"
    );
    assert!(
        wrong.is_empty(),
        "requests went wrong during the rotation:\n{}",
        wrong.join("\n")
    );
    assert!(
        pairs >= 10,
        "only {pairs} allowed/denied pairs during the rotation"
    );
    eprintln!(
        "serving certificate rotation: both replicas on the new certificate {rotation:.1?} after the trigger; {} judged creates, none wrong",
        pairs * 2
    );

    // The CA replaced under load, as an operator does it: the Secret deleted. The new CA is
    // trusted beside the old one before any replica serves it; the old one leaves the bundles
    // once both replicas have switched.
    let cas_in_bundle = |node: &Node| {
        let bundle = node.kubectl(&[
            "get",
            "validatingwebhookconfiguration",
            "-l",
            "app.kubernetes.io/instance=hubguard",
            "-o",
            "jsonpath={.items[0].webhooks[0].clientConfig.caBundle}",
        ]);
        let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, bundle.trim())
            .unwrap_or_default();
        String::from_utf8_lossy(&pem)
            .matches("BEGIN CERTIFICATE")
            .count()
    };
    let (mut two_cas_seen, mut ca_rotation) = (false, Duration::ZERO);
    let (pairs, wrong) = judged_while(&node, &judged_pair, || {
        let before = reloads_of(&node);
        let started = Instant::now();
        node.kubectl(&["delete", "secret", "hubguard-webhook-tls", "-n", "hubguard"]);
        wait_all_reloaded(&node, &before, "a certificate of the new CA");
        node.wait(
            "the old CA leaves the bundle",
            Duration::from_secs(120),
            || {
                let cas = cas_in_bundle(&node);
                two_cas_seen |= cas == 2;
                cas == 1
            },
        );
        ca_rotation = started.elapsed();
    });
    assert!(
        wrong.is_empty(),
        "requests went wrong during the CA rotation:\n{}",
        wrong.join("\n")
    );
    assert!(
        two_cas_seen,
        "the bundle never held the old and the new CA together"
    );
    eprintln!(
        "CA rotation: new CA trusted, served by both replicas and the old one pruned {ca_rotation:.1?} after the Secret's deletion; {} judged creates, none wrong",
        pairs * 2
    );

    // The API server restarted under the webhook and the agent: both recover, and the kernel
    // keeps refusing the metadata endpoint while the API is away.
    let away = node
        .cluster
        .restart_control_plane()
        .unwrap_or_else(|e| panic!("the API server did not come back: {e}"));
    let back = Instant::now();
    // Until it judges again, the API server must refuse, never admit: no attack gets through
    // a freshly started API server.
    let mut meanwhile = Vec::new();
    node.wait("the webhook judges again", Duration::from_secs(60), || {
        let wrong = judged_pair(&node, 1000);
        let done = wrong.is_empty();
        meanwhile.extend(wrong);
        done
    });
    let webhook_back = back.elapsed();
    let admitted: Vec<&String> = meanwhile
        .iter()
        .filter(|w| w.starts_with("attack admitted"))
        .collect();
    assert!(
        admitted.is_empty(),
        "an attack was admitted while the API server came back: {admitted:?}"
    );
    if let Some(first) = meanwhile.first() {
        eprintln!(
            "until the webhook judged again ({} answers): {first}",
            meanwhile.len()
        );
    }
    // A pod created after the restart: the agent learned of it (its class's egress applies).
    let out = node.cluster.kubectl_as(
        &alice,
        &["create", "-f", "-"],
        Some(&user_pod("after-restart")),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    node.wait_running("tess-private", "after-restart");
    node.assert_first_probe("tess-private", "after-restart", "EPERM");
    // Until the agent's watch of its node's pods is back, a new pod has no class and no egress
    // (it fails closed); the watch retries within seconds, not client-go's half minute.
    let running = Instant::now();
    node.wait(
        "the agent applies the new pod's class",
        Duration::from_secs(12),
        || node.probe_gets("tess-private", "after-restart", PUBLIC_HTTPS, "ok"),
    );
    let class_applied = (running.elapsed(), back.elapsed());
    node.assert_probes(
        "tess-private",
        "after-restart",
        &[
            (METADATA, "EPERM"),
            (PUBLIC_HTTPS, "ok"),
            (PUBLIC_SSH, "EPERM"),
        ],
    );
    let tallies = node.kubectl(&["logs", "-n", "tess-private", "metadata-watch"]);
    assert!(
        !tallies.lines().any(|l| l.starts_with("ok ")),
        "the metadata endpoint answered during the rotation or the restart:\n{tallies}"
    );
    let attempts: u32 = tallies
        .lines()
        .filter_map(|l| l.strip_prefix("EPERM ")?.trim().parse::<u32>().ok())
        .sum();
    eprintln!(
        "API server restart: away {away:.1?}, webhook judging {webhook_back:.1?} after it was back; a pod created then had its class's egress {:.1?} after it ran ({:.1?} after the API server was back); {attempts} metadata attempts since the pod started, 0 connects",
        class_applied.0, class_applied.1
    );

    // The API server restarted again with every webhook replica down: it comes up and serves
    // the cluster's own pods, while tenants' creates still fail closed.
    node.take_webhook_down();
    let away = node
        .cluster
        .restart_control_plane()
        .unwrap_or_else(|e| panic!("the API server did not come back with the webhook down: {e}"));
    for namespace in ["kube-system", "hubguard"] {
        node.cluster.kubectl_stdin(
            &["create", "-f", "-"],
            Some(&plain_pod(namespace, "after-restart")),
        );
        node.wait_running(namespace, "after-restart");
    }
    let out = node.cluster.kubectl_as(
        &alice,
        &["create", "-f", "-"],
        Some(&user_pod("webhook-down")),
    );
    assert!(
        !out.status.success(),
        "a tenant's pod was created with the webhook down"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("failed calling webhook"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("API server restart with the webhook down: away {away:.1?}; system pods run, tenants fail closed");
}

/// Runs `action` while a stream of alice's allowed and denied creates goes on (and 3 s after
/// it, so connections opened afterwards count too); the pairs judged and what went wrong.
fn judged_while(
    node: &Node,
    judged_pair: &(dyn Fn(&Node, usize) -> Vec<String> + Sync),
    action: impl FnOnce(),
) -> (usize, Vec<String>) {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stream = scope.spawn(|| {
            let (mut pairs, mut wrong) = (0, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(240);
            while !done.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                wrong.extend(judged_pair(node, pairs));
                pairs += 1;
            }
            (pairs, wrong)
        });
        std::thread::sleep(Duration::from_secs(2));
        let acted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(action));
        if acted.is_ok() {
            std::thread::sleep(Duration::from_secs(3));
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let streamed = stream.join().unwrap();
        if let Err(panic) = acted {
            std::panic::resume_unwind(panic);
        }
        streamed
    })
}

/// How long the agent's soak runs: `HUBGUARD_SOAK_SECONDS` (scripts/soak-node-agent sets 600
/// for the figure in docs/reliability.md), 45 s in `scripts/test`.
fn soak_seconds() -> u64 {
    std::env::var("HUBGUARD_SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(45)
}

const MAPS: [&str; 4] = ["cgroup_classes", "tenant_peers", "v4_rules", "v6_rules"];

/// Pods come and go (two tenants' pods, created, run, deleted, over and over): the agent's
/// maps follow them and return to where they started, its memory stays flat, and every pod
/// is refused the metadata endpoint from its first moment.
#[test]
fn the_agent_stays_flat_while_pods_come_and_go() {
    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let mut node = Node::up(false);
    node.apply(&tenants_fixture());
    node.install_hubguard("install", &[]);
    let agent = node
        .component_pods("node-agent")
        .pop()
        .expect("the agent's pod");
    let entries = |node: &Node| -> Vec<u64> {
        MAPS.iter()
            .map(|map| {
                node.pod_metric(
                    &agent,
                    9091,
                    &format!("hubguard_node_agent_map_entries{{map=\"{map}\"}}"),
                ) as u64
            })
            .collect()
    };
    let agent_rss_mib = |node: &Node| {
        node.cluster
            .pod_process_rss_bytes(&["hubguard", "node-agent"]) as f64
            / 1048576.0
    };
    let settled = |node: &Node| {
        let first = entries(node);
        std::thread::sleep(Duration::from_secs(3));
        first == entries(node)
    };
    node.wait("the agent's maps settle", Duration::from_secs(60), || {
        settled(&node)
    });
    let baseline = entries(&node);
    let tenants = [
        (
            "alice",
            node.cluster.kubeconfig_for("tess-private", "user-alice"),
        ),
        (
            "bob",
            node.cluster.kubeconfig_for("tess-private", "user-bob"),
        ),
    ];
    let per_tenant = 3;
    let deadline = Instant::now() + Duration::from_secs(soak_seconds());
    let started = Instant::now();
    let mut samples: Vec<(f64, usize, Vec<u64>, f64)> = Vec::new();
    let mut created = 0;
    let mut cycle = 0;
    while cycle < 2 || Instant::now() < deadline {
        let mut names = Vec::new();
        for (tenant, kubeconfig) in &tenants {
            for i in 0..per_tenant {
                let name = format!("churn-{cycle}-{tenant}-{i}");
                let out = node.cluster.kubectl_as(
                    kubeconfig,
                    &["create", "-f", "-"],
                    Some(&probe_pod(
                        "tess-private",
                        &name,
                        &format!("hub.jupyter.org/username: {tenant}"),
                        "{limits: {cpu: 10m, memory: 16Mi}}",
                        "",
                    )),
                );
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                names.push(name);
                created += 1;
            }
        }
        for name in &names {
            node.wait_running("tess-private", name);
        }
        // Every pod's first moment, not a sample: the probe is its command.
        for name in &names {
            node.wait("the pod's first probe", Duration::from_secs(30), || {
                !node
                    .kubectl(&["logs", "-n", "tess-private", name])
                    .trim()
                    .is_empty()
            });
            node.assert_first_probe("tess-private", name, "EPERM");
        }
        let mut delete = vec!["delete", "pod", "-n", "tess-private", "--wait=false"];
        delete.extend(names.iter().map(String::as_str));
        node.kubectl(&delete);
        samples.push((
            started.elapsed().as_secs_f64(),
            created,
            entries(&node),
            agent_rss_mib(&node),
        ));
        cycle += 1;
    }
    node.kubectl(&[
        "delete",
        "pod",
        "-n",
        "tess-private",
        "--all",
        "--wait=true",
        "--timeout=90s",
    ]);
    node.wait(
        "the agent's maps return to where they started (no stale entries)",
        Duration::from_secs(60),
        || entries(&node) == baseline,
    );
    let end_rss = agent_rss_mib(&node);

    eprintln!(
        "agent soak: {created} pods in {cycle} cycles over {:.0} s; maps {MAPS:?}",
        started.elapsed().as_secs_f64()
    );
    eprintln!(
        "{:>8}{:>8}{:>28}{:>10}",
        "t (s)", "pods", "entries", "RSS MiB"
    );
    eprintln!(
        "{:>8}{:>8}{:>28}{:>10}",
        "0",
        "0",
        format!("{baseline:?}"),
        ""
    );
    for (t, pods, entries, rss) in &samples {
        eprintln!("{t:>8.0}{pods:>8}{:>28}{rss:>10.1}", format!("{entries:?}"));
    }
    eprintln!(
        "{:>8}{:>8}{:>28}{end_rss:>10.1}",
        "end",
        created,
        format!("{baseline:?}")
    );
    // Memory: flat within 10% of the first cycle's (the allocator and caches warm up in it) over
    // the long run; the short run in scripts/test, a few cycles on a busy machine, checks the
    // machinery and catches a gross leak (25%).
    let first = samples[0].3;
    let tolerance = if soak_seconds() >= 300 { 0.10 } else { 0.25 };
    for (t, _, _, rss) in samples
        .iter()
        .skip(1)
        .chain([&(0.0, 0, Vec::new(), end_rss)])
    {
        assert!(
            (rss / first - 1.0).abs() <= tolerance,
            "the agent's RSS moved from {first:.1} MiB to {rss:.1} MiB (at {t:.0} s)"
        );
    }
    // Maps: each cycle's sample is the same as the first's (the cycle's pods being deleted).
    let peak = samples.iter().map(|s| s.2[0]).max().unwrap_or(0);
    assert!(
        peak <= baseline[0] + (tenants.len() * per_tenant) as u64 * 2,
        "cgroup entries climbed to {peak} (baseline {})",
        baseline[0]
    );
}

/// A container of an upstream pod, made to run here: the test image (the node pulls nothing),
/// sleeping instead of serving, so no probe of a server that is not there.
fn run_test_image(container: &mut serde_json::Value) {
    let c = container.as_object_mut().expect("a container");
    c.insert("image".into(), images::NOTEBOOK.into());
    c.insert("imagePullPolicy".into(), "Never".into());
    c.insert("command".into(), serde_json::json!(["/bin/sleep", "3600"]));
    c.remove("args");
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        c.remove(probe);
    }
}

/// What a pod template refers to that its namespace must hold for it to start: service
/// accounts, config maps, secrets (with the keys its environment reads) and claims.
fn referenced_objects(
    namespace: &str,
    spec: &serde_json::Value,
    dir: &TempDir,
) -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut out = Vec::new();
    let mut secrets: std::collections::BTreeMap<
        String,
        serde_json::Map<String, serde_json::Value>,
    > = Default::default();
    let mut config_maps = std::collections::BTreeSet::new();
    if let Some(account) = spec["serviceAccountName"].as_str() {
        out.push(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": namespace}}));
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            secrets.entry(name.into()).or_default();
        }
        if let Some(name) = volume["configMap"]["name"].as_str() {
            config_maps.insert(name.to_string());
        }
        if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
            out.extend(bound_claim(namespace, claim, None, &dir.0));
        }
    }
    for container in spec["containers"].as_array().into_iter().flatten() {
        for env in container["env"].as_array().into_iter().flatten() {
            let key = &env["valueFrom"]["secretKeyRef"];
            if let (Some(name), Some(k)) = (key["name"].as_str(), key["key"].as_str()) {
                secrets
                    .entry(name.into())
                    .or_default()
                    .insert(k.into(), "dGVzdA==".into());
            }
        }
    }
    for (name, data) in secrets {
        out.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": data}));
    }
    for name in config_maps {
        out.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace}}));
    }
    out
}

#[test]
fn the_hubs_platform_and_a_kubespawner_pod_run_through_the_real_controllers() {
    use crate::hub_charts::{check_report, layered_values};
    use crate::support::upstream::kubespawner;
    use serde_json::{json, Value};

    let _one = ONE_NODE.lock().unwrap_or_else(|e| e.into_inner());
    let node = Node::up(false);
    let dir = TempDir::new("hub-volumes");
    node.apply(&tenants_fixture());
    node.install_hubguard("install", &["--set", "nodeAgent.enabled=false"]);

    // The platform's Deployments as z2jh and dask-gateway render them, created as the
    // operator's helm would: their pods come from the deployment and ReplicaSet controllers,
    // each under its own credentials, and are judged as those controllers.
    let recorded =
        std::fs::read_to_string(root().join("tests/fixtures/e2e/tess-private-platform.yaml"))
            .unwrap();
    let mut names = Vec::new();
    for document in recorded.split("\n---\n") {
        let mut deployment: Value = serde_norway::from_str(document).unwrap();
        let spec = &mut deployment["spec"]["template"]["spec"];
        for container in spec["containers"].as_array_mut().unwrap() {
            run_test_image(container);
        }
        let mut objects = referenced_objects("tess-private", spec, &dir);
        deployment["metadata"]["namespace"] = json!("tess-private");
        names.push(deployment["metadata"]["name"].as_str().unwrap().to_string());
        objects.push(deployment);
        apply_json(&node.cluster, &objects);
    }
    for name in &names {
        node.wait(
            &format!("Deployment {name} is not available"),
            Duration::from_secs(120),
            || {
                let replicas = node.kubectl(&[
                    "get",
                    "deployment",
                    name,
                    "-n",
                    "tess-private",
                    "-o",
                    "jsonpath={.status.availableReplicas}/{.spec.replicas}",
                ]);
                replicas
                    .split_once('/')
                    .is_some_and(|(up, want)| up == want)
            },
        );
    }
    eprintln!("tess-private's platform came up through the real controllers: {names:?}");

    // A user's server as the real KubeSpawner builds it, for a name it escapes, created
    // through the API server as the hub: its home claim first, as the hub makes it.
    let values = layered_values("tess-private", "prod");
    let built = kubespawner(&json!({
        "values": values["jupyterhub"],
        "namespace": "tess-private",
        "release": "tess-private",
        "servers": [["1337coder", ""]],
    }));
    let mut pod = built[0]["pod"].clone();
    let claim = &built[0]["pvc"];
    let hub = node.cluster.kubeconfig_for("tess-private", "hub");
    let create_as_hub = |object: &Value| {
        node.cluster
            .kubectl_as(&hub, &["create", "-f", "-"], Some(&object.to_string()))
    };
    let claim_name = claim["metadata"]["name"].as_str().unwrap();
    let home = bound_claim("tess-private", claim_name, Some(claim), &dir.0);
    apply_json(&node.cluster, &home[..1]);
    let out = create_as_hub(claim);
    assert!(
        out.status.success(),
        "the hub's claim: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shared = bound_claim("tess-private", "tess-ffi", None, &dir.0);
    apply_json(&node.cluster, &shared);
    for container in pod["spec"]["containers"].as_array_mut().unwrap() {
        run_test_image(container);
    }
    let expected = check_report(
        "tess-private",
        "system:serviceaccount:tess-private:hub",
        &pod,
    );
    assert_eq!(expected["allowed"], true, "{expected:#}");
    let out = create_as_hub(&pod);
    assert!(
        out.status.success(),
        "the hub's KubeSpawner pod was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let name = pod["metadata"]["name"].as_str().unwrap().to_string();
    let mut node = node;
    node.wait_running("tess-private", &name);
    let labels: Value = serde_json::from_str(&node.kubectl(&[
        "get",
        "pod",
        &name,
        "-n",
        "tess-private",
        "-o",
        "jsonpath={.metadata.labels}",
    ]))
    .unwrap();
    let judged = &expected["objects"][0]["pods"][0];
    assert_eq!(labels["hubguard.dev/class"], judged["class"], "{labels}");
    assert_eq!(labels["hubguard.dev/tenant"], judged["tenant"], "{labels}");
    eprintln!(
        "KubeSpawner's pod {name} runs with its home {claim_name}, recorded as {}'s {} pod",
        judged["tenant"], judged["class"]
    );
}
