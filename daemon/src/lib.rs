//! What every long-running hubguard process shares: the webhook and the node agent watch
//! their policy file and keep the last good policy, serve the same operations port, define
//! their metrics under the same rules, and reach the cluster the same way. See README.md for what may depend on this crate.

pub mod kube_client;
pub mod metrics;
pub mod ops;
pub mod policy_store;
pub mod watch;
