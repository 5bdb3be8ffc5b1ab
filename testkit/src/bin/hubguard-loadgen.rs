//! Load generator for the webhook: many keep-alive TLS connections sending the same
//! AdmissionReview, either as fast as the server answers or at a fixed total rate.
//!
//!   hubguard-loadgen certs --dir DIR                 a CA and a serving certificate for 127.0.0.1
//!   hubguard-loadgen run --addr A --ca F --object F  drive the server, print one JSON summary
//!   hubguard-loadgen soak --addr A --ca F --allowed F --denied F --server-pid P
//!                                                    a fixed rate of allowed, denied and malformed
//!                                                    reviews for a long time: a JSON line per
//!                                                    window (p99, RSS), then a verdict
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
    /// A fixed rate of allowed, denied and malformed reviews; every answer must be the expected
    /// one (allowed, denied, HTTP 400). Prints a JSON line per window and a summary; fails on
    /// any wrong answer or if the server's RSS leaves the tolerance around its first window's.
    Soak(SoakArgs),
}

#[derive(clap::Args)]
struct SoakArgs {
    #[arg(long)]
    addr: SocketAddr,
    /// CA certificate (PEM) the server's certificate must chain to.
    #[arg(long)]
    ca: PathBuf,
    /// An object the policy allows (YAML or JSON).
    #[arg(long)]
    allowed: PathBuf,
    /// An object the policy denies.
    #[arg(long)]
    denied: PathBuf,
    /// Who asks for the allowed object.
    #[arg(long, default_value = "system:serviceaccount:tess-private:hub")]
    user: String,
    /// Who asks for the denied object.
    #[arg(long, default_value = "system:serviceaccount:tess-private:user-alice")]
    denied_user: String,
    #[arg(long, default_value = "tess-private")]
    namespace: String,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Total reviews per second across all connections.
    #[arg(long, default_value_t = 5000.0)]
    rate: f64,
    /// Seconds to run.
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Seconds per reported window.
    #[arg(long, default_value_t = 60.0)]
    window: f64,
    /// The server's process id, whose RSS is read at the end of every window.
    #[arg(long)]
    server_pid: u32,
    /// Allowed RSS drift, as a fraction of the first window's.
    #[arg(long, default_value_t = 0.10)]
    rss_tolerance: f64,
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
        Command::Soak(args) => block_on(soak(args)),
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

/// What a soak request is and the answer it must get.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allowed,
    Denied,
    /// A body that is not a usable AdmissionReview: refused with 400, never a crash.
    Malformed,
}

/// Seven allowed, two denied, one malformed in every ten requests.
const SOAK_MIX: [Expect; 10] = [
    Expect::Allowed,
    Expect::Allowed,
    Expect::Denied,
    Expect::Allowed,
    Expect::Malformed,
    Expect::Allowed,
    Expect::Allowed,
    Expect::Denied,
    Expect::Allowed,
    Expect::Allowed,
];

/// Bodies the webhook must refuse as malformed, taken in turn.
const MALFORMED: [&str; 4] = [
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"#,
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
    r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7,"object":[]}}"#,
    "\u{0}\u{1}not json at all",
];

struct SoakOutcome {
    /// Microseconds from the start of the run at which the request was due.
    due_us: u64,
    latency_us: u32,
    correct: bool,
}

fn review_body(
    object_path: &std::path::Path,
    user: &str,
    args: &SoakArgs,
    uid: &str,
) -> Result<Bytes, String> {
    let text = std::fs::read_to_string(object_path)
        .map_err(|e| format!("{}: {e}", object_path.display()))?;
    let object: serde_json::Value =
        serde_norway::from_str(&text).map_err(|e| format!("{}: {e}", object_path.display()))?;
    let review = ReviewRequest {
        uid,
        object: Some(&object),
        username: user,
        namespace: &args.namespace,
        ..ReviewRequest::default()
    }
    .to_json();
    Ok(Bytes::from(serde_json::to_vec(&review).expect("JSON")))
}

fn answer_is(expect: Expect, status: hyper::StatusCode, body: &[u8]) -> bool {
    match expect {
        Expect::Allowed => status.is_success() && contains(body, b"\"allowed\":true"),
        Expect::Denied => status.is_success() && contains(body, b"\"allowed\":false"),
        Expect::Malformed => status == hyper::StatusCode::BAD_REQUEST,
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

async fn soak(args: SoakArgs) -> Result<(), String> {
    if args.rate <= 0.0 || args.window <= 0.0 || args.duration < args.window {
        return Err("--rate and --window must be positive, --duration at least one window".into());
    }
    let ca = std::fs::read(&args.ca).map_err(|e| format!("{}: {e}", args.ca.display()))?;
    let allowed = review_body(&args.allowed, &args.user, &args, "soak-allowed")?;
    let denied = review_body(&args.denied, &args.denied_user, &args, "soak-denied")?;
    let client = HttpsClient::new(args.addr, "127.0.0.1", &ca, Protocol::Http1)
        .map_err(|e| e.to_string())?;
    let connections = args.connections.max(1);
    let interval = Duration::from_secs_f64(connections as f64 / args.rate);
    let start = Instant::now() + Duration::from_millis(200);
    let stop_at = start + Duration::from_secs_f64(args.duration);
    let window = Duration::from_secs_f64(args.window);
    let windows = (args.duration / args.window).ceil() as usize;

    // The server's RSS at the end of every window.
    let pid = args.server_pid;
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::with_capacity(windows);
        for index in 1..=windows {
            tokio::time::sleep_until((start + window * index as u32).into()).await;
            samples.push(rss_kib(pid));
        }
        samples
    });

    let mut tasks = Vec::with_capacity(connections);
    for index in 0..connections {
        let (client, allowed, denied) = (client.clone(), allowed.clone(), denied.clone());
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut connection = client.connect().await.ok();
            let mut due = start + interval.mul_f64(index as f64 / connections as f64);
            let mut sequence = index;
            let mut previous_done = start;
            while due < stop_at {
                tokio::time::sleep_until(due.into()).await;
                let expect = SOAK_MIX[sequence % SOAK_MIX.len()];
                let body = match expect {
                    Expect::Allowed => allowed.clone(),
                    Expect::Denied => denied.clone(),
                    Expect::Malformed => Bytes::from_static(
                        MALFORMED[(sequence / SOAK_MIX.len()) % MALFORMED.len()].as_bytes(),
                    ),
                };
                let sent = Instant::now();
                // As in `run`: late because the last answer came late counts; late because the
                // millisecond timer fired late does not.
                let clock_from = if previous_done > due { due } else { sent };
                let correct = match connection.as_mut() {
                    Some(c) => match c.post("/validate", body).await {
                        Ok((status, answer)) => answer_is(expect, status, &answer),
                        Err(_) => false,
                    },
                    None => false,
                };
                let done = Instant::now();
                previous_done = done;
                outcomes.push(SoakOutcome {
                    due_us: due.duration_since(start).as_micros() as u64,
                    latency_us: done
                        .duration_since(clock_from)
                        .as_micros()
                        .min(u32::MAX as u128) as u32,
                    correct,
                });
                if connection.as_ref().is_none_or(|c| c.is_closed()) {
                    connection = client.connect().await.ok();
                }
                sequence += connections;
                due += interval;
            }
            outcomes
        }));
    }
    let mut by_window: Vec<(Vec<u32>, u64)> = vec![(Vec::new(), 0); windows];
    for task in tasks {
        for outcome in task.await.map_err(|e| e.to_string())? {
            let slot = ((outcome.due_us as f64 / 1e6 / args.window) as usize).min(windows - 1);
            by_window[slot].0.push(outcome.latency_us);
            by_window[slot].1 += u64::from(!outcome.correct);
        }
    }
    let rss = sampler.await.map_err(|e| e.to_string())?;
    let baseline = rss.first().copied().flatten();
    let mut wrong_total = 0;
    let mut drifted = Vec::new();
    for (index, ((mut latencies, wrong), rss)) in by_window.into_iter().zip(&rss).enumerate() {
        latencies.sort_unstable();
        let pct = |p: f64| -> u32 {
            if latencies.is_empty() {
                return 0;
            }
            latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1]
        };
        let drift = match (rss, baseline) {
            (Some(now), Some(first)) if first > 0 => Some(*now as f64 / first as f64 - 1.0),
            _ => None,
        };
        if drift.is_none_or(|d| d.abs() > args.rss_tolerance) {
            drifted.push(index);
        }
        wrong_total += wrong;
        println!(
            "{}",
            serde_json::json!({
                "window": index,
                "from_s": index as f64 * args.window,
                "requests": latencies.len(),
                "wrong": wrong,
                "p50_us": pct(0.5),
                "p99_us": pct(0.99),
                "max_us": latencies.last().copied().unwrap_or(0),
                "rss_kib": rss,
                "rss_drift": drift,
            })
        );
    }
    let rss_values: Vec<u64> = rss.iter().flatten().copied().collect();
    println!(
        "{}",
        serde_json::json!({
            "summary": true,
            "seconds": args.duration,
            "rate": args.rate,
            "mix": "7 allowed : 2 denied : 1 malformed",
            "wrong": wrong_total,
            "rss_first_kib": baseline,
            "rss_min_kib": rss_values.iter().min(),
            "rss_max_kib": rss_values.iter().max(),
            "rss_tolerance": args.rss_tolerance,
        })
    );
    if wrong_total > 0 {
        return Err(format!("{wrong_total} requests got a wrong or no answer"));
    }
    if !drifted.is_empty() {
        return Err(format!(
            "the server's RSS left ±{:.0}% of its first window's in windows {drifted:?}",
            args.rss_tolerance * 100.0
        ));
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
