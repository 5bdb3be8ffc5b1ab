//! Egress rules per pod class. The node agent enforces them; this module defines and validates
//! them. Loopback is always allowed and the metadata endpoints are always denied, whatever a
//! rule says; DNS goes only to the cluster DNS.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::validate::FieldErrors;

/// The cloud instance-metadata endpoints, denied for every pod.
pub const METADATA_ADDRESSES: &[&str] = &["169.254.169.254/32", "fd00:ec2::254/128"];

/// What `except: [private]` stands for: every range that is not the public internet.
pub const PRIVATE_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    #[serde(default, rename = "clusterDNS")]
    pub cluster_dns: ClusterDns,
    /// The cluster DNS answers on the metadata address, port 53 (GKE): allow exactly that.
    #[serde(default, rename = "metadataServerDNS")]
    pub metadata_server_dns: bool,
}

/// Where pods may send DNS queries. Fixed `addresses` win; otherwise the node agent reads the
/// ClusterIP of `service`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterDns {
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
    #[serde(default = "default_dns_service")]
    pub service: String,
}

impl Default for ClusterDns {
    fn default() -> Self {
        ClusterDns {
            addresses: Vec::new(),
            service: default_dns_service(),
        }
    }
}

fn default_dns_service() -> String {
    "kube-system/kube-dns".to_string()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressRule {
    pub name: String,
    pub to: Destination,
    pub ports: Vec<PortSpec>,
}

/// Exactly one of `cidrs`, `service` (`namespace/name`) or `namespace` (its pods).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    #[serde(default)]
    pub cidrs: Vec<IpNet>,
    /// CIDRs, or `private` for every non-public range.
    #[serde(default)]
    pub except: Vec<String>,
    pub service: Option<String>,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSpec {
    pub port: u16,
    pub end_port: Option<u16>,
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}

impl Destination {
    /// The excluded ranges with `private` expanded.
    pub fn except_nets(&self) -> Vec<IpNet> {
        self.except
            .iter()
            .flat_map(|entry| match entry.as_str() {
                "private" => PRIVATE_RANGES
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect(),
                cidr => cidr.parse().ok().into_iter().collect::<Vec<IpNet>>(),
            })
            .collect()
    }
}

pub(crate) fn validate_network(net: &NetworkSpec, path: &str, errs: &mut FieldErrors) {
    if net.cluster_dns.addresses.is_empty() && !is_namespaced_name(&net.cluster_dns.service) {
        errs.push(
            format!("{path}.clusterDNS.service"),
            format!(
                "'{}' is not <namespace>/<name>, and no addresses are given",
                net.cluster_dns.service
            ),
        );
    }
}

pub(crate) fn validate_rules(rules: &[EgressRule], path: &str, errs: &mut FieldErrors) {
    for (i, rule) in rules.iter().enumerate() {
        let here = format!("{path}[{i}]");
        if rule.name.trim().is_empty() {
            errs.push(format!("{here}.name"), "must not be empty");
        } else if rules[..i].iter().any(|r| r.name == rule.name) {
            errs.push(
                format!("{here}.name"),
                format!("'{}' is used by an earlier rule", rule.name),
            );
        }
        validate_destination(&rule.to, &format!("{here}.to"), errs);
        if rule.ports.is_empty() {
            errs.push(
                format!("{here}.ports"),
                "list at least one port: a rule never opens every port",
            );
        }
        for (j, port) in rule.ports.iter().enumerate() {
            if port.port == 0 {
                errs.push(format!("{here}.ports[{j}].port"), "must be 1-65535");
            }
            if let Some(end) = port.end_port {
                if end < port.port {
                    errs.push(
                        format!("{here}.ports[{j}].endPort"),
                        format!("{end} is below port {}", port.port),
                    );
                }
            }
        }
    }
}

fn validate_destination(to: &Destination, path: &str, errs: &mut FieldErrors) {
    let kinds = usize::from(!to.cidrs.is_empty())
        + usize::from(to.service.is_some())
        + usize::from(to.namespace.is_some());
    if kinds != 1 {
        errs.push(
            path.to_string(),
            "set exactly one of cidrs, service or namespace",
        );
    }
    if !to.except.is_empty() && to.cidrs.is_empty() {
        errs.push(format!("{path}.except"), "only applies together with cidrs");
    }
    for (k, entry) in to.except.iter().enumerate() {
        if entry != "private" && entry.parse::<IpNet>().is_err() {
            errs.push(
                format!("{path}.except[{k}]"),
                format!("'{entry}' is neither a CIDR nor 'private'"),
            );
        }
    }
    if let Some(service) = &to.service {
        if !is_namespaced_name(service) {
            errs.push(
                format!("{path}.service"),
                format!("'{service}' is not <namespace>/<name>"),
            );
        }
    }
    if let Some(ns) = &to.namespace {
        if ns.is_empty() || ns.contains('/') {
            errs.push(
                format!("{path}.namespace"),
                format!("'{ns}' is not a namespace name"),
            );
        }
    }
}

fn is_namespaced_name(s: &str) -> bool {
    matches!(s.split_once('/'), Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> Vec<EgressRule> {
        serde_norway::from_str(yaml).expect("test rule parses")
    }

    fn errors(rules: &[EgressRule]) -> Vec<String> {
        let mut errs = FieldErrors::default();
        validate_rules(rules, "egress", &mut errs);
        errs.into_vec().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn validation_cases() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "public web",
                "[{name: web, to: {cidrs: [0.0.0.0/0, '::/0'], except: [private]}, ports: [{port: 443}]}]",
                &[],
            ),
            (
                "service",
                "[{name: hub, to: {service: tess/hub}, ports: [{port: 8081}]}]",
                &[],
            ),
            (
                "two destinations",
                "[{name: x, to: {service: a/b, namespace: c}, ports: [{port: 1}]}]",
                &["egress[0].to"],
            ),
            (
                "no ports",
                "[{name: x, to: {namespace: c}, ports: []}]",
                &["egress[0].ports"],
            ),
            (
                "bad except",
                "[{name: x, to: {cidrs: [10.0.0.0/8], except: [nope]}, ports: [{port: 1}]}]",
                &["egress[0].to.except[0]"],
            ),
            (
                "duplicate name",
                "[{name: x, to: {namespace: a}, ports: [{port: 1}]}, {name: x, to: {namespace: b}, ports: [{port: 1}]}]",
                &["egress[1].name"],
            ),
            (
                "end below start",
                "[{name: x, to: {namespace: a}, ports: [{port: 10, endPort: 5}]}]",
                &["egress[0].ports[0].endPort"],
            ),
            (
                "service without namespace",
                "[{name: x, to: {service: hub}, ports: [{port: 1}]}]",
                &["egress[0].to.service"],
            ),
        ];
        for (name, yaml, expected) in cases {
            assert_eq!(errors(&rule(yaml)), *expected, "case {name}");
        }
    }

    #[test]
    fn private_alias_expands() {
        let dest = Destination {
            cidrs: vec!["0.0.0.0/0".parse().unwrap()],
            except: vec!["private".into()],
            ..Default::default()
        };
        let nets = dest.except_nets();
        assert!(nets
            .iter()
            .any(|n| n.contains(&"10.1.2.3".parse::<IpAddr>().unwrap())));
        assert!(nets
            .iter()
            .any(|n| n.contains(&"169.254.169.254".parse::<IpAddr>().unwrap())));
        assert!(!nets
            .iter()
            .any(|n| n.contains(&"8.8.8.8".parse::<IpAddr>().unwrap())));
    }
}
