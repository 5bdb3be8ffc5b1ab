//! Brings up a one-node cluster inside a network namespace with no link to the host (see
//! `hubguard_testkit::support::cluster`) and keeps it up until SIGINT, SIGTERM or SIGHUP, then
//! removes everything it made.
//!
//!   hubguard-cluster up --dir DIR [--hubguard PATH] [--netprobe PATH] [--agent-taint] [--hub]
//!
//! Writes DIR/admin.kubeconfig (the API server through a forwarder on the host's loopback),
//! DIR/pods-cgroup (the kubelet's pod cgroups in the cgroup v2 hierarchy, for the node agent)
//! and, once the node is Ready, DIR/ready. Prints the cluster's cost on stderr.
//!
//! With --hub, once DIR/serve-hub exists (made by whoever installs hubguard first, so every
//! platform and user pod is judged), serves tess-private on the node (`support::hub`) and
//! writes DIR/hub-url: the hub's proxy through a forwarder on the host's loopback.

use std::path::PathBuf;
use std::process::ExitCode;

use std::net::SocketAddr;

use hubguard_testkit::support::cluster::{Cluster, Options};
use hubguard_testkit::support::hub;

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
    let (options, serve_hub) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("hubguard-cluster: {message}");
            eprintln!("usage: hubguard-cluster up --dir DIR [--hubguard PATH] [--netprobe PATH] [--agent-taint] [--hub]");
            return ExitCode::from(2);
        }
    };
    let dir = options.dir.clone();
    let netprobe = options.netprobe.clone();
    let ready = dir.join("ready");
    let mut cluster = match Cluster::up(options) {
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
    if serve_hub {
        let asked = dir.join("serve-hub");
        // SAFETY: a zeroed timespec is valid; the wait uses the set built above.
        let mut wait = unsafe { std::mem::zeroed::<libc::timespec>() };
        wait.tv_nsec = 200_000_000;
        while !asked.exists() {
            // SAFETY: waits on the signal set built above, for at most `wait`.
            let signal = unsafe { libc::sigtimedwait(&signals, std::ptr::null_mut(), &wait) };
            if signal > 0 {
                eprintln!("hubguard-cluster: signal {signal}: tearing down");
                return ExitCode::SUCCESS;
            }
        }
        let volumes = dir.join("volumes");
        if let Err(error) = std::fs::create_dir_all(&volumes) {
            eprintln!("hubguard-cluster: creating {}: {error}", volumes.display());
            return ExitCode::FAILURE;
        }
        let proxy = hub::serve(&mut cluster, &hub::TESS_PRIVATE, &netprobe, &volumes);
        let target: SocketAddr = match format!("{proxy}:80").parse() {
            Ok(target) => target,
            Err(error) => {
                eprintln!("hubguard-cluster: the proxy's address {proxy}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let url = match cluster.forward(target) {
            Ok(port) => format!("http://127.0.0.1:{port}/"),
            Err(error) => {
                eprintln!("hubguard-cluster: forwarding to the hub's proxy: {error}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(error) = std::fs::write(dir.join("hub-url"), &url) {
            eprintln!(
                "hubguard-cluster: writing {}/hub-url: {error}",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    }
    // SAFETY: waits on the signal set built above.
    unsafe { libc::sigwait(&signals, &mut received) };
    eprintln!("hubguard-cluster: signal {received}: tearing down");
    drop(cluster);
    ExitCode::SUCCESS
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<(Options, bool), String> {
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
    let mut serve_hub = false;
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
            "--hub" => serve_hub = true,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    options.dir = dir.ok_or("--dir is required")?;
    Ok((options, serve_hub))
}
