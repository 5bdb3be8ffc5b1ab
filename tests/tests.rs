//! Every integration test, in one binary: the areas below share `support` and link once.
//! Each area's file says what it covers.

mod support;

mod chart;
mod cli;
mod control_plane;
mod corpus;
mod hub_charts;
mod layering;
mod mutating_policy;
mod node_agent;
mod node_agent_cluster;
mod real_node;
mod real_node_dask;
mod real_node_hub;
mod upstream_builders;
mod webhook;
