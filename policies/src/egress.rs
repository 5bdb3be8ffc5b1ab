//! Egress rules per pod class. The node agent enforces them; this module defines and validates
//! them. Loopback is always allowed and the cloud credential endpoints are always denied, for
//! every class, whatever a rule says (a policy may grant one endpoint to one class); DNS goes
//! only to the cluster DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::validate::FieldErrors;

/// One address where a cloud hands out credentials (or what leads to them).
#[derive(Debug, Clone, Copy)]
pub struct CredentialEndpoint {
    pub cidr: &'static str,
    /// What answers there.
    pub what: &'static str,
    /// Where the provider documents it.
    pub source: &'static str,
    /// The same address is also the platform's DNS resolver: port 53 stays open there for
    /// classes that may send DNS anywhere (the cluster DNS forwards to it).
    pub resolver: bool,
}

const fn endpoint(
    cidr: &'static str,
    what: &'static str,
    source: &'static str,
) -> CredentialEndpoint {
    CredentialEndpoint {
        cidr,
        what,
        source,
        resolver: false,
    }
}

/// The maintained list (docs/node-agent.md shows it): denied for every class, in every form an
/// address can take (the kernel decodes the IPv6 forms of IPv4 addresses).
pub const CREDENTIAL_ENDPOINTS: &[CredentialEndpoint] = &[
    endpoint(
        "169.254.169.254/32",
        "instance metadata (AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean, Linode, Hetzner, …)",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html",
    ),
    endpoint(
        "fd00:ec2::254/128",
        "AWS instance metadata over IPv6",
        "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html",
    ),
    endpoint(
        "169.254.170.2/32",
        "AWS ECS task credentials",
        "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html",
    ),
    endpoint(
        "169.254.170.23/32",
        "AWS EKS Pod Identity",
        "https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html",
    ),
    endpoint(
        "fd00:ec2::23/128",
        "AWS EKS Pod Identity over IPv6",
        "https://docs.aws.amazon.com/eks/latest/userguide/pod-id-how-it-works.html",
    ),
    endpoint(
        "fd20:ce::254/128",
        "GCE metadata over IPv6",
        "https://cloud.google.com/compute/docs/metadata/querying-metadata",
    ),
    endpoint(
        "169.254.169.252/32",
        "GKE metadata server for Workload Identity (port 988)",
        "https://cloud.google.com/kubernetes-engine/docs/concepts/workload-identity",
    ),
    CredentialEndpoint {
        cidr: "168.63.129.16/32",
        what: "Azure WireServer (ports 80 and 32526: the path from a pod to the node's bootstrap credentials); also Azure DNS",
        source: "https://learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16",
        resolver: true,
    },
    endpoint(
        "fd00:c1::a9fe:a9fe/128",
        "Oracle Cloud (OCI) instance metadata over IPv6",
        "https://docs.oracle.com/iaas/Content/Compute/Tasks/gettingmetadata.htm",
    ),
    endpoint(
        "192.0.0.192/32",
        "Oracle Cloud Infrastructure Classic instance metadata",
        "https://docs.oracle.com/en/cloud/iaas-classic/compute-iaas-cloud/stcsg/retrieving-instance-metadata.html",
    ),
    endpoint(
        "100.100.100.200/32",
        "Alibaba Cloud ECS metadata",
        "https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata",
    ),
    endpoint(
        "fd00:100::100:200/128",
        "Alibaba Cloud ECS metadata over IPv6",
        "https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata",
    ),
    endpoint(
        "169.254.0.23/32",
        "Tencent Cloud metadata",
        "https://www.tencentcloud.com/document/product/213/4934",
    ),
    endpoint(
        "fe80::a9fe:a9fe/128",
        "OpenStack metadata over IPv6 (link-local)",
        "https://docs.openstack.org/neutron/latest/admin/config-services-metadata.html",
    ),
    endpoint(
        "fd00:a9fe:a9fe::1/128",
        "Akamai (Linode) metadata over IPv6",
        "https://techdocs.akamai.com/cloud-computing/docs/overview-of-the-metadata-service",
    ),
    endpoint(
        "169.254.42.42/32",
        "Scaleway instance metadata",
        "https://www.scaleway.com/en/docs/instances/how-to/use-cloud-init/",
    ),
    endpoint(
        "fd00:42::42/128",
        "Scaleway instance metadata over IPv6",
        "https://www.scaleway.com/en/docs/instances/how-to/use-cloud-init/",
    ),
];

/// The credential endpoints as networks.
pub fn credential_nets() -> Vec<IpNet> {
    CREDENTIAL_ENDPOINTS
        .iter()
        .map(|e| e.cidr.parse().expect("credential endpoints are CIDRs"))
        .collect()
}

/// The credential endpoints that are also the platform's DNS resolver.
pub fn resolver_nets() -> Vec<IpNet> {
    CREDENTIAL_ENDPOINTS
        .iter()
        .filter(|e| e.resolver)
        .map(|e| e.cidr.parse().expect("credential endpoints are CIDRs"))
        .collect()
}

/// The IPv4 address an IPv6 address delivers to, for the forms the network translates or
/// tunnels: v4-mapped `::ffff:a.b.c.d`, IPv4-translated `::ffff:0:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::/96` and 6to4 `2002:aabb:ccdd::/48`. The node agent's kernel program applies the same rule
/// (ebpf/egress.bpf.c, decide_v6); loopback `::1` is not such a form.
pub fn embedded_ipv4(addr: &Ipv6Addr) -> Option<Ipv4Addr> {
    let s = addr.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0, 0, 1] => None,
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

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
    // Teredo and local-use NAT64 carry IPv4 addresses in forms that cannot be read back
    // reliably (obfuscated, or at an operator-chosen prefix length): never public.
    "2001::/32",
    "64:ff9b:1::/48",
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
    /// Credential endpoints a class may reach after all (a platform that hands out bucket
    /// credentials through workload identity): each grant is one endpoint for one class.
    #[serde(default)]
    pub credential_grants: Vec<CredentialGrant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialGrant {
    /// One of the credential endpoints, as an address (`169.254.170.23`).
    pub endpoint: IpAddr,
    /// `user`, `dask`, `platform` or `other`.
    pub class: String,
}

impl CredentialGrant {
    pub fn net(&self) -> IpNet {
        IpNet::from(self.endpoint)
    }
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
    /// With `namespace`: only the pods of that namespace that belong to the caller's own
    /// tenant (as admission recorded it). Pods of no tenant reach each other's.
    #[serde(default)]
    pub same_tenant: bool,
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
    let endpoints = credential_nets();
    for (i, grant) in net.credential_grants.iter().enumerate() {
        let here = format!("{path}.credentialGrants[{i}]");
        if !endpoints.contains(&grant.net()) {
            errs.push(
                format!("{here}.endpoint"),
                format!(
                    "{} is not a credential endpoint; they are: {}",
                    grant.endpoint,
                    CREDENTIAL_ENDPOINTS
                        .iter()
                        .map(|e| e.cidr.trim_end_matches("/32").trim_end_matches("/128"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if !matches!(grant.class.as_str(), "user" | "dask" | "platform" | "other") {
            errs.push(
                format!("{here}.class"),
                format!("'{}' is not user, dask, platform or other", grant.class),
            );
        }
        if net.credential_grants[..i]
            .iter()
            .any(|g| g.endpoint == grant.endpoint)
        {
            errs.push(
                format!("{here}.endpoint"),
                format!(
                    "{} is granted already: one class per endpoint",
                    grant.endpoint
                ),
            );
        }
    }
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
    if to.same_tenant && to.namespace.is_none() {
        errs.push(
            format!("{path}.sameTenant"),
            "only applies together with namespace",
        );
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
                "same tenant in a namespace",
                "[{name: x, to: {namespace: hub, sameTenant: true}, ports: [{port: 8786}]}]",
                &[],
            ),
            (
                "same tenant without a namespace",
                "[{name: x, to: {cidrs: [10.0.0.0/8], sameTenant: true}, ports: [{port: 8786}]}]",
                &["egress[0].to.sameTenant"],
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
    fn embedded_ipv4_cases() {
        let cases = [
            ("::ffff:169.254.169.254", Some("169.254.169.254")),
            ("::169.254.169.254", Some("169.254.169.254")),
            ("::ffff:0:a9fe:a9fe", Some("169.254.169.254")),
            ("64:ff9b::a9fe:a9fe", Some("169.254.169.254")),
            ("64:ff9b::10.1.2.3", Some("10.1.2.3")),
            ("2002:a9fe:a9fe::1", Some("169.254.169.254")),
            ("2002:c633:640a:1::", Some("198.51.100.10")),
            ("::1", None),
            ("2001:db8::10", None),
            ("2001:0:a9fe:a9fe::", None),
            ("64:ff9b:1::a9fe:a9fe", None),
        ];
        for (v6, want) in cases {
            let got = embedded_ipv4(&v6.parse().unwrap());
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{v6}");
        }
    }

    #[test]
    fn grant_cases() {
        let errors = |yaml: &str| {
            let net: NetworkSpec = serde_norway::from_str(yaml).unwrap();
            let mut errs = FieldErrors::default();
            validate_network(&net, "network", &mut errs);
            errs.into_vec()
                .into_iter()
                .map(|e| e.path)
                .collect::<Vec<_>>()
        };
        assert!(
            errors("{credentialGrants: [{endpoint: 169.254.170.23, class: platform}]}").is_empty()
        );
        assert_eq!(
            errors("{credentialGrants: [{endpoint: 8.8.8.8, class: user}]}"),
            ["network.credentialGrants[0].endpoint"]
        );
        assert_eq!(
            errors("{credentialGrants: [{endpoint: 169.254.170.23, class: hub}]}"),
            ["network.credentialGrants[0].class"]
        );
        assert_eq!(
            errors("{credentialGrants: [{endpoint: 169.254.170.23, class: user}, {endpoint: 169.254.170.23, class: dask}]}"),
            ["network.credentialGrants[1].endpoint"]
        );
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
