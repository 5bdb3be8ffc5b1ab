//! `hubguard`: one binary, one subcommand per job.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod check;
mod logging;
mod node_agent;
mod report;
mod runtime;
mod webhook;

// The admission path is serde work: many small allocations. mimalloc keeps them cheap
// (measured in policies/benches/judge.rs).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "hubguard",
    version,
    about = "Security policy agent for multi-tenant JupyterHub + Dask platforms"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Judge manifests offline, exactly as the admission webhook would for the given requester.
    /// Exit 0: all allowed; 1: something denied; 2: bad usage or input.
    Check {
        /// The policy file.
        #[arg(long)]
        policy: PathBuf,
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: Output,
        /// Judge as this requester (e.g. system:serviceaccount:tess-private:user-alice).
        /// Without it nothing is trusted.
        #[arg(long = "as", value_name = "USERNAME")]
        as_user: Option<String>,
        /// A group of the requester; repeatable. Needs --as. A service account gets the
        /// groups the API server gives it (system:serviceaccounts, ...:NS) without asking.
        #[arg(long = "as-group", value_name = "GROUP", requires = "as_user")]
        as_groups: Vec<String>,
        /// The namespace of objects that name none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Judge the objects as the targets of this action by the requester (as the webhook
        /// judges a DELETE, or an exec into a pod), not as creates.
        #[arg(long, value_enum)]
        action: Option<check::ActionArg>,
        /// Manifest files (YAML or JSON, multi-document, `kind: List`); `-` reads stdin.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Serve admission reviews to the API server over TLS (`/validate`, `/mutate`), with
    /// metrics and health on a plain-HTTP port.
    Webhook(webhook::WebhookArgs),
    /// Block the cloud metadata endpoint and enforce the policy's egress rules per pod class
    /// in the kernel (eBPF on cgroups): this node's pods, or standalone cgroups.
    NodeAgent(node_agent::NodeAgentArgs),
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Refuse a broken policy, naming each bad field. Exit 0: valid; 1: invalid; 2: unreadable.
    Validate { file: PathBuf },
    /// List the rule ids (for a policy's `modes`) with what each enforces.
    Rules,
    /// Print the MutatingAdmissionPolicy (Kubernetes 1.36+) that does `/mutate`'s work in the
    /// API server: what `hubguard webhook --manage-mutating-policy` keeps installed.
    MutatingPolicy {
        file: PathBuf,
        /// The object's name (the chart's binding names it).
        #[arg(long, default_value = "hubguard")]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check {
            policy,
            output,
            as_user,
            as_groups,
            namespace,
            action,
            files,
        } => {
            let requester = as_user
                .map(|username| hubguard_policy::Requester::authenticated(username, as_groups));
            check::run(
                &policy,
                output,
                requester.as_ref(),
                &namespace,
                action.map(check::ActionArg::action),
                &files,
            )
        }
        Command::Webhook(args) => webhook::run(args),
        Command::NodeAgent(args) => node_agent::run(args),
        Command::Policy { command } => match command {
            PolicyCommand::Validate { file } => check::validate(&file),
            PolicyCommand::MutatingPolicy { file, name } => check::mutating_policy(&file, &name),
            PolicyCommand::Rules => {
                for (id, summary) in hubguard_policy::checks::rules() {
                    println!("{id:<26} {summary}");
                }
                ExitCode::SUCCESS
            }
        },
    }
}
