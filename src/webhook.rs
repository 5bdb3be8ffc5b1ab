//! `hubguard webhook`: the admission webhook server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::logging::{self, LogFormat};
use crate::runtime::{serve, terminated};

#[derive(Args)]
pub struct WebhookArgs {
    /// The policy file; re-read when it changes (a mounted ConfigMap).
    #[arg(long)]
    policy: PathBuf,
    /// PEM certificate chain served on the TLS port; re-read when it changes.
    #[arg(long)]
    tls_cert: PathBuf,
    /// PEM private key of the certificate; re-read when it changes.
    #[arg(long)]
    tls_key: PathBuf,
    /// Address of the TLS port (`/validate`, `/mutate`).
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Address of the plain-HTTP operations port (`/metrics`, `/healthz`, `/readyz`).
    #[arg(long, default_value = "0.0.0.0:9090")]
    metrics_listen: SocketAddr,
    /// Seconds between checks of the policy and certificate files for changes.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    reload_interval: f64,
    /// Seconds to keep serving, while reporting not ready, after SIGTERM.
    #[arg(long, default_value_t = 0.0, value_name = "SECONDS")]
    shutdown_delay: f64,
    /// Seconds in-flight requests get to finish after that.
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    drain_timeout: f64,
    /// Kubeconfig for reading pods (exec/attach checks); default: in-cluster credentials.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Self-managed TLS: keep a CA and serving certificate in this Secret (NAMESPACE/NAME),
    /// renewed before expiry and written to --tls-cert / --tls-key.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    manage_tls_secret: Option<String>,
    /// A DNS name or IP address the self-managed certificate is valid for; repeatable.
    #[arg(long, value_name = "NAME", requires = "manage_tls_secret")]
    manage_tls_name: Vec<String>,
    /// A Mutating/ValidatingWebhookConfiguration whose caBundle is kept equal to the
    /// self-managed CA; repeatable.
    #[arg(long, value_name = "NAME", requires = "manage_tls_secret")]
    manage_webhook_configuration: Vec<String>,
    /// Seconds between checks of the self-managed Secret, files and caBundles (three reads of
    /// the API; short, so that recreated webhook configurations get their caBundle at once).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    manage_tls_interval: f64,
    /// The ConfigMap the policy file is mounted from (NAMESPACE/NAME): a refused reload is
    /// also recorded as a Warning Event on it.
    #[arg(long, value_name = "NAMESPACE/NAME")]
    policy_configmap: Option<hubguard_webhook::policy_events::PolicyConfigMap>,
    /// Keep the MutatingAdmissionPolicy of this name, generated from the policy, installed
    /// (Kubernetes 1.36+): the API server then sets the defaults itself and `/mutate` is not
    /// called. A policy whose mutation cannot be generated is refused.
    #[arg(long, value_name = "NAME")]
    manage_mutating_policy: Option<String>,
    /// Offer HTTP/2 to clients (ALPN); `--http2 false` leaves them HTTP/1.1 keep-alive.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    http2: bool,
    /// Benchmark baseline only: answer every review "allowed" without judging it.
    #[arg(long, hide = true)]
    allow_all: bool,
}

fn seconds(name: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{name}: {value} is not a number of seconds"))
}

pub fn run(args: WebhookArgs) -> ExitCode {
    logging::init(args.log_format);
    let durations = (|| {
        Ok::<_, String>((
            seconds("reload-interval", args.reload_interval)?,
            seconds("shutdown-delay", args.shutdown_delay)?,
            seconds("drain-timeout", args.drain_timeout)?,
        ))
    })();
    let (reload_interval, shutdown_delay, drain_timeout) = match durations {
        Ok(d) if !d.0.is_zero() => d,
        Ok(_) => {
            eprintln!("error: --reload-interval must be more than 0");
            return ExitCode::from(2);
        }
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let managed_tls = match args.manage_tls_secret.as_deref() {
        None => None,
        Some(spec) => {
            let Some((namespace, secret)) = spec
                .split_once('/')
                .filter(|(n, s)| !n.is_empty() && !s.is_empty())
            else {
                eprintln!("error: --manage-tls-secret {spec}: expected NAMESPACE/NAME");
                return ExitCode::from(2);
            };
            if args.manage_tls_name.is_empty() {
                eprintln!("error: --manage-tls-secret needs at least one --manage-tls-name");
                return ExitCode::from(2);
            }
            let interval = match seconds("manage-tls-interval", args.manage_tls_interval) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    eprintln!("error: --manage-tls-interval must be a positive number of seconds");
                    return ExitCode::from(2);
                }
            };
            Some(hubguard_webhook::ManagedTlsConfig {
                namespace: namespace.to_string(),
                secret: secret.to_string(),
                names: args.manage_tls_name,
                configurations: args.manage_webhook_configuration,
                interval,
            })
        }
    };
    let config = hubguard_webhook::Config {
        policy: args.policy,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        reload_interval,
        shutdown_delay,
        drain_timeout,
        kubeconfig: args.kubeconfig,
        allow_all: args.allow_all,
        http2: args.http2,
        managed_tls,
        policy_configmap: args.policy_configmap,
        mutating_policy: args.manage_mutating_policy,
    };
    serve(
        "the webhook",
        None,
        hubguard_webhook::run(config, terminated()),
    )
}
