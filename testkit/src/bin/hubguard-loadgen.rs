//! Load generator for the webhook: many keep-alive TLS connections sending the same
//! AdmissionReview, either as fast as the server answers or at a fixed total rate.
//!
//!   hubguard-loadgen certs --dir DIR                 a CA and a serving certificate for 127.0.0.1
//!   hubguard-loadgen run --addr A --ca F --object F  drive the server, print one JSON summary
//!
//! At a fixed rate, latency is measured from when each request was due, not from when it was
//! sent, so a stalled server shows up in the percentiles instead of hiding (coordinated omission).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use clap::{Parser, Subcommand};
use hubguard_testkit::certs::Authority;
use hubguard_testkit::https_client::{HttpsClient, Protocol};
use hubguard_testkit::review::ReviewRequest;

#[derive(Parser)]
#[command(name = "hubguard-loadgen")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write ca.crt, tls.crt and tls.key (valid for localhost and 127.0.0.1) into DIR.
    Certs {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Send reviews and print {"reviews_per_sec", "p50_us", "p99_us", ...} as one JSON line.
    Run(RunArgs),
    /// Create pods through a Kubernetes API server and print {"creates_per_sec", "p50_us",
    /// "p99_us", ...}: admission measured as a user meets it.
    Apiserver(ApiserverArgs),
}

#[derive(clap::Args)]
struct ApiserverArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long)]
    namespace: String,
    /// The pod to create (YAML); its name and namespace are replaced.
    #[arg(long)]
    object: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pods: usize,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Pods are named PREFIX-N.
    #[arg(long, default_value = "bench")]
    name_prefix: String,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long)]
    addr: SocketAddr,
    /// CA certificate (PEM) the server's certificate must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// The object under review (YAML or JSON).
    #[arg(long)]
    object: PathBuf,
    #[arg(long, default_value = "/validate")]
    path: String,
    #[arg(long, default_value = "system:serviceaccount:tess-private:hub")]
    user: String,
    #[arg(long, default_value = "tess-private")]
    namespace: String,
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds to send for (the run also stops at --max-requests).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    #[arg(long, default_value_t = 2_000_000)]
    max_requests: u64,
    /// Total reviews per second across all connections; 0 sends as fast as answers come.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds of traffic before measuring starts (connections and caches warm up).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    #[arg(long)]
    http2: bool,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Certs { dir } => match write_certs(&dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Apiserver(args) => block_on(apiserver(args)),
        Command::Run(args) => block_on(run(args)),
    }
}

fn block_on(work: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_certs(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ca = Authority::new("hubguard-loadgen-ca").map_err(|e| e.to_string())?;
    let serving = ca
        .issue(&["localhost", "127.0.0.1"])
        .map_err(|e| e.to_string())?;
    for (name, text) in [
        ("ca.crt", &ca.cert_pem),
        ("tls.crt", &serving.cert_pem),
        ("tls.key", &serving.key_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

struct ConnectionResult {
    latencies_us: Vec<u32>,
    errors: u64,
    /// Every answered request, warm-up included (for CPU-per-review accounting).
    answered: u64,
}

async fn run(args: RunArgs) -> Result<(), String> {
    let ca = std::fs::read(&args.ca).map_err(|e| format!("{}: {e}", args.ca.display()))?;
    let text = std::fs::read_to_string(&args.object)
        .map_err(|e| format!("{}: {e}", args.object.display()))?;
    let object: serde_json::Value =
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", args.object.display()))?;
    let body = Bytes::from(
        serde_json::to_vec(
            &ReviewRequest {
                uid: "6f1c2c1e-loadgen",
                object: Some(&object),
                username: &args.user,
                namespace: &args.namespace,
                ..ReviewRequest::default()
            }
            .to_json(),
        )
        .expect("JSON"),
    );
    let protocol = if args.http2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let client =
        HttpsClient::new(args.addr, "127.0.0.1", &ca, protocol).map_err(|e| e.to_string())?;
    let connections = args.connections.max(1);
    let warmup = Duration::from_secs_f64(args.warmup);
    let duration = Duration::from_secs_f64(args.duration);
    let per_connection_max = args.max_requests / connections as u64 + 1;
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / args.rate));

    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + warmup;
    let stop_at = measure_from + duration;
    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let client = client.clone();
        let body = body.clone();
        let path = args.path.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = ConnectionResult {
                latencies_us: Vec::new(),
                errors: 0,
                answered: 0,
            };
            let mut connection = match client.connect().await {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("connection {index}: {e}");
                    result.errors += 1;
                    return result;
                }
            };
            // Spread the connections' schedules over one interval.
            let offset = interval.map_or(Duration::ZERO, |i| i.mul_f64(index as f64 / connections as f64));
            let mut due = start + offset;
            let mut previous_done = start;
            tokio::time::sleep_until(start.into()).await;
            for _ in 0..per_connection_max {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                } else {
                    due = Instant::now();
                }
                if due >= stop_at {
                    break;
                }
                // Late because the previous answer came after this request was due: that wait
                // is the server's and counts. Late only because the timer fired late (tokio's
                // timers tick in milliseconds): it does not.
                let sent = Instant::now();
                let clock_from = if previous_done > due { due } else { sent };
                let outcome = connection.post(&path, body.clone()).await;
                let done = Instant::now();
                previous_done = done;
                result.answered += u64::from(outcome.is_ok());
                let ok = matches!(&outcome, Ok((status, body)) if status.is_success() && contains(body, b"6f1c2c1e-loadgen"));
                if due >= measure_from {
                    if ok {
                        let micros = done.duration_since(clock_from).as_micros().min(u32::MAX as u128) as u32;
                        result.latencies_us.push(micros);
                    } else {
                        result.errors += 1;
                    }
                }
                if !ok && connection.is_closed() {
                    match client.connect().await {
                        Ok(c) => connection = c,
                        Err(_) => break,
                    }
                }
                if let Some(interval) = interval {
                    due += interval;
                }
            }
            result
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut answered = 0;
    for task in tasks {
        let result = task.await.map_err(|e| e.to_string())?;
        latencies.extend(result.latencies_us);
        errors += result.errors;
        answered += result.answered;
    }
    let measured = Instant::now()
        .min(stop_at)
        .saturating_duration_since(measure_from);
    latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let index = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[index]
    };
    let summary = serde_json::json!({
        "requests": latencies.len(),
        "errors": errors,
        "answered_total": answered,
        "seconds": measured.as_secs_f64(),
        "reviews_per_sec": latencies.len() as f64 / measured.as_secs_f64().max(1e-9),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": latencies.last().copied().unwrap_or(0),
        "connections": connections,
        "target_rate": args.rate,
        "protocol": if args.http2 { "h2" } else { "http/1.1" },
    });
    println!("{summary}");
    if errors > 0 {
        return Err(format!("{errors} requests failed"));
    }
    Ok(())
}

async fn apiserver(args: ApiserverArgs) -> Result<(), String> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    let text = std::fs::read_to_string(&args.object)
        .map_err(|e| format!("{}: {e}", args.object.display()))?;
    let template: Pod =
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", args.object.display()))?;
    let client = hubguard_daemon::kube_client::cluster_client(Some(&args.kubeconfig)).await?;
    let api: Api<Pod> = Api::namespaced(client, &args.namespace);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (api, next, template, namespace) = (
            api.clone(),
            next.clone(),
            template.clone(),
            args.namespace.clone(),
        );
        let total = args.pods;
        let prefix = args.name_prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if index >= total {
                    break;
                }
                let mut pod = template.clone();
                pod.metadata.name = Some(format!("{prefix}-{index}"));
                pod.metadata.namespace = Some(namespace.clone());
                let sent = Instant::now();
                match api.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32)
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        let (l, f) = task.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        failures.extend(f);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
    };
    println!(
        "{}",
        serde_json::json!({
            "created": latencies.len(),
            "failed": failures.len(),
            "seconds": elapsed,
            "creates_per_sec": latencies.len() as f64 / elapsed,
            "p50_us": pct(0.5),
            "p99_us": pct(0.99),
            "concurrency": args.concurrency,
        })
    );
    if let Some(first) = failures.first() {
        return Err(format!("{} creates failed; first: {first}", failures.len()));
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
