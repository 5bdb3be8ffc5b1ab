//! The node agent in the kernel, standalone (no Kubernetes): a one-VM hub whose users live
//! in cgroups. Runs as root (CI does); a skip would be a failure, so there is none.
//!
//! Every probe runs inside a network namespace this test creates with only `lo`, carrying
//! the fake metadata server, fake public and private hosts and a fake cluster DNS.

use std::path::Path;

use crate::support::node::{
    assert_probes, assert_probes_as, probe_as, require_root, uninstall, Agent, Hammer, Netns, Pins,
    Servers, TestCgroup,
};
use crate::support::TempDir;

const ADDRESSES: &[&str] = &[
    "169.254.169.254/32", // metadata
    "fd00:ec2::254/128",  // metadata, IPv6
    "198.51.100.10/32",   // a public host
    "2001:db8::10/128",   // a public host, IPv6
    "10.20.0.10/32",      // a private host
    "10.96.0.10/32",      // the cluster DNS
    "198.51.100.53/32",   // some other DNS server
];

const ENDPOINTS: &[&str] = &[
    "tcp:169.254.169.254:80",
    "udp:169.254.169.254:80",
    "tcp:[fd00:ec2::254]:80",
    "udp:[fd00:ec2::254]:80",
    "tcp:198.51.100.10:80",
    "tcp:198.51.100.10:443",
    "tcp:198.51.100.10:22",
    "udp:198.51.100.10:443",
    "tcp:[2001:db8::10]:80",
    "tcp:[2001:db8::10]:443",
    "tcp:[2001:db8::10]:8080",
    "tcp:10.20.0.10:443",
    "udp:10.96.0.10:53",
    "tcp:10.96.0.10:53",
    "udp:198.51.100.53:53",
    "tcp:198.51.100.53:53",
    "tcp:127.0.0.1:8080",
    "udp:127.0.0.1:8053",
    "tcp:[::1]:8080",
];

/// Probe → expected outcome for a `user` cgroup under the tess-public egress rules, and the
/// reason the agent should report for each denial.
const USER_CASES: &[(&str, &str, Option<&str>)] = &[
    ("tcp:169.254.169.254:80", "EPERM", Some("metadata")),
    ("udp:169.254.169.254:80", "EPERM", Some("metadata")),
    ("udpc:169.254.169.254:80", "EPERM", Some("metadata")),
    ("tcp:[fd00:ec2::254]:80", "EPERM", Some("metadata")),
    ("udp:[fd00:ec2::254]:80", "EPERM", Some("metadata")),
    ("tcp:[::ffff:169.254.169.254]:80", "EPERM", Some("metadata")),
    ("udp:[::ffff:169.254.169.254]:80", "EPERM", Some("metadata")),
    ("tcp:198.51.100.10:80", "ok", None),
    ("tcp:198.51.100.10:443", "ok", None),
    ("tcp:[2001:db8::10]:80", "ok", None),
    ("tcp:[2001:db8::10]:443", "ok", None),
    ("tcp:[::ffff:198.51.100.10]:443", "ok", None),
    ("tcp:198.51.100.10:22", "EPERM", Some("port")),
    ("udp:198.51.100.10:443", "EPERM", Some("port")),
    ("tcp:[2001:db8::10]:8080", "EPERM", Some("port")),
    ("tcp:10.20.0.10:443", "EPERM", Some("destination")),
    ("udp:10.96.0.10:53", "ok", None),
    ("udpc:10.96.0.10:53", "ok", None),
    ("tcp:10.96.0.10:53", "ok", None),
    ("udp:198.51.100.53:53", "EPERM", Some("dns")),
    ("tcp:198.51.100.53:53", "EPERM", Some("dns")),
    ("tcp:127.0.0.1:8080", "ok", None),
    ("udp:127.0.0.1:8053", "ok", None),
    ("tcp:[::1]:8080", "ok", None),
    // The unspecified address is this host (the kernel routes it to loopback).
    ("tcp:0.0.0.0:8080", "ok", None),
    ("udpc:0.0.0.0:8053", "ok", None),
    ("tcp:[::]:8080", "ok", None),
];

fn user_cases() -> Vec<(&'static str, &'static str)> {
    USER_CASES.iter().map(|(p, want, _)| (*p, *want)).collect()
}

fn all_reach() -> Vec<(&'static str, &'static str)> {
    USER_CASES.iter().map(|(p, _, _)| (*p, "ok")).collect()
}

fn policy_file(dir: &TempDir) -> std::path::PathBuf {
    let shipped =
        std::fs::read_to_string(crate::support::root().join("policies/tess-public.yaml")).unwrap();
    let policy = shipped.replace(
        "clusterDNS: {service: kube-system/kube-dns}",
        "clusterDNS: {addresses: [10.96.0.10]}",
    );
    assert_ne!(
        policy, shipped,
        "the tess-public preset's clusterDNS line changed"
    );
    let path = dir.path("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    path
}

fn standalone_args<'a>(policy: &'a Path, users: &'a str, pins: &'a Path) -> Vec<&'a str> {
    vec![
        "--standalone",
        "--policy",
        policy.to_str().unwrap(),
        "--cgroup",
        users,
        "--bpffs",
        pins.to_str().unwrap(),
    ]
}

#[test]
fn standalone_agent_enforces_survives_a_kill_and_uninstalls() {
    require_root();
    let ns = Netns::isolated("agent", ADDRESSES);
    let _servers = Servers::start(&ns, ENDPOINTS);
    let cgroups = TestCgroup::new("agent");
    let users = cgroups.child("users");
    let alice = cgroups.child("users/alice");
    let dir = TempDir::new("node-agent-standalone");
    let policy = policy_file(&dir);
    let pin_guard = Pins::new("agent");
    let pins = pin_guard.0.clone();

    // Without the agent every probe reaches its listener: the denials below are the agent's.
    assert_probes(&ns, &alice, &all_reach(), "baseline, no agent");

    let users_arg = format!("{}=user", users.display());
    let agent = Agent::start(&standalone_args(&policy, &users_arg, &pins));
    assert_probes(&ns, &alice, &user_cases(), "alice under the agent");

    // A cgroup created after the agent started is covered from its first socket.
    let late = cgroups.child("users/late");
    assert_probes(
        &ns,
        &late,
        &user_cases(),
        "a cgroup created after the agent",
    );

    // Counters and metrics match the denials of the two runs.
    let denials = |reason: &str| {
        2.0 * USER_CASES
            .iter()
            .filter(|(_, _, r)| *r == Some(reason))
            .count() as f64
    };
    let labels = [("namespace", "standalone"), ("pod_class", "user")];
    let samples = agent.wait_metrics("every denial counted", |m| {
        m.sum("hubguard_metadata_denied_total", &labels) == denials("metadata")
            && m.sum("hubguard_egress_denied_total", &labels)
                == denials("port") + denials("destination") + denials("dns")
    });
    for reason in ["port", "destination", "dns"] {
        let mut with_reason = labels.to_vec();
        with_reason.push(("reason", reason));
        assert_eq!(
            samples.sum("hubguard_egress_denied_total", &with_reason),
            denials(reason),
            "reason {reason}"
        );
    }
    let kernel_total = samples.sum(
        "hubguard_node_agent_kernel_denials_total",
        &[("pod_class", "user")],
    );
    assert_eq!(
        kernel_total,
        denials("metadata") + denials("port") + denials("destination") + denials("dns"),
        "the kernel's own counters"
    );
    assert_eq!(
        samples.sum("hubguard_node_agent_events_lost_total", &[]),
        0.0
    );
    assert_eq!(
        samples.sum("hubguard_egress_policy_pods", &[("pod_class", "user")]),
        1.0
    );
    let log = agent.log();
    assert!(
        log.contains(r#""destination":"169.254.169.254""#)
            && log.contains(r#""reason":"metadata""#),
        "denials are logged with destination and reason:\n{log}"
    );

    // A broken policy is refused and the last good one stays in force.
    std::fs::write(&policy, "apiVersion: hubguard.dev/v1alpha1\nkind: [").unwrap();
    agent.wait_metrics("the reload error", |m| {
        m.sum("hubguard_policy_reload_errors_total", &[]) == 1.0
    });
    assert_probes(&ns, &alice, &user_cases(), "after a broken policy");

    // Killed without warning: enforcement stays, pinned in the kernel.
    agent.kill();
    assert_probes(&ns, &alice, &user_cases(), "after the agent was killed");

    // A new agent adopts the pinned programs rather than attaching a second copy.
    let _ = policy_file(&dir);
    let second = Agent::start(&standalone_args(&policy, &users_arg, &pins));
    assert!(
        second.log().contains(r#""attached":0,"adopted":7"#),
        "the restarted agent adopts the pinned links:\n{}",
        second.log()
    );
    assert_probes(&ns, &alice, &user_cases(), "after a restart");
    second.kill();

    // --uninstall removes everything: every probe reaches its listener again.
    let removed = uninstall(&pins);
    assert!(removed.contains("links"), "{removed}");
    assert!(!pins.exists());
    assert_probes(&ns, &alice, &all_reach(), "after --uninstall");
}

#[test]
fn dry_run_counts_but_denies_nothing() {
    require_root();
    let ns = Netns::isolated("dryrun", ADDRESSES);
    let _servers = Servers::start(&ns, ENDPOINTS);
    let cgroups = TestCgroup::new("dryrun");
    let users = cgroups.child("users");
    let bob = cgroups.child("users/bob");
    let dir = TempDir::new("node-agent-dry-run");
    let policy = policy_file(&dir);
    let pin_guard = Pins::new("dryrun");
    let pins = pin_guard.0.clone();
    let users_arg = format!("{}=user", users.display());
    let mut args = standalone_args(&policy, &users_arg, &pins);
    args.push("--dry-run");
    let agent = Agent::start(&args);

    assert_probes(
        &ns,
        &bob,
        &[
            ("tcp:169.254.169.254:80", "ok"),
            ("tcp:10.20.0.10:443", "ok"),
        ],
        "dry run",
    );
    let samples = agent.wait_metrics("the would-be denials", |m| {
        m.sum("hubguard_metadata_denied_total", &[]) == 1.0
            && m.sum("hubguard_egress_denied_total", &[]) == 1.0
    });
    assert_eq!(samples.sum("hubguard_node_agent_dry_run", &[]), 1.0);
    assert!(agent.log().contains("would be denied (dry run)"));
    drop(agent);
    uninstall(&pins);
}

#[test]
fn bad_input_is_refused_with_a_clear_error() {
    let dir = TempDir::new("node-agent-bad-input");
    let broken = dir.path("broken.yaml");
    std::fs::write(&broken, "apiVersion: hubguard.dev/v1alpha1\nkind: HubguardPolicy\nmetadata: {name: x}\nspec: {classes: {user: {egress: [{name: a, to: {cidrs: [nope]}, ports: [{port: 80}]}]}}}\n").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--standalone",
                "--policy",
                broken.to_str().unwrap(),
                "--cgroup",
                "/tmp=user",
            ],
            "spec.classes.user.egress[0].to.cidrs",
        ),
        (
            &[
                "--standalone",
                "--policy",
                "x.yaml",
                "--cgroup",
                "/tmp=root",
            ],
            "'root' is not a class",
        ),
        (
            &[
                "--standalone",
                "--policy",
                "x.yaml",
                "--cgroup",
                "/does/not/exist=user",
            ],
            "no such cgroup directory",
        ),
        (&["--policy", "x.yaml"], "--node-name"),
    ];
    for (args, message) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubguard"))
            .arg("node-agent")
            .args(*args)
            .args([
                "--bpffs",
                "/sys/fs/bpf/hubguard-test-never-used",
                "--log-format",
                "text",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.contains(message),
            "{args:?}: want {message:?} in:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// Two agents (two hubs' hubguards) attached over the same cgroup, each with its own pins and
/// policy: a connection must pass both, and removing one leaves the other in force.
#[test]
fn two_agents_on_one_cgroup_both_apply() {
    require_root();
    let ns = Netns::isolated("two", ADDRESSES);
    let _servers = Servers::start(&ns, ENDPOINTS);
    let cgroups = TestCgroup::new("two");
    let users = cgroups.child("users");
    let carol = cgroups.child("users/carol");
    let dir = TempDir::new("node-agent-two");
    let web = policy_file(&dir);
    // The second policy opens only HTTPS to the public internet.
    let https_only = dir.path("https-only.yaml");
    std::fs::write(
        &https_only,
        std::fs::read_to_string(&web)
            .unwrap()
            .replace("ports: [{port: 80}, {port: 443}]", "ports: [{port: 443}]"),
    )
    .unwrap();
    let first_pins = Pins::new("two-a");
    let second_pins = Pins::new("two-b");
    let users_arg = format!("{}=user", users.display());
    let first = Agent::start(&standalone_args(&web, &users_arg, &first_pins.0));
    let second = Agent::start(&standalone_args(&https_only, &users_arg, &second_pins.0));
    assert_probes(
        &ns,
        &carol,
        &[
            ("tcp:198.51.100.10:443", "ok"),
            ("tcp:198.51.100.10:80", "EPERM"),
            ("tcp:169.254.169.254:80", "EPERM"),
        ],
        "both agents",
    );
    drop(second);
    uninstall(&second_pins.0);
    assert_probes(
        &ns,
        &carol,
        &[
            ("tcp:198.51.100.10:80", "ok"),
            ("tcp:169.254.169.254:80", "EPERM"),
        ],
        "the first agent alone",
    );
    drop(first);
}

/// Addresses for the ways around the socket hooks: every credential endpoint, and IPv6 forms
/// that carry an IPv4 address (NAT64, IPv4-compatible, 6to4) or cannot be read back (Teredo,
/// local-use NAT64). All on the namespace's `lo`, each with a listener.
const AROUND_ADDRESSES: &[&str] = &[
    "169.254.169.254/32",
    "fd00:ec2::254/128",
    "169.254.170.2/32",
    "169.254.170.23/32",
    "fd00:ec2::23/128",
    "fd20:ce::254/128",
    "100.100.100.200/32",
    "169.254.0.23/32",
    "169.254.169.252/32",     // GKE's Workload Identity metadata server
    "168.63.129.16/32",       // Azure WireServer
    "fd00:c1::a9fe:a9fe/128", // OCI over IPv6
    "192.0.0.192/32",         // OCI Classic
    "fd00:100::100:200/128",  // Alibaba over IPv6
    "fd00:a9fe:a9fe::1/128",  // Akamai (Linode) over IPv6
    "169.254.42.42/32",       // Scaleway
    "fd00:42::42/128",        // Scaleway over IPv6
    "::ffff:0:a9fe:a9fe/128", // IPv4-translated → 169.254.169.254
    "2002:7f00:1::1/128",     // 6to4 → 127.0.0.1, which a relay would carry elsewhere
    "198.51.100.10/32",
    "2001:db8::10/128",
    "10.20.0.10/32",
    "10.96.0.10/32",
    "64:ff9b::a9fe:a9fe/128",   // NAT64 → 169.254.169.254
    "64:ff9b::a14:a/128",       // NAT64 → 10.20.0.10
    "64:ff9b::c633:640a/128",   // NAT64 → 198.51.100.10, public
    "::a9fe:a9fe/128",          // IPv4-compatible → 169.254.169.254
    "2002:a9fe:a9fe::1/128",    // 6to4 → 169.254.169.254
    "2002:a14:a::1/128",        // 6to4 → 10.20.0.10
    "2001:0:a9fe:a9fe::1/128",  // Teredo
    "64:ff9b:1::a9fe:a9fe/128", // local-use NAT64
];

/// Credential endpoints: refused for every class, the one with no egress rules included.
const CREDENTIAL_PROBES: &[&str] = &[
    "tcp:169.254.169.254:80",
    "tcp:[fd00:ec2::254]:80",
    "tcp:169.254.170.2:80",
    "tcp:169.254.170.23:80",
    "tcp:[fd00:ec2::23]:80",
    "tcp:[fd20:ce::254]:80",
    "tcp:100.100.100.200:80",
    "tcp:169.254.0.23:80",
    "tcp:[64:ff9b::a9fe:a9fe]:80",
    "tcp:[::a9fe:a9fe]:80",
    "tcp:[2002:a9fe:a9fe::1]:80",
    "udp:[64:ff9b::a9fe:a9fe]:80",
    "tcp:169.254.169.252:988",
    "tcp:168.63.129.16:80",
    "tcp:168.63.129.16:32526",
    "tcp:[fd00:c1::a9fe:a9fe]:80",
    "tcp:192.0.0.192:80",
    "tcp:[fd00:100::100:200]:80",
    "tcp:[fd00:a9fe:a9fe::1]:80",
    "tcp:169.254.42.42:80",
    "tcp:[fd00:42::42]:80",
    "tcp:[::ffff:0:a9fe:a9fe]:80",
    "tcp:[64:ff9b:1::a9fe:a9fe]:80",
];

/// Forms of private and non-public destinations for the user class (public web only).
const FORM_PROBES: &[(&str, &str)] = &[
    ("tcp:[64:ff9b::a14:a]:443", "EPERM"),
    ("tcp:[2002:a14:a::1]:443", "EPERM"),
    ("tcp:[2001:0:a9fe:a9fe::1]:443", "EPERM"),
    ("tcp:[64:ff9b:1::a9fe:a9fe]:443", "EPERM"),
    ("tcp:[64:ff9b::c633:640a]:443", "ok"),
    ("tcp:[2002:7f00:1::1]:8080", "EPERM"),
];

/// ICMP echo to the metadata, a private and a public address, both families.
const ECHO_TARGETS: &[&str] = &[
    "169.254.169.254",
    "10.20.0.10",
    "198.51.100.10",
    "fd00:ec2::254",
    "2001:db8::10",
];

fn echo_probes(kind: &str) -> Vec<String> {
    ECHO_TARGETS.iter().map(|a| format!("{kind}:{a}")).collect()
}

fn expect_all<'a>(probes: &'a [String], want: &'a str) -> Vec<(&'a str, &'a str)> {
    probes.iter().map(|p| (p.as_str(), want)).collect()
}

#[test]
fn nothing_goes_around_the_socket_hooks() {
    require_root();
    let ns = Netns::isolated("around", AROUND_ADDRESSES);
    let mut endpoints: Vec<String> = CREDENTIAL_PROBES.iter().map(|p| p.to_string()).collect();
    endpoints.extend(FORM_PROBES.iter().map(|(p, _)| p.to_string()));
    endpoints.push("tcp:10.20.0.10:80".into());
    let endpoint_refs: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let _servers = Servers::start(&ns, &endpoint_refs);
    let cgroups = TestCgroup::new("around");
    let users = cgroups.child("users");
    let alice = cgroups.child("users/alice");
    let platform = cgroups.child("platform");
    let service = cgroups.child("platform/service");
    let dir = TempDir::new("node-agent-around");
    let policy = policy_file(&dir);
    let pin_guard = Pins::new("around");
    let pins = pin_guard.0.clone();

    let pings = echo_probes("ping");
    let raws = echo_probes("raw");
    let tcp: Vec<(&str, &str)> = endpoint_refs.iter().map(|p| (*p, "ok")).collect();

    // Without the agent every probe reaches its listener (or the kernel's echo reply), as an
    // unprivileged uid (ICMP echo sockets) and as root (raw sockets too).
    assert_probes(&ns, &alice, &tcp, "baseline, no agent");
    assert_probes_as(
        &ns,
        &alice,
        Some(1000),
        &expect_all(&pings, "ok"),
        "baseline ping, uid 1000",
    );
    assert_probes(
        &ns,
        &alice,
        &expect_all(&pings, "ok"),
        "baseline ping, root",
    );
    assert_probes(&ns, &alice, &expect_all(&raws, "ok"), "baseline raw, root");

    let users_arg = format!("{}=user", users.display());
    let platform_arg = format!("{}=platform", platform.display());
    let mut args = standalone_args(&policy, &users_arg, &pins);
    args.extend(["--cgroup", platform_arg.as_str()]);
    let agent = Agent::start(&args);

    // The user class: no echo or raw socket is even created, unprivileged or not.
    assert_probes_as(
        &ns,
        &alice,
        Some(1000),
        &expect_all(&pings, "EPERM"),
        "user ping, uid 1000",
    );
    assert_probes(
        &ns,
        &alice,
        &expect_all(&pings, "EPERM"),
        "user ping, CAP_NET_RAW",
    );
    assert_probes(
        &ns,
        &alice,
        &expect_all(&raws, "EPERM"),
        "user raw, CAP_NET_RAW",
    );
    // Every credential endpoint and every form that carries one, for the user class and for
    // the platform class, which has no egress rules at all.
    let refused: Vec<(&str, &str)> = CREDENTIAL_PROBES.iter().map(|p| (*p, "EPERM")).collect();
    assert_probes(&ns, &alice, &refused, "credential endpoints, user");
    assert_probes(&ns, &service, &refused, "credential endpoints, platform");
    assert_probes(&ns, &alice, FORM_PROBES, "IPv4 inside IPv6, user");
    // The platform class is not egress-filtered: anything else, and ICMP, goes; but no echo
    // reaches a credential endpoint, through an echo socket or a raw one (the packet layer).
    assert_probes(
        &ns,
        &service,
        &[
            ("tcp:10.20.0.10:80", "ok"),
            ("tcp:[64:ff9b::a14:a]:443", "ok"),
        ],
        "platform elsewhere",
    );
    // (An IPv6 echo socket's send does not return the drop: that echo just gets no reply.)
    let credential_echo =
        |probe: &str| probe.contains("169.254.169.254") || probe.contains("fd00:ec2::254");
    for (kind, probes) in [("ping", &pings), ("raw", &raws)] {
        let probes: Vec<&str> = probes.iter().map(String::as_str).collect();
        let outcomes = probe_as(&ns, &service, None, &probes);
        for probe in probes {
            let outcome = outcomes.get(probe).map(String::as_str).unwrap_or("");
            assert_eq!(
                outcome == "ok",
                !credential_echo(probe),
                "platform {kind}: {probe}: {outcome}"
            );
        }
    }

    let metrics = agent.metrics();
    assert!(
        metrics.sum(
            "hubguard_node_agent_kernel_denials_total",
            &[("pod_class", "user"), ("reason", "socket")]
        ) >= 15.0,
        "socket refusals counted"
    );
    drop(agent);
    uninstall(&pins);
}

/// What the packet layer judges that the socket hooks cannot: a UDP connect() sends nothing
/// (programs probe routes with it), so it is no denial, but the datagram after it is; UDP-Lite
/// runs no connect hook at all; source routing sends the packet to another hop than the one
/// the hook judged; a class that may open raw sockets still reaches no credential endpoint
/// through one (above). Each refusal is reported as the packet layer's.
#[test]
fn the_packet_layer_judges_what_the_socket_hooks_let_through() {
    require_root();
    let ns = Netns::isolated("packet", ADDRESSES);
    let endpoints = [
        "udp:198.51.100.10:80",
        "udp:10.20.0.10:80",
        "udplite:198.51.100.10:443",
        "udplite:169.254.169.254:80",
        "udplite:10.20.0.10:80",
    ];
    let _servers = Servers::start(&ns, &endpoints);
    let cgroups = TestCgroup::new("packet");
    let users = cgroups.child("users");
    let alice = cgroups.child("users/alice");
    let platform = cgroups.child("platform");
    let service = cgroups.child("platform/service");
    let dir = TempDir::new("node-agent-packet");
    let policy = policy_file(&dir);
    let pin_guard = Pins::new("packet");
    let pins = pin_guard.0.clone();

    let mut baseline: Vec<(&str, &str)> = endpoints.iter().map(|e| (*e, "ok")).collect();
    baseline.push(("udpc:198.51.100.10:80", "ok"));
    assert_probes(&ns, &alice, &baseline, "baseline, no agent");
    // A datagram to a host the platform class reaches, its packet routed through the metadata
    // address first. Without the agent it is sent (where it goes next is the network's affair).
    let source_routed = [
        "lsrr:169.254.169.254:10.20.0.10:80",
        "srh:[fd00:ec2::254]:[2001:db8::10]:80",
    ];
    let sent = probe_as(&ns, &service, None, &source_routed);
    assert!(
        sent.len() == 2
            && sent
                .values()
                .all(|o| o != "EPERM" && !o.contains("setting the route")),
        "source routing, no agent: {sent:?}"
    );

    let users_arg = format!("{}=user", users.display());
    let platform_arg = format!("{}=platform", platform.display());
    let mut args = standalone_args(&policy, &users_arg, &pins);
    args.extend(["--cgroup", platform_arg.as_str()]);
    let agent = Agent::start(&args);

    // Route probes: connect() succeeds where no packet could go, except to a credential
    // endpoint; and none of them is a denial.
    let route_probes = [
        ("route:198.51.100.10:80", "ok"),
        ("route:10.20.0.10:80", "ok"),
        ("route:[2001:db8::10]:80", "ok"),
    ];
    assert_probes(&ns, &alice, &route_probes, "route probes, user");
    assert_probes(
        &ns,
        &alice,
        &[("route:169.254.169.254:80", "EPERM")],
        "a route probe to the metadata address",
    );
    let samples = agent.wait_metrics("the metadata route probe", |m| {
        m.sum("hubguard_metadata_denied_total", &[]) == 1.0
    });
    assert_eq!(
        samples.sum("hubguard_egress_denied_total", &[]),
        0.0,
        "route probes are no denials"
    );

    // What is sent after them is judged, packet by packet, as the socket hooks would have.
    assert_probes(
        &ns,
        &alice,
        &[
            ("udpc:198.51.100.10:80", "EPERM"),
            ("udpc:10.20.0.10:80", "EPERM"),
            ("udplite:198.51.100.10:443", "EPERM"),
            ("udplite:169.254.169.254:80", "EPERM"),
            ("udplite:10.20.0.10:80", "EPERM"),
        ],
        "datagrams after a connect, user",
    );
    // The platform class has no egress rules: UDP-Lite goes, except to a credential endpoint.
    assert_probes(
        &ns,
        &service,
        &[
            ("udplite:10.20.0.10:80", "ok"),
            ("udplite:198.51.100.10:443", "ok"),
            ("udplite:169.254.169.254:80", "EPERM"),
        ],
        "UDP-Lite, platform",
    );
    // The sendmsg hook judged the final address, which the platform class reaches; the packet
    // goes to the metadata address first.
    let refused: Vec<(&str, &str)> = source_routed.iter().map(|p| (*p, "EPERM")).collect();
    assert_probes(&ns, &service, &refused, "source routing, platform");
    // A class with egress rules may not set options that name hops at all: refused at
    // setsockopt, before anything is sent.
    assert_probes(&ns, &alice, &refused, "source routing, user");
    // Sockets of other families meet no hook: a packet socket needs CAP_NET_RAW, which the
    // restricted level drops (here: root has it, a uid without capabilities does not). On a
    // node, the runtime's RuntimeDefault seccomp profile refuses vsock (tests/real_node.rs);
    // standalone, systemd's RestrictAddressFamilies= does (docs/node-agent.md).
    assert_probes(
        &ns,
        &alice,
        &[("family:packet", "ok")],
        "a packet socket, root (a limit)",
    );
    assert_probes_as(
        &ns,
        &alice,
        Some(1000),
        &[("family:packet", "EPERM")],
        "a packet socket, no capabilities",
    );
    let samples = agent.wait_metrics("the packet layer's refusals", |m| {
        m.sum("hubguard_metadata_denied_total", &[]) == 5.0
            && m.sum("hubguard_egress_denied_total", &[("pod_class", "user")]) == 6.0
    });
    assert_eq!(
        samples.sum(
            "hubguard_egress_denied_total",
            &[("pod_class", "user"), ("reason", "option")]
        ),
        2.0,
        "the options refused at setsockopt"
    );
    assert_eq!(
        samples.sum("hubguard_node_agent_events_lost_total", &[]),
        0.0
    );
    let log = agent.log();
    let packet_layer = log
        .lines()
        .filter(|l| l.contains("egress denied") && l.contains(r#""layer":"packet""#))
        .count();
    assert_eq!(
        packet_layer, 8,
        "the packet layer's denials are logged as its own:\n{log}"
    );
    drop(agent);
    uninstall(&pins);
}

/// Rewrites `path` whole (a rename): a reload never reads half a file.
fn replace_file(path: &Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// A reload swaps the kernel's rules whole: a connect sees the old policy or the new, never a
/// mix. Two policies both refuse 10.20.0.10 (one by the private carve-out under the public
/// web, one by having no public web) and both allow the cluster DNS; each has 4,000 entries of
/// its own, so that a reload writes for milliseconds. Connects hammer both addresses through
/// the swaps. Then a policy too big for a rule set is refused whole and the last one stays.
#[test]
fn policy_swaps_are_whole_and_a_policy_that_does_not_fit_is_refused() {
    require_root();
    let ns = Netns::isolated("swap", ADDRESSES);
    let _servers = Servers::start(&ns, ENDPOINTS);
    let cgroups = TestCgroup::new("swap");
    let users = cgroups.child("users");
    let dave = cgroups.child("users/dave");
    let dir = TempDir::new("node-agent-swap");
    let policy = policy_file(&dir);
    let shipped = std::fs::read_to_string(&policy).unwrap();
    let web_rule = "        - name: public-web\n          to: {cidrs: [0.0.0.0/0, \"::/0\"], except: [private]}\n          ports: [{port: 80}, {port: 443}]\n";
    assert!(
        shipped.contains(web_rule),
        "the tess-public preset's public-web rule changed"
    );
    let many = |count: usize, port: u16| {
        let cidrs: Vec<String> = (0..count)
            .map(|i| format!("198.18.{}.{}/32", i / 256, i % 256))
            .collect();
        format!(
            "        - name: many\n          to: {{cidrs: [{}]}}\n          ports: [{{port: {port}}}]\n",
            cidrs.join(", ")
        )
    };
    let with_web = shipped.replace(web_rule, &format!("{web_rule}{}", many(4000, 8443)));
    let without_web = shipped.replace(web_rule, &many(4000, 8444));
    replace_file(&policy, &with_web);
    let pin_guard = Pins::new("swap");
    let users_arg = format!("{}=user", users.display());
    let agent = Agent::start(&standalone_args(&policy, &users_arg, &pin_guard.0));

    let refused = "tcp:10.20.0.10:443";
    let allowed = "tcp:10.96.0.10:53";
    let public = "tcp:198.51.100.10:443";
    assert_probes(
        &ns,
        &dave,
        &[(refused, "EPERM"), (allowed, "ok"), (public, "ok")],
        "the policy with the public web",
    );
    let swaps =
        |m: &crate::support::metrics::Samples| m.sum("hubguard_node_agent_rule_swaps_total", &[]);
    let mut applied = swaps(&agent.metrics());
    const HAMMER_SECONDS: u32 = 15;
    let started = std::time::Instant::now();
    let hammers = [
        Hammer::start(&ns, &dave, refused, HAMMER_SECONDS),
        Hammer::start(&ns, &dave, allowed, HAMMER_SECONDS),
    ];
    let mut reloads = 0;
    while started.elapsed() < std::time::Duration::from_secs(u64::from(HAMMER_SECONDS) - 2) {
        let next = if reloads % 2 == 0 {
            &without_web
        } else {
            &with_web
        };
        replace_file(&policy, next);
        reloads += 1;
        agent.wait_metrics("the reload swapped", |m| swaps(m) > applied);
        applied = swaps(&agent.metrics());
    }
    let reloading = started.elapsed();
    let [refused_tally, allowed_tally] = hammers.map(Hammer::finish);
    eprintln!("{reloads} reloads in {reloading:?}; {refused}: {refused_tally:?}; {allowed}: {allowed_tally:?}");
    assert!(reloads >= 6, "only {reloads} reloads in the window");
    assert!(
        refused_tally.keys().all(|outcome| outcome == "EPERM"),
        "{refused} got through during a reload: {refused_tally:?}"
    );
    assert!(
        allowed_tally.keys().all(|outcome| outcome == "ok"),
        "{allowed} was refused during a reload: {allowed_tally:?}"
    );

    // More entries than a rule set holds: refused whole, the last policy stays.
    if reloads % 2 == 1 {
        // The last reload took the public web away: give it back.
        replace_file(&policy, &with_web);
        agent.wait_metrics("the last swap", |m| swaps(m) > applied);
    }
    let errors = agent
        .metrics()
        .sum("hubguard_policy_reload_errors_total", &[]);
    replace_file(
        &policy,
        &shipped.replace(web_rule, &format!("{web_rule}{}", many(33_000, 8443))),
    );
    agent.wait_metrics("the oversized policy refused", |m| {
        m.sum("hubguard_policy_reload_errors_total", &[]) > errors
    });
    let log = agent.log();
    assert!(
        log.contains("v4_rules") && log.contains("32768"),
        "the refusal names the map and its size:\n{}",
        &log[log.len().saturating_sub(3000)..]
    );
    assert_probes(
        &ns,
        &dave,
        &[(refused, "EPERM"), (allowed, "ok"), (public, "ok")],
        "after the oversized policy",
    );
    drop(agent);
    uninstall(&pin_guard.0);
}

/// An attach point removed and made again (a standalone hub's user slice, or kubelet's pods
/// tree) is a new cgroup with no programs on it. The agent attaches them again; until it has,
/// it is not ready and says which attach point is unguarded.
#[test]
fn a_recreated_attach_point_is_guarded_again() {
    require_root();
    let ns = Netns::isolated("reattach", ADDRESSES);
    let _servers = Servers::start(&ns, ENDPOINTS);
    let cgroups = TestCgroup::new("reattach");
    let users = cgroups.child("users");
    let erin = cgroups.child("users/erin");
    let dir = TempDir::new("node-agent-reattach");
    let policy = policy_file(&dir);
    let pin_guard = Pins::new("reattach");
    let users_arg = format!("{}=user", users.display());
    let agent = Agent::start(&standalone_args(&policy, &users_arg, &pin_guard.0));
    assert_probes(&ns, &erin, &user_cases(), "before");

    let point = users.display().to_string();
    let guarded = |m: &crate::support::metrics::Samples| {
        m.sum(
            "hubguard_node_agent_attach_point_guarded",
            &[("attach_point", point.as_str())],
        )
    };
    assert_eq!(guarded(&agent.metrics()), 1.0);
    let ready = || {
        crate::support::http_get(agent.metrics_addr, "/readyz")
            .unwrap()
            .0
    };
    std::fs::remove_dir(&erin).unwrap();
    std::fs::remove_dir(&users).unwrap();
    agent.wait_metrics("the attach point unguarded", |m| guarded(m) == 0.0);
    assert_eq!(ready(), 503, "not ready while an attach point is unguarded");

    std::fs::create_dir(&users).unwrap();
    let made = std::time::Instant::now();
    std::fs::create_dir(&erin).unwrap();
    let samples = agent.wait_metrics("the attach point guarded again", |m| guarded(m) == 1.0);
    eprintln!(
        "guarded again {:?} after the cgroup was made",
        made.elapsed()
    );
    assert_eq!(
        samples.sum("hubguard_node_agent_reattached_total", &[]),
        1.0
    );
    assert_eq!(ready(), 200);
    assert_probes(&ns, &erin, &user_cases(), "after attaching again");
    assert!(
        agent.log().contains("attached again"),
        "the re-attach is logged:\n{}",
        agent.log()
    );
    drop(agent);
    uninstall(&pin_guard.0);
}
