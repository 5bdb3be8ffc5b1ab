//! The webhook's per-review work without the network: parse the AdmissionReview, judge it,
//! serialise the answer; printed as a ratio to answering "allowed" after the same parse.
//! Run: cargo bench -p hubguard-webhook --bench review

use std::hint::black_box;
use std::time::Instant;

use hubguard_policy::Policy;
use hubguard_testkit::review::ReviewRequest;
use hubguard_webhook::admission;
use hubguard_webhook::object::RawObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};

// As in the hubguard binary.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn parse(body: &[u8]) -> AdmissionRequest<RawObject> {
    let review: AdmissionReview<RawObject> = serde_json::from_slice(body).unwrap();
    review.try_into().unwrap()
}

fn time(name: &str, iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let micros = start.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    println!("{name:<40} {micros:8.2} µs");
    micros
}

fn main() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let policy = Policy::load(format!("{root}/policies/tess-private.yaml").as_ref()).unwrap();
    let text = std::fs::read_to_string(format!(
        "{root}/tests/corpus/pass/z2jh-user-pod-hardened.yaml"
    ))
    .unwrap();
    let object: serde_json::Value = serde_norway::from_str(&text).unwrap();
    let body = serde_json::to_vec(
        &ReviewRequest {
            object: Some(&object),
            username: "system:serviceaccount:tess-private:hub",
            namespace: "tess-private",
            ..ReviewRequest::default()
        }
        .to_json(),
    )
    .unwrap();
    let n = 200_000;
    let allow_all = time("parse + allow + serialise (baseline)", n, || {
        let request = parse(black_box(&body));
        let response = AdmissionResponse::from(&request).into_review();
        black_box(serde_json::to_vec(&response).unwrap());
    });
    let judged = time("parse + judge + serialise (hubguard)", n, || {
        let request = parse(black_box(&body));
        let outcome = admission::validate_object(&policy, &request, None);
        black_box(serde_json::to_vec(&outcome.response.into_review()).unwrap());
    });
    let mutate = time("parse + defaults patch + serialise", n, || {
        let request = parse(black_box(&body));
        let outcome = admission::mutate(&policy, &request);
        black_box(serde_json::to_vec(&outcome.response.into_review()).unwrap());
    });
    println!("ratio judged / baseline: {:.2}x", judged / allow_all);
    println!("ratio mutate / baseline: {:.2}x", mutate / allow_all);
}
