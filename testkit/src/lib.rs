//! hubguard's test and benchmark tooling, kept out of the product crates: a dev-dependency
//! only (tests/layering.rs checks it). `support` is the integration tests' harness. The binaries: `hubguard-loadgen` (the webhook and the
//! API server under load) and `hubguard-netprobe` (serves and probes inside an isolated
//! network namespace, from a given cgroup).

pub mod certs;
pub mod https_client;
pub mod review;
pub mod support;
