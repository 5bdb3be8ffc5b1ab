//! hubguard's admission webhook: `/validate` and `/mutate` over TLS for the API server, with
//! metrics and health on a separate plain-HTTP port. The policy and the serving certificate
//! are re-read when their files change.

pub mod admission;
pub mod http;
pub mod managed_tls;
pub mod message;
pub mod metrics;
pub mod mutating_policy;
pub mod object;
pub mod ops;
pub mod pods;
pub mod policy_events;
pub mod server;
pub mod tls;

pub use server::{run, Config, ManagedTlsConfig, ServeError};
