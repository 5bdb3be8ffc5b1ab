//! `hubguard node-agent`: the eBPF node agent, in a cluster (a DaemonSet) or standalone on a
//! single host whose users live in cgroups.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use hubguard_node_agent::agent::{self, Source};
use hubguard_node_agent::classes::ClassId;
use hubguard_node_agent::removal::DaemonSetRef;

use crate::logging::{self, LogFormat};
use crate::runtime::{serve, terminated};

#[derive(Args)]
pub struct NodeAgentArgs {
    /// The policy file (its egress rules and network settings); re-read when it changes.
    #[arg(long, required_unless_present = "uninstall")]
    policy: Option<PathBuf>,
    /// This node's name: the agent watches the pods bound to it.
    #[arg(long, required_unless_present_any = ["standalone", "uninstall"])]
    node_name: Option<String>,
    /// Address of the plain-HTTP port for `/metrics`, `/healthz`, `/readyz`.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// No Kubernetes: enforce on the cgroups given with --cgroup.
    #[arg(long, requires = "cgroup")]
    standalone: bool,
    /// Standalone: a cgroup (a directory of the cgroup v2 filesystem) and the policy class
    /// whose rules apply to it and to every cgroup created under it later; repeatable.
    #[arg(long, value_name = "PATH=CLASS", requires = "standalone", value_parser = parse_cgroup)]
    cgroup: Vec<(PathBuf, ClassId)>,
    /// The cgroup v2 mount; found from /proc/mounts when not given.
    #[arg(long)]
    cgroup_root: Option<PathBuf>,
    /// The root of the pods' cgroups; `kubepods.slice` or `kubepods` under the mount when not given.
    #[arg(long, conflicts_with = "standalone")]
    pods_cgroup: Option<PathBuf>,
    /// The DaemonSet running this agent, NAMESPACE/NAME: when it is deleted, the agent removes
    /// its programs and maps as it stops; any other stop leaves them enforcing.
    #[arg(long, value_name = "NAMESPACE/NAME", conflicts_with = "standalone")]
    daemonset: Option<DaemonSetRef>,
    /// Where links and maps are pinned (on bpffs); enforcement outlives the agent there.
    #[arg(long, default_value = "/sys/fs/bpf/hubguard")]
    bpffs: PathBuf,
    /// Count and log what would be denied; deny nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove everything hubguard attached and pinned under --bpffs, then exit.
    #[arg(long, conflicts_with_all = ["standalone", "dry_run"])]
    uninstall: bool,
    /// Kubeconfig for watching pods; default: in-cluster credentials.
    #[arg(long, conflicts_with = "standalone")]
    kubeconfig: Option<PathBuf>,
    /// Seconds between checks of the policy file for changes.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    reload_interval: f64,
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
}

fn parse_cgroup(text: &str) -> Result<(PathBuf, ClassId), String> {
    let (path, class) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("'{text}' is not PATH=CLASS"))?;
    let class = ClassId::parse(class)
        .filter(|c| c.pod_class().is_some())
        .ok_or_else(|| format!("'{class}' is not a class: user, dask, platform or other"))?;
    if path.is_empty() {
        return Err(format!("'{text}' names no cgroup"));
    }
    Ok((PathBuf::from(path), class))
}

extern "C" {
    /// mimalloc (the global allocator, linked in by the mimalloc crate): return freed pages.
    fn mi_collect(force: bool);
    /// mimalloc: set one of its options (`mi_option_t` in its `mimalloc.h`).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc.h (v2 and v3 alike, as libmimalloc-sys 0.1.49 ships
/// them).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// mimalloc gives freed pages back to the system only after a delay (10 ms, ×10 for its
/// arenas), so the agent, which frees most of what a sync allocated at once and then sleeps,
/// kept them resident: 29.6 MiB RSS at 10,000 rules, 26-27 MiB purging at once. The agent
/// allocates rarely; the webhook, which allocates on every review, keeps the default.
fn purge_freed_memory_at_once() {
    // SAFETY: mi_option_set only stores the value; a valid option index.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

/// aya parses the kernel's BTF while loading (its loader always does) and frees it at once;
/// without this, mimalloc keeps those ~20 MiB resident for the agent's whole life.
fn return_freed_memory() {
    // SAFETY: mi_collect has no preconditions; it only releases memory mimalloc holds free.
    unsafe { mi_collect(true) }
}

pub fn run(args: NodeAgentArgs) -> ExitCode {
    purge_freed_memory_at_once();
    logging::init(args.log_format);
    if args.uninstall {
        return match hubguard_node_agent::kernel::uninstall(&args.bpffs) {
            Ok(removed) => {
                tracing::info!(pin_dir = %args.bpffs.display(), removed = removed.len(), "uninstalled: programs detached, maps removed");
                for path in removed {
                    println!("removed {path}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(policy) = args.policy else {
        eprintln!("error: --policy is required");
        return ExitCode::from(2);
    };
    let reload_interval = match Duration::try_from_secs_f64(args.reload_interval) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            eprintln!("error: --reload-interval must be a positive number of seconds");
            return ExitCode::from(2);
        }
    };
    for (path, _) in &args.cgroup {
        if !path.is_dir() {
            eprintln!(
                "error: --cgroup {}: no such cgroup directory",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    let source = if args.standalone {
        Source::Standalone {
            cgroups: args.cgroup,
        }
    } else {
        Source::Cluster {
            node_name: args.node_name.unwrap_or_default(),
            kubeconfig: args.kubeconfig,
            pods_cgroup: args.pods_cgroup,
            daemonset: args.daemonset,
        }
    };
    let config = agent::Config {
        policy,
        source,
        cgroup_root: args.cgroup_root,
        pin_dir: args.bpffs,
        metrics_listen: args.metrics_listen,
        dry_run: args.dry_run,
        reload_interval,
        resync_interval: Duration::from_secs(2),
        release_memory: Some(return_freed_memory),
    };
    // Two worker threads are plenty: the work is a watch, a ring buffer and a few map writes.
    serve("the node agent", Some(2), agent::run(config, terminated()))
}
