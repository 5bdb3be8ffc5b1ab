//! Brings up a one-node cluster inside a network namespace with no link to the host (see
//! `hubguard_testkit::support::cluster`) and keeps it up until SIGINT, SIGTERM or SIGHUP, then
//! removes everything it made.
//!
//!   hubguard-cluster up --dir DIR [--hubguard PATH] [--netprobe PATH] [--agent-taint]
//!
//! Writes DIR/admin.kubeconfig (the API server through a forwarder on the host's loopback),
//! DIR/pods-cgroup (the kubelet's pod cgroups in the cgroup v2 hierarchy, for the node agent)
//! and, once the node is Ready, DIR/ready. Prints the cluster's cost on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use hubguard_testkit::support::cluster::{Cluster, Options};

fn main() -> ExitCode {
    // Block the stop signals before any thread starts, then wait for one: a signal arriving
    // during start-up is handled after it, by the same tear-down.
    // SAFETY: plain signal-mask calls on a set this function owns.
    let signals = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("hubguard-cluster: {message}");
            eprintln!("usage: hubguard-cluster up --dir DIR [--hubguard PATH] [--netprobe PATH] [--agent-taint]");
            return ExitCode::from(2);
        }
    };
    let dir = options.dir.clone();
    let ready = dir.join("ready");
    let cluster = match Cluster::up(options) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("hubguard-cluster: {error}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!("{}", cluster.cost_report());
    let pods_cgroup = cluster.pods_cgroup_v2();
    if let Err(error) = std::fs::write(dir.join("pods-cgroup"), pods_cgroup.display().to_string()) {
        eprintln!(
            "hubguard-cluster: writing {}/pods-cgroup: {error}",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    if let Err(error) = std::fs::write(&ready, cluster.kubeconfig.display().to_string()) {
        eprintln!("hubguard-cluster: writing {}: {error}", ready.display());
        return ExitCode::FAILURE;
    }
    let mut received = 0;
    // SAFETY: waits on the signal set built above.
    unsafe { libc::sigwait(&signals, &mut received) };
    eprintln!("hubguard-cluster: signal {received}: tearing down");
    drop(cluster);
    ExitCode::SUCCESS
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    if args.next().as_deref() != Some("up") {
        return Err("the only command is 'up'".into());
    }
    let beside_me = |name: &str| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join(name)))
            .unwrap_or_else(|| PathBuf::from(name))
    };
    let mut dir = None;
    let mut options = Options {
        dir: PathBuf::new(),
        hubguard: None,
        netprobe: beside_me("hubguard-netprobe"),
        agent_taint: false,
        network_policy: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value("--dir")?)),
            "--hubguard" => options.hubguard = Some(PathBuf::from(value("--hubguard")?)),
            "--netprobe" => options.netprobe = PathBuf::from(value("--netprobe")?),
            "--agent-taint" => options.agent_taint = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    options.dir = dir.ok_or("--dir is required")?;
    Ok(options)
}
