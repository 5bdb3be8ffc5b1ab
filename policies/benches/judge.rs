//! Judging a typical KubeSpawner pod against tess-private, as the webhook will on every user
//! pod create. Goal: under 5 µs per evaluation. Criterion measures each step; the summary at
//! the end prints the evaluation as a ratio to parsing the same pod's JSON (work the webhook
//! cannot avoid), both timed in this process.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;

use hubguard_policy::action::Action;
use hubguard_policy::engine::Request;
use hubguard_policy::{Policy, Requester, PRESETS};

// The webhook binary uses the same allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POD: &str = include_str!("../../tests/corpus/pass/z2jh-user-pod-hardened.yaml");
const SERVICE: &str = include_str!("../../tests/corpus/pass/tenant-own-service.yaml");

struct Setup {
    policy: Policy,
    pod: serde_json::Value,
    pod_json: String,
    hub: Requester,
}

fn setup() -> Setup {
    let text = PRESETS
        .iter()
        .find(|(n, _)| *n == "tess-private")
        .expect("preset")
        .1;
    let policy = Policy::from_yaml(text, "tess-private").expect("preset compiles");
    let pod: serde_json::Value = serde_norway::from_str(POD).expect("pod parses");
    let pod_json = serde_json::to_string(&pod).unwrap();
    let hub = Requester {
        username: "system:serviceaccount:tess-private:hub".into(),
        groups: vec!["system:serviceaccounts".into()],
    };
    Setup {
        policy,
        pod,
        pod_json,
        hub,
    }
}

fn request(s: &Setup) -> Request<'_> {
    Request {
        namespace: "tess-private",
        requester: Some(&s.hub),
        cluster: None,
    }
}

fn bench(c: &mut Criterion, s: &Setup) {
    let request = request(s);
    let review = s.policy.review(&s.pod, &request).unwrap();
    assert!(
        review.allowed() && review.violations.is_empty(),
        "the benchmark pod must be compliant"
    );
    c.bench_function("review kubespawner pod (tess-private)", |b| {
        b.iter(|| {
            s.policy
                .review(black_box(&s.pod), black_box(&request))
                .unwrap()
        })
    });
    c.bench_function("parse the pod's JSON (baseline)", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(black_box(&s.pod_json)).unwrap())
    });
    c.bench_function("defaults patch kubespawner pod", |b| {
        b.iter(|| {
            s.policy
                .defaults_patch(black_box(&s.pod), black_box(&request))
                .unwrap()
        })
    });
}

/// Mean time per call over a fixed count, after a warm-up.
fn per_call(mut f: impl FnMut(), count: u32) -> Duration {
    for _ in 0..count / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..count {
        f();
    }
    start.elapsed() / count
}

fn summary(s: &Setup) {
    let request = request(s);
    let count = 200_000;
    let review = per_call(
        || drop(black_box(s.policy.review(black_box(&s.pod), &request))),
        count,
    );
    let parse = per_call(
        || {
            drop(black_box(serde_json::from_str::<serde_json::Value>(
                &s.pod_json,
            )))
        },
        count,
    );
    println!(
        "summary: review {:.2} µs per evaluation (goal < 5 µs); parsing the same pod's JSON {:.2} µs; review/parse = {:.2}x",
        review.as_secs_f64() * 1e6,
        parse.as_secs_f64() * 1e6,
        review.as_secs_f64() / parse.as_secs_f64()
    );
    // What the Service and action rules add per review they see: a tenant's Service create,
    // and a tenant's DELETE of her pod (the webhook's other work per review is the same).
    let alice = Requester::authenticated(
        "system:serviceaccount:tess-private:user-alice".into(),
        Vec::new(),
    );
    let as_alice = Request {
        requester: Some(&alice),
        ..request
    };
    let service: serde_json::Value = serde_norway::from_str(SERVICE).expect("service parses");
    assert!(s.policy.review(&service, &as_alice).unwrap().allowed());
    let service_review = per_call(
        || drop(black_box(s.policy.review(black_box(&service), &as_alice))),
        count,
    );
    let delete = per_call(
        || {
            drop(black_box(s.policy.review_action(
                Action::Delete,
                "Pod",
                "jupyter-alice",
                Ok(black_box(&s.pod)),
                &as_alice,
            )))
        },
        count,
    );
    println!(
        "summary: a tenant's Service {:.2} µs ({:.2}x the pod's parse); a tenant's pod DELETE {:.2} µs ({:.2}x)",
        service_review.as_secs_f64() * 1e6,
        service_review.as_secs_f64() / parse.as_secs_f64(),
        delete.as_secs_f64() * 1e6,
        delete.as_secs_f64() / parse.as_secs_f64()
    );
}

fn main() {
    let s = setup();
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c, &s);
    c.final_summary();
    summary(&s);
}
