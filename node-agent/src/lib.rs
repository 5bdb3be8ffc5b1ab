//! The eBPF node agent: blocks the cloud metadata endpoint and enforces the policy's egress
//! rules per pod class, in the kernel (cgroup socket hooks), whatever the CNI. In a cluster it
//! maps this node's pods to their cgroups; standalone it maps the cgroups it is given.

pub mod abi;
pub mod agent;
pub mod attach_points;
pub mod cgroups;
pub mod classes;
pub mod cluster;
pub mod desired;
pub mod events;
pub mod kernel;
pub mod metrics;
pub mod node_taint;
pub mod removal;
pub mod rules;
