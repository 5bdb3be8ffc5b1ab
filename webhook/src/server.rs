//! Serving: the TLS listener (HTTP/1.1 keep-alive and HTTP/2), the operations port, the
//! reload loop for policy and certificate, and the drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::http::{self, AppState};
use crate::managed_tls::ManagedTls;
use crate::metrics::Metrics;
use crate::ops::{self, Health};
use crate::pods::PodDirectory;
use crate::policy_events::{PolicyConfigMap, Reloads};
use crate::tls::{CertStore, TlsError};
use hubguard_daemon::kube_client::cluster_client;
use hubguard_daemon::policy_store::PolicyStore;

/// A client that connects and never finishes its handshake must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Config {
    pub policy: PathBuf,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// How often the policy and certificate files are compared with what is loaded.
    pub reload_interval: Duration,
    /// After the shutdown signal: keep serving, but report not ready, for this long, so the
    /// endpoints controller takes the pod out of the Service first.
    pub shutdown_delay: Duration,
    /// Then: how long in-flight requests get to finish.
    pub drain_timeout: Duration,
    pub kubeconfig: Option<PathBuf>,
    pub allow_all: bool,
    /// Offer HTTP/2 by ALPN; without it clients use HTTP/1.1 keep-alive connections.
    pub http2: bool,
    /// Keep a self-managed CA and serving certificate (written to `tls_cert`/`tls_key`).
    pub managed_tls: Option<ManagedTlsConfig>,
    /// The ConfigMap the policy is mounted from: refused reloads become Events on it.
    pub policy_configmap: Option<PolicyConfigMap>,
    /// Keep the policy's MutatingAdmissionPolicy of this name installed (Kubernetes 1.36+).
    pub mutating_policy: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ManagedTlsConfig {
    pub namespace: String,
    pub secret: String,
    pub names: Vec<String>,
    pub configurations: Vec<String>,
    /// How often the Secret, the files and the caBundles are checked.
    pub interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Policy(#[from] hubguard_daemon::policy_store::StoreError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("self-managed TLS: {0}")]
    ManagedTls(#[from] crate::managed_tls::ManagedTlsError),
    #[error("self-managed TLS needs cluster credentials: {0}")]
    NoCluster(String),
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        #[source]
        error: std::io::Error,
    },
}

/// Runs until `shutdown` resolves, then drains and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let metrics = Arc::new(Metrics::new());
    let client = cluster_client(config.kubeconfig.as_deref()).await;
    let reloads = match (&config.policy_configmap, &client) {
        (Some(configmap), Ok(client)) => {
            // In a pod, HOSTNAME is the pod's name: it says which replica refused.
            let instance = std::env::var("HOSTNAME").unwrap_or_else(|_| "hubguard-webhook".into());
            Reloads::with_events(metrics.clone(), client.clone(), configmap.clone(), instance)
        }
        _ => Reloads::metrics_only(metrics.clone()),
    };
    let policies = Arc::new(match &config.mutating_policy {
        Some(name) => PolicyStore::open_checked(
            &config.policy,
            Arc::new(reloads),
            crate::mutating_policy::reload_check(name.clone()),
        )?,
        None => PolicyStore::open(&config.policy, Arc::new(reloads))?,
    });
    if let Some(name) = &config.mutating_policy {
        let keeper = crate::mutating_policy::MutatingPolicyKeeper {
            client: client.clone().map_err(ServeError::NoCluster)?,
            name: name.clone(),
        };
        let (policies, metrics) = (policies.clone(), metrics.clone());
        let interval = config.reload_interval;
        tokio::spawn(keeper.keep(policies, metrics, interval));
    }
    let managed = match &config.managed_tls {
        Some(m) => {
            let client = client.clone().map_err(ServeError::NoCluster)?;
            let managed = Arc::new(ManagedTls {
                client,
                namespace: m.namespace.clone(),
                secret: m.secret.clone(),
                names: m.names.clone(),
                configurations: m.configurations.clone(),
                cert_path: config.tls_cert.clone(),
                key_path: config.tls_key.clone(),
                check_interval: m.interval,
                rotation: Default::default(),
            });
            // The listener needs a certificate before it can start.
            managed.ensure(&metrics).await?;
            Some((managed, m.interval))
        }
        None => None,
    };
    let certs = Arc::new(CertStore::open(
        &config.tls_cert,
        &config.tls_key,
        metrics.clone(),
    )?);
    let health = Arc::new(Health::default());

    let ops_listener = bind(config.metrics_listen).await?;
    let ops_router = hubguard_daemon::ops::router(Arc::new(ops::WebhookOps {
        metrics: metrics.clone(),
        health: health.clone(),
    }));
    tokio::spawn(async move {
        if let Err(error) = axum::serve(ops_listener, ops_router).await {
            tracing::error!(%error, "the operations port stopped");
        }
    });

    let pods = PodDirectory::new(client);
    let state = Arc::new(AppState::new(
        policies.clone(),
        metrics.clone(),
        pods,
        config.allow_all,
    ));
    let service = TowerToHyperService::new(http::router(state));
    let acceptor = TlsAcceptor::from(Arc::new(certs.server_config(config.http2)));
    let listener = bind(config.listen).await?;

    let reloader = {
        let (policies, certs) = (policies.clone(), certs.clone());
        let interval = config.reload_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // File reads and parsing stay off the serving threads' hot path.
                let (p, c) = (policies.clone(), certs.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    p.reload();
                    c.reload();
                })
                .await;
            }
        })
    };

    let tls_keeper = managed.map(|(managed, interval)| {
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                if let Err(error) = managed.ensure(&metrics).await {
                    tracing::error!(%error, "self-managed TLS check failed; will retry");
                }
            }
        })
    });

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    health.set_serving();
    let loaded = policies.current();
    tracing::info!(
        listen = %config.listen,
        metrics_listen = %config.metrics_listen,
        policy = %loaded.policy.name,
        allow_all = config.allow_all,
        "hubguard webhook serving"
    );

    let connections = Connections {
        tls: acceptor,
        service,
        builder,
    };
    accept_until(&listener, &connections, &graceful, shutdown).await;

    health.set_draining();
    // A replica on its way out keeps its certificate but manages TLS no more: during an
    // uninstall it would otherwise make the Secret again after its owner, the webhook
    // configuration, is gone, and nothing would remove it.
    if let Some(keeper) = &tls_keeper {
        keeper.abort();
    }
    tracing::info!(delay = ?config.shutdown_delay, "shutdown requested: reporting not ready");
    accept_until(
        &listener,
        &connections,
        &graceful,
        tokio::time::sleep(config.shutdown_delay),
    )
    .await;
    drop(listener);
    reloader.abort();
    tracing::info!(
        open_connections = graceful.count(),
        "draining in-flight requests"
    );
    match tokio::time::timeout(config.drain_timeout, graceful.shutdown()).await {
        Ok(()) => tracing::info!("drained; exiting"),
        Err(_) => tracing::warn!(timeout = ?config.drain_timeout, "drain timed out; exiting"),
    }
    Ok(())
}

/// What serves one accepted TCP connection: TLS, then HTTP/1.1 or HTTP/2 by ALPN.
struct Connections {
    tls: TlsAcceptor,
    service: TowerToHyperService<axum::Router>,
    builder: auto::Builder<TokioExecutor>,
}

impl Connections {
    fn spawn(&self, stream: TcpStream, peer: SocketAddr, graceful: &GracefulShutdown) {
        let _ = stream.set_nodelay(true);
        let tls = self.tls.clone();
        let service = self.service.clone();
        let builder = self.builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

async fn accept_until(
    listener: &TcpListener,
    connections: &Connections,
    graceful: &GracefulShutdown,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => connections.spawn(stream, peer, graceful),
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut stop => return,
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|error| ServeError::Listen { addr, error })
}
