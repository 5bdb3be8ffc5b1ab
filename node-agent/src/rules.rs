//! From a policy's egress rules to the entries of the kernel's prefix tries. Userspace decides
//! everything here; the kernel only finds the longest matching prefix of a destination within
//! the caller's class and reads which ports and protocols that entry allows.
//!
//! Each entry is computed for "an address whose longest match is this prefix": every prefix a
//! class mentions (rule CIDRs, exceptions, resolved services, cluster DNS, the metadata
//! endpoints) becomes an entry, so an address inside an exception or a metadata endpoint finds
//! that longer entry rather than the rule that contains it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use hubguard_policy::egress::{credential_nets, resolver_nets, EgressRule, Protocol};
use hubguard_policy::Policy;
use ipnet::IpNet;

use crate::classes::ClassId;

pub use crate::abi::{
    CLASS_IP_OPTIONS, CLASS_RAW_SOCKETS, RULE_ANY_PORT as FLAG_ANY_PORT, RULE_GRANT as FLAG_GRANT,
    RULE_METADATA as FLAG_METADATA,
};
/// Port ranges one kernel entry holds.
pub const MAX_PORT_RANGES: usize = crate::abi::MAX_PORT_RANGES as usize;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
const DNS_PORT: u16 = 53;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    pub protocol: u8,
    pub first: u16,
    pub last: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub flags: u32,
    pub ranges: Vec<PortRange>,
}

/// What the cluster (or the host, standalone) says about the names a policy uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    pub cluster_dns: Vec<IpAddr>,
    /// `namespace/name` → the Service's cluster IPs.
    pub services: HashMap<String, Vec<IpAddr>>,
    /// namespace → its pods' IPs.
    pub namespaces: HashMap<String, Vec<IpAddr>>,
    /// namespace → its pods' IPs with the tenant recorded on each (for "same tenant" rules).
    pub namespace_tenants: HashMap<String, Vec<(Option<String>, IpAddr)>>,
}

/// "Same tenant" destinations, keyed by the caller's class, a tenant id and a pod address of
/// that tenant.
pub type PeerTable = BTreeMap<(ClassId, u64, IpAddr), Entry>;

/// The id the kernel knows a tenant by: 64 bits of FNV-1a over the name (a 32-bit id would
/// collide among ten thousand tenants with a chance of about 1%). Pods of no tenant share one
/// id; 0 is kept for "unknown", which has no peers.
pub fn tenant_id(tenant: Option<&str>) -> u64 {
    let bytes = tenant.map_or(&[0u8][..], str::as_bytes);
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash.max(1)
}

/// Every class's entries, keyed by class and (truncated) prefix.
pub type RuleTable = BTreeMap<(ClassId, IpNet), Entry>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CompileError {
    #[error("class {class}: destination {prefix} needs {count} port ranges; at most {MAX_PORT_RANGES} fit: merge the rules' ports")]
    TooManyPortRanges {
        class: &'static str,
        prefix: IpNet,
        count: usize,
    },
    #[error("{entries} entries for the kernel map {map}, more than a rule set holds ({capacity}): merge CIDRs, or split the classes across hubs")]
    TooManyEntries {
        map: &'static str,
        entries: usize,
        capacity: usize,
    },
}

/// The result, plus the names that resolved to nothing (their rules open nothing yet).
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: std::sync::Arc<RuleTable>,
    pub peers: std::sync::Arc<PeerTable>,
    /// Per class id: CLASS_* flags (raw and ICMP echo sockets).
    pub class_flags: BTreeMap<ClassId, u32>,
    pub unresolved: BTreeSet<String>,
}

/// What each class may do beyond its egress rules: the exempt class anything, an unmapped
/// cgroup nothing, the policy's classes what the policy says. IPv4 options and IPv6 extension
/// headers name hops no rule judges: only a class without egress rules may set them.
fn class_flags(policy: &Policy) -> BTreeMap<ClassId, u32> {
    ClassId::ALL
        .into_iter()
        .map(|class| {
            let (raw, options) = match class {
                ClassId::Exempt => (true, true),
                ClassId::Unmapped => (false, false),
                other => (
                    other
                        .pod_class()
                        .and_then(|c| policy.class(c))
                        .is_none_or(|c| c.raw_sockets),
                    egress_rules(policy, other).is_empty(),
                ),
            };
            let mut flags = 0;
            if raw {
                flags |= CLASS_RAW_SOCKETS;
            }
            if options {
                flags |= CLASS_IP_OPTIONS;
            }
            (class, flags)
        })
        .collect()
}

/// The classes a policy writes rules for.
const POLICY_CLASSES: [ClassId; 4] = [
    ClassId::User,
    ClassId::Dask,
    ClassId::Platform,
    ClassId::Other,
];

/// A class's egress rules (none for a class the policy does not judge).
fn egress_rules(policy: &Policy, class: ClassId) -> &[EgressRule] {
    class
        .pod_class()
        .and_then(|c| policy.class(c))
        .map(|c| c.egress.as_slice())
        .unwrap_or_default()
}

pub fn compile(policy: &Policy, resolved: &Resolved) -> Result<Compiled, CompileError> {
    let mut out = Compiled {
        class_flags: class_flags(policy),
        ..Compiled::default()
    };
    let mut table = RuleTable::new();
    let metadata = metadata_entry(policy.network.metadata_server_dns);
    let metadata_nets = credential_nets();
    // Classes that may send DNS anywhere keep port 53 where a credential endpoint is also the
    // platform's resolver (Azure's 168.63.129.16, where the cluster DNS forwards).
    let resolvers = resolver_nets();
    let metadata_for_any_dns = |net: &IpNet| {
        if resolvers.contains(net) {
            metadata_entry(true)
        } else {
            metadata.clone()
        }
    };
    let dns_nets: Vec<IpNet> = resolved
        .cluster_dns
        .iter()
        .map(|a| IpNet::from(*a))
        .collect();

    // Credential endpoints are denied for every class, exempt namespaces included.
    for net in ["0.0.0.0/0", "::/0"] {
        table.insert((ClassId::Exempt, net.parse().expect("literal")), any_port());
    }
    for net in &metadata_nets {
        table.insert((ClassId::Exempt, *net), metadata_for_any_dns(net));
        table.insert((ClassId::Unmapped, *net), metadata.clone());
    }
    for net in &dns_nets {
        table.insert((ClassId::Unmapped, *net), dns_entry());
    }

    for class in POLICY_CLASSES {
        let rules = egress_rules(policy, class);
        if rules.is_empty() {
            // Not egress-filtered: only the metadata block applies.
            for net in ["0.0.0.0/0", "::/0"] {
                table.insert((class, net.parse().expect("literal")), any_port());
            }
            for net in &metadata_nets {
                table.insert((class, *net), metadata_for_any_dns(net));
            }
            continue;
        }
        let resolved_rules: Vec<ResolvedRule> = rules
            .iter()
            .map(|r| resolve_rule(r, resolved, &mut out.unresolved))
            .collect();
        let mut prefixes: BTreeSet<IpNet> = BTreeSet::new();
        for rule in &resolved_rules {
            prefixes.extend(rule.cidrs.iter().copied());
            prefixes.extend(rule.except.iter().copied());
        }
        prefixes.extend(metadata_nets.iter().copied());
        prefixes.extend(dns_nets.iter().copied());
        let index = RuleIndex::new(&resolved_rules);
        for prefix in prefixes {
            let entry = if metadata_nets.iter().any(|m| m.contains(&prefix)) {
                metadata.clone()
            } else {
                let mut ranges: Vec<PortRange> = index
                    .admitting(&prefix)
                    .into_iter()
                    .flat_map(|i| resolved_rules[i].ports.iter().flat_map(|p| without_dns(*p)))
                    .collect();
                if dns_nets.contains(&prefix) {
                    ranges.extend(dns_entry().ranges);
                }
                Entry {
                    flags: 0,
                    ranges: merge(ranges),
                }
            };
            if entry.ranges.len() > MAX_PORT_RANGES {
                return Err(CompileError::TooManyPortRanges {
                    class: class.as_str(),
                    prefix,
                    count: entry.ranges.len(),
                });
            }
            table.insert((class, prefix), entry);
        }
    }
    let mut peers = PeerTable::new();
    for class in POLICY_CLASSES {
        for rule in egress_rules(policy, class)
            .iter()
            .filter(|r| r.to.same_tenant)
        {
            let Some(namespace) = &rule.to.namespace else {
                continue;
            };
            let pods = resolved
                .namespace_tenants
                .get(namespace)
                .filter(|p| !p.is_empty());
            let Some(pods) = pods else {
                out.unresolved.insert(format!("namespace {namespace}"));
                continue;
            };
            let ranges: Vec<PortRange> = resolve_rule(rule, resolved, &mut BTreeSet::new())
                .ports
                .into_iter()
                .flat_map(without_dns)
                .collect();
            for (tenant, ip) in pods {
                let entry = peers
                    .entry((class, tenant_id(tenant.as_deref()), *ip))
                    .or_default();
                entry.ranges.extend(ranges.iter().copied());
                entry.ranges = merge(std::mem::take(&mut entry.ranges));
                if entry.ranges.len() > MAX_PORT_RANGES {
                    return Err(CompileError::TooManyPortRanges {
                        class: class.as_str(),
                        prefix: IpNet::from(*ip),
                        count: entry.ranges.len(),
                    });
                }
            }
        }
    }
    out.peers = std::sync::Arc::new(peers);
    // A grant opens exactly one endpoint to exactly one class (validated with the policy),
    // flagged so that the kernel counts its use.
    for grant in &policy.network.credential_grants {
        let Some(class) = ClassId::parse(&grant.class) else {
            continue;
        };
        table.insert(
            (class, grant.net()),
            Entry {
                flags: FLAG_ANY_PORT | FLAG_GRANT,
                ranges: Vec::new(),
            },
        );
    }
    out.table = std::sync::Arc::new(table);
    out.check_fits()?;
    Ok(out)
}

impl Compiled {
    /// Every map's entries fit in one rule set (`ebpf/abi.h`): a policy that does not fit is
    /// refused whole, before anything is written.
    fn check_fits(&self) -> Result<(), CompileError> {
        let v4 = self
            .table
            .keys()
            .filter(|(_, net)| net.addr().is_ipv4())
            .count();
        match over_rule_set(v4, self.table.len() - v4, self.peers.len()) {
            Some((map, entries)) => Err(CompileError::TooManyEntries {
                map,
                entries,
                capacity: RULE_SET_CAPACITY,
            }),
            None => Ok(()),
        }
    }
}

/// Entries one rule set holds per map (`ebpf/abi.h`).
pub const RULE_SET_CAPACITY: usize = crate::abi::RULE_SET_ENTRIES as usize;

/// The first policy map whose entries would not fit in one rule set, and how many it has.
pub fn over_rule_set(v4: usize, v6: usize, peers: usize) -> Option<(&'static str, usize)> {
    [("v4_rules", v4), ("v6_rules", v6), ("tenant_peers", peers)]
        .into_iter()
        .find(|(_, entries)| *entries > RULE_SET_CAPACITY)
}

struct ResolvedRule {
    cidrs: Vec<IpNet>,
    except: Vec<IpNet>,
    ports: Vec<PortRange>,
}

/// Which rules name each CIDR and each exception, so that the rules admitting a prefix are
/// found from the prefix's own supernets (at most 33 or 129) rather than by scanning every
/// rule: 10,000 CIDRs compile in milliseconds.
struct RuleIndex {
    cidrs: HashMap<IpNet, Vec<usize>>,
    excepts: HashMap<IpNet, Vec<usize>>,
}

impl RuleIndex {
    fn new(rules: &[ResolvedRule]) -> Self {
        let mut index = RuleIndex {
            cidrs: HashMap::new(),
            excepts: HashMap::new(),
        };
        for (i, rule) in rules.iter().enumerate() {
            for net in &rule.cidrs {
                index.cidrs.entry(*net).or_default().push(i);
            }
            for net in &rule.except {
                index.excepts.entry(*net).or_default().push(i);
            }
        }
        index
    }

    /// The rules whose destination holds the addresses whose longest match is `prefix`: a
    /// CIDR of theirs contains it and none of their exceptions does.
    fn admitting(&self, prefix: &IpNet) -> BTreeSet<usize> {
        let mut inside = BTreeSet::new();
        let mut excluded = BTreeSet::new();
        for len in (0..=prefix.prefix_len()).rev() {
            let Ok(supernet) = IpNet::new(prefix.addr(), len).map(|n| n.trunc()) else {
                continue;
            };
            inside.extend(self.cidrs.get(&supernet).into_iter().flatten());
            excluded.extend(self.excepts.get(&supernet).into_iter().flatten());
        }
        &inside - &excluded
    }
}

fn resolve_rule(
    rule: &EgressRule,
    resolved: &Resolved,
    unresolved: &mut BTreeSet<String>,
) -> ResolvedRule {
    let mut cidrs: Vec<IpNet> = rule.to.cidrs.iter().map(IpNet::trunc).collect();
    let mut lookup = |name: String, found: Option<&Vec<IpAddr>>| match found {
        Some(addrs) if !addrs.is_empty() => cidrs.extend(addrs.iter().map(|a| IpNet::from(*a))),
        _ => {
            unresolved.insert(name);
        }
    };
    if let Some(service) = &rule.to.service {
        lookup(format!("service {service}"), resolved.services.get(service));
    }
    // A "same tenant" rule opens no prefix: its pods go to the peer table.
    if let Some(namespace) = rule.to.namespace.as_ref().filter(|_| !rule.to.same_tenant) {
        lookup(
            format!("namespace {namespace}"),
            resolved.namespaces.get(namespace),
        );
    }
    ResolvedRule {
        cidrs,
        except: rule.to.except_nets().iter().map(IpNet::trunc).collect(),
        ports: rule
            .ports
            .iter()
            .map(|p| PortRange {
                protocol: match p.protocol {
                    Protocol::Tcp => TCP,
                    Protocol::Udp => UDP,
                },
                first: p.port,
                last: p.end_port.unwrap_or(p.port),
            })
            .collect(),
    }
}

fn any_port() -> Entry {
    Entry {
        flags: FLAG_ANY_PORT,
        ranges: Vec::new(),
    }
}

fn dns_entry() -> Entry {
    Entry {
        flags: 0,
        ranges: [UDP, TCP]
            .into_iter()
            .map(|protocol| PortRange {
                protocol,
                first: DNS_PORT,
                last: DNS_PORT,
            })
            .collect(),
    }
}

/// The metadata endpoints deny everything, except DNS where the cluster DNS lives there (GKE).
fn metadata_entry(serves_dns: bool) -> Entry {
    Entry {
        flags: FLAG_METADATA,
        ranges: if serves_dns {
            dns_entry().ranges
        } else {
            Vec::new()
        },
    }
}

/// DNS goes only to the cluster DNS, whatever port ranges a rule opens.
fn without_dns(range: PortRange) -> Vec<PortRange> {
    if range.first > DNS_PORT || range.last < DNS_PORT {
        return vec![range];
    }
    let mut parts = Vec::new();
    if range.first < DNS_PORT {
        parts.push(PortRange {
            last: DNS_PORT - 1,
            ..range
        });
    }
    if range.last > DNS_PORT {
        parts.push(PortRange {
            first: DNS_PORT + 1,
            ..range
        });
    }
    parts
}

fn merge(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort();
    let mut merged: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last)
                if last.protocol == range.protocol
                    && u32::from(range.first) <= u32::from(last.last) + 1 =>
            {
                last.last = last.last.max(range.last);
            }
            _ => merged.push(range),
        }
    }
    merged
}

/// Whether the table lets `class` reach `addr:port` over `protocol`, as the kernel decides:
/// the case tables' model of the kernel program (which the privileged tests check for real).
#[cfg(test)]
fn allows(table: &RuleTable, class: ClassId, addr: IpAddr, port: u16, protocol: u8) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => hubguard_policy::egress::embedded_ipv4(&v6).map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    if addr.is_loopback() || addr.is_unspecified() {
        return true;
    }
    let best = table
        .iter()
        .filter(|((c, net), _)| *c == class && net.contains(&addr))
        .max_by_key(|((_, net), _)| net.prefix_len());
    match best {
        Some((_, entry)) => {
            entry.flags & FLAG_ANY_PORT != 0
                || entry
                    .ranges
                    .iter()
                    .any(|r| r.protocol == protocol && (r.first..=r.last).contains(&port))
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(network: &str, user_egress: &str) -> Policy {
        let yaml = format!(
            "apiVersion: hubguard.dev/v1alpha1\nkind: HubguardPolicy\nmetadata: {{name: t}}\nspec:\n  network: {network}\n  classes:\n    user:\n      bundle: restricted\n      egress: {user_egress}\n    platform:\n      bundle: baseline\n"
        );
        Policy::from_yaml(&yaml, "test.yaml").expect("test policy is valid")
    }

    fn resolved() -> Resolved {
        Resolved {
            cluster_dns: vec!["10.96.0.10".parse().unwrap()],
            services: HashMap::from([("hub/hub".to_string(), vec!["10.96.1.1".parse().unwrap()])]),
            namespaces: HashMap::from([(
                "dask".to_string(),
                vec!["10.244.1.5".parse().unwrap(), "fd00:10::5".parse().unwrap()],
            )]),
            namespace_tenants: HashMap::from([(
                "hub".to_string(),
                vec![
                    (Some("alice".to_string()), "10.244.2.1".parse().unwrap()),
                    (Some("bob".to_string()), "10.244.2.2".parse().unwrap()),
                    (None, "10.244.2.3".parse().unwrap()),
                ],
            )]),
        }
    }

    #[test]
    fn same_tenant_rules_open_only_the_tenants_own_pods() {
        let p = policy(
            "{clusterDNS: {addresses: [10.96.0.10]}}",
            "[{name: dask, to: {namespace: hub, sameTenant: true}, ports: [{port: 8786, endPort: 8788}]}]",
        );
        let compiled = compile(&p, &resolved()).expect("compiles");
        let peer = |tenant: Option<&str>, ip: &str| {
            compiled
                .peers
                .get(&(ClassId::User, tenant_id(tenant), ip.parse().unwrap()))
                .cloned()
        };
        let dask_ports = Entry {
            flags: 0,
            ranges: vec![PortRange {
                protocol: TCP,
                first: 8786,
                last: 8788,
            }],
        };
        assert_eq!(peer(Some("alice"), "10.244.2.1"), Some(dask_ports.clone()));
        assert_eq!(
            peer(Some("alice"), "10.244.2.2"),
            None,
            "bob's pod is not alice's"
        );
        assert_eq!(peer(Some("bob"), "10.244.2.2"), Some(dask_ports.clone()));
        assert_eq!(
            peer(None, "10.244.2.3"),
            Some(dask_ports),
            "pods of no tenant: each other's"
        );
        assert_eq!(compiled.peers.len(), 3);
        // The namespace's pods are no prefix of the trie: other tenants' pods stay closed.
        assert!(!allows(
            &compiled.table,
            ClassId::User,
            "10.244.2.2".parse().unwrap(),
            8786,
            TCP
        ));
        assert_ne!(tenant_id(Some("alice")), tenant_id(Some("bob")));
        assert_ne!(tenant_id(None), 0);
    }

    #[test]
    fn a_policy_that_does_not_fit_a_rule_set_is_refused_whole() {
        let cidrs = |count: u32| {
            let list: Vec<String> = (0..count)
                .map(|i| std::net::Ipv4Addr::from(0xc612_0000 + i).to_string() + "/32")
                .collect();
            format!(
                "[{{name: many, to: {{cidrs: [{}]}}, ports: [{{port: 443}}]}}]",
                list.join(", ")
            )
        };
        let dns = "{clusterDNS: {addresses: [10.96.0.10]}}";
        let fits = compile(&policy(dns, &cidrs(30_000)), &resolved()).expect("30,000 fit");
        assert!(fits.table.len() > 30_000);
        match compile(&policy(dns, &cidrs(33_000)), &resolved()) {
            Err(CompileError::TooManyEntries {
                map,
                entries,
                capacity,
            }) => {
                assert_eq!((map, capacity), ("v4_rules", 32_768));
                assert!(entries > 33_000, "{entries}");
            }
            other => panic!("33,000 CIDRs: {other:?}"),
        }
    }

    const PUBLIC_WEB: &str = "[{name: web, to: {cidrs: [0.0.0.0/0, '::/0'], except: [private]}, ports: [{port: 80}, {port: 443}]}, {name: hub, to: {service: hub/hub}, ports: [{port: 8081}]}, {name: dask, to: {namespace: dask}, ports: [{port: 8786, endPort: 8788}]}, {name: wide, to: {cidrs: [198.51.100.0/24]}, ports: [{port: 1, endPort: 65535, protocol: UDP}]}]";

    #[test]
    fn decision_cases() {
        let p = policy("{clusterDNS: {service: kube-system/kube-dns}}", PUBLIC_WEB);
        let table = compile(&p, &resolved()).expect("compiles").table;
        let cases: &[(&str, ClassId, &str, u16, u8, bool)] = &[
            (
                "public https",
                ClassId::User,
                "93.184.216.34",
                443,
                TCP,
                true,
            ),
            (
                "public http v6",
                ClassId::User,
                "2606:2800:220::1",
                80,
                TCP,
                true,
            ),
            (
                "public other port",
                ClassId::User,
                "93.184.216.34",
                22,
                TCP,
                false,
            ),
            (
                "public 443 over udp",
                ClassId::User,
                "93.184.216.34",
                443,
                UDP,
                false,
            ),
            ("private range", ClassId::User, "10.1.2.3", 443, TCP, false),
            (
                "metadata v4",
                ClassId::User,
                "169.254.169.254",
                80,
                TCP,
                false,
            ),
            (
                "metadata v6",
                ClassId::User,
                "fd00:ec2::254",
                80,
                TCP,
                false,
            ),
            (
                "metadata v4-mapped",
                ClassId::User,
                "::ffff:169.254.169.254",
                80,
                TCP,
                false,
            ),
            (
                "public v4-mapped",
                ClassId::User,
                "::ffff:93.184.216.34",
                443,
                TCP,
                true,
            ),
            (
                "cluster dns udp",
                ClassId::User,
                "10.96.0.10",
                53,
                UDP,
                true,
            ),
            (
                "cluster dns tcp",
                ClassId::User,
                "10.96.0.10",
                53,
                TCP,
                true,
            ),
            (
                "cluster dns other port",
                ClassId::User,
                "10.96.0.10",
                80,
                TCP,
                false,
            ),
            ("other dns", ClassId::User, "8.8.8.8", 53, UDP, false),
            (
                "dns inside a wide rule",
                ClassId::User,
                "198.51.100.7",
                53,
                UDP,
                false,
            ),
            (
                "wide rule udp",
                ClassId::User,
                "198.51.100.7",
                5353,
                UDP,
                true,
            ),
            ("service", ClassId::User, "10.96.1.1", 8081, TCP, true),
            (
                "service other port",
                ClassId::User,
                "10.96.1.1",
                80,
                TCP,
                false,
            ),
            (
                "namespace pod",
                ClassId::User,
                "10.244.1.5",
                8787,
                TCP,
                true,
            ),
            (
                "namespace pod v6",
                ClassId::User,
                "fd00:10::5",
                8786,
                TCP,
                true,
            ),
            ("loopback", ClassId::User, "127.0.0.1", 9999, TCP, true),
            ("loopback v6", ClassId::User, "::1", 9999, UDP, true),
            // The kernel routes the unspecified address to loopback; glibc's address sorting
            // and distributed probe routes with UDP connect()s to it.
            (
                "unspecified: this host",
                ClassId::User,
                "0.0.0.0",
                8789,
                UDP,
                true,
            ),
            (
                "unspecified v6: this host",
                ClassId::User,
                "::",
                8789,
                UDP,
                true,
            ),
            (
                "platform anywhere",
                ClassId::Platform,
                "10.1.2.3",
                5432,
                TCP,
                true,
            ),
            (
                "platform metadata",
                ClassId::Platform,
                "169.254.169.254",
                80,
                TCP,
                false,
            ),
            (
                "class without spec",
                ClassId::Dask,
                "10.1.2.3",
                5432,
                TCP,
                true,
            ),
            (
                "class without spec, metadata",
                ClassId::Dask,
                "fd00:ec2::254",
                80,
                TCP,
                false,
            ),
            (
                "exempt metadata: credential endpoints are denied for every class",
                ClassId::Exempt,
                "169.254.169.254",
                80,
                TCP,
                false,
            ),
            (
                "exempt anywhere else",
                ClassId::Exempt,
                "10.1.2.3",
                5432,
                TCP,
                true,
            ),
            (
                "ECS task credentials, platform",
                ClassId::Platform,
                "169.254.170.2",
                80,
                TCP,
                false,
            ),
            (
                "EKS Pod Identity, exempt",
                ClassId::Exempt,
                "169.254.170.23",
                80,
                TCP,
                false,
            ),
            (
                "EKS Pod Identity v6, user",
                ClassId::User,
                "fd00:ec2::23",
                80,
                TCP,
                false,
            ),
            (
                "GCE metadata v6, platform",
                ClassId::Platform,
                "fd20:ce::254",
                80,
                TCP,
                false,
            ),
            (
                "Alibaba metadata, other",
                ClassId::Other,
                "100.100.100.200",
                80,
                TCP,
                false,
            ),
            (
                "Tencent metadata, exempt",
                ClassId::Exempt,
                "169.254.0.23",
                80,
                TCP,
                false,
            ),
            (
                "metadata via NAT64",
                ClassId::User,
                "64:ff9b::a9fe:a9fe",
                80,
                TCP,
                false,
            ),
            (
                "metadata via NAT64, platform",
                ClassId::Platform,
                "64:ff9b::a9fe:a9fe",
                80,
                TCP,
                false,
            ),
            (
                "private via NAT64",
                ClassId::User,
                "64:ff9b::10.1.2.3",
                443,
                TCP,
                false,
            ),
            (
                "public via NAT64",
                ClassId::User,
                "64:ff9b::93.184.216.34",
                443,
                TCP,
                true,
            ),
            (
                "metadata IPv4-compatible",
                ClassId::User,
                "::169.254.169.254",
                80,
                TCP,
                false,
            ),
            (
                "metadata via 6to4, platform",
                ClassId::Platform,
                "2002:a9fe:a9fe::1",
                80,
                TCP,
                false,
            ),
            (
                "private via 6to4",
                ClassId::User,
                "2002:0a01:0203::1",
                443,
                TCP,
                false,
            ),
            (
                "Teredo is not public",
                ClassId::User,
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                443,
                TCP,
                false,
            ),
            (
                "local-use NAT64 is not public",
                ClassId::User,
                "64:ff9b:1::a9fe:a9fe",
                443,
                TCP,
                false,
            ),
            (
                "unmapped dns",
                ClassId::Unmapped,
                "10.96.0.10",
                53,
                UDP,
                true,
            ),
            (
                "unmapped web",
                ClassId::Unmapped,
                "93.184.216.34",
                443,
                TCP,
                false,
            ),
            (
                "unmapped metadata",
                ClassId::Unmapped,
                "169.254.169.254",
                80,
                TCP,
                false,
            ),
        ];
        for (name, class, addr, port, protocol, want) in cases {
            assert_eq!(
                allows(&table, *class, addr.parse().unwrap(), *port, *protocol),
                *want,
                "case {name}"
            );
        }
    }

    #[test]
    fn a_grant_opens_one_endpoint_to_one_class() {
        let p = policy(
            "{clusterDNS: {addresses: [10.96.0.10]}, credentialGrants: [{endpoint: 169.254.170.23, class: platform}]}",
            PUBLIC_WEB,
        );
        let compiled = compile(&p, &resolved()).expect("compiles");
        let table = &compiled.table;
        let eks = "169.254.170.23".parse().unwrap();
        assert!(allows(table, ClassId::Platform, eks, 80, TCP));
        assert!(!allows(table, ClassId::User, eks, 80, TCP));
        assert!(!allows(table, ClassId::Exempt, eks, 80, TCP));
        assert!(!allows(
            table,
            ClassId::Platform,
            "169.254.169.254".parse().unwrap(),
            80,
            TCP
        ));
        let entry = &table[&(ClassId::Platform, "169.254.170.23/32".parse().unwrap())];
        assert_eq!(entry.flags, FLAG_ANY_PORT | FLAG_GRANT);
    }

    #[test]
    fn raw_sockets_and_ip_options_per_class() {
        let p = policy("{clusterDNS: {addresses: [10.96.0.10]}}", PUBLIC_WEB);
        let flags = compile(&p, &resolved()).expect("compiles").class_flags;
        let both = CLASS_RAW_SOCKETS | CLASS_IP_OPTIONS;
        let cases: &[(&str, ClassId, u32)] = &[
            ("a class with egress rules: neither", ClassId::User, 0),
            ("no egress rules: both", ClassId::Platform, both),
            ("no class spec: not filtered", ClassId::Dask, both),
            ("not mapped yet: strictest", ClassId::Unmapped, 0),
            ("exempt", ClassId::Exempt, both),
        ];
        for (name, class, want) in cases {
            assert_eq!(flags[class], *want, "case {name}");
        }
        // A class with egress rules that may open raw sockets still sets no options.
        let raw = Policy::from_yaml(
            "apiVersion: hubguard.dev/v1alpha1\nkind: HubguardPolicy\nmetadata: {name: t}\nspec:\n  classes:\n    user:\n      bundle: restricted\n      rawSockets: true\n      egress: [{name: web, to: {cidrs: [0.0.0.0/0]}, ports: [{port: 443}]}]\n",
            "t.yaml",
        )
        .expect("valid");
        let flags = compile(&raw, &resolved()).expect("compiles").class_flags;
        assert_eq!(flags[&ClassId::User], CLASS_RAW_SOCKETS);
    }

    #[test]
    fn metadata_server_dns_opens_only_dns() {
        let p = policy(
            "{clusterDNS: {addresses: [169.254.169.254]}, metadataServerDNS: true}",
            PUBLIC_WEB,
        );
        let mut r = resolved();
        r.cluster_dns = vec!["169.254.169.254".parse().unwrap()];
        let table = compile(&p, &r).unwrap().table;
        for class in [ClassId::User, ClassId::Platform, ClassId::Unmapped] {
            assert!(allows(
                &table,
                class,
                "169.254.169.254".parse().unwrap(),
                53,
                UDP
            ));
            assert!(!allows(
                &table,
                class,
                "169.254.169.254".parse().unwrap(),
                80,
                TCP
            ));
        }
    }

    #[test]
    fn every_credential_endpoint_is_closed_to_every_class() {
        let p = policy("{clusterDNS: {addresses: [10.96.0.10]}}", PUBLIC_WEB);
        let table = compile(&p, &resolved()).unwrap().table;
        let classes = [
            ClassId::User,
            ClassId::Platform,
            ClassId::Exempt,
            ClassId::Unmapped,
        ];
        for endpoint in hubguard_policy::egress::CREDENTIAL_ENDPOINTS {
            let net: IpNet = endpoint.cidr.parse().unwrap();
            for class in classes {
                for (port, protocol) in [(80, TCP), (443, TCP), (988, TCP), (32526, TCP), (80, UDP)]
                {
                    assert!(
                        !allows(&table, class, net.addr(), port, protocol),
                        "{} port {port} is open to {class:?}",
                        endpoint.cidr
                    );
                }
            }
        }
        // Azure's WireServer is also Azure's DNS: the classes that may send DNS anywhere
        // (the cluster DNS among them) keep it; the user class sends DNS to the cluster DNS only.
        let wireserver = "168.63.129.16".parse().unwrap();
        for (class, dns) in [
            (ClassId::Exempt, true),
            (ClassId::Platform, true),
            (ClassId::User, false),
            (ClassId::Unmapped, false),
        ] {
            assert_eq!(allows(&table, class, wireserver, 53, UDP), dns, "{class:?}");
            assert!(!allows(&table, class, wireserver, 32526, TCP));
        }
    }

    #[test]
    fn unresolved_names_are_reported() {
        let p = policy("{clusterDNS: {service: kube-system/kube-dns}}", PUBLIC_WEB);
        let compiled = compile(&p, &Resolved::default()).unwrap();
        let names: Vec<&str> = compiled.unresolved.iter().map(String::as_str).collect();
        assert_eq!(names, ["namespace dask", "service hub/hub"]);
        assert!(!allows(
            &compiled.table,
            ClassId::User,
            "10.96.1.1".parse().unwrap(),
            8081,
            TCP
        ));
    }

    #[test]
    fn too_many_port_ranges_is_refused() {
        let ports: Vec<String> = (0..17)
            .map(|i| format!("{{port: {}}}", 1000 + 2 * i))
            .collect();
        let egress = format!(
            "[{{name: many, to: {{cidrs: [203.0.113.0/24]}}, ports: [{}]}}]",
            ports.join(", ")
        );
        let p = policy("{clusterDNS: {addresses: [10.96.0.10]}}", &egress);
        let err = compile(&p, &resolved()).unwrap_err();
        assert!(
            err.to_string()
                .contains("203.0.113.0/24 needs 17 port ranges"),
            "{err}"
        );
    }

    #[test]
    fn port_ranges_merge_and_skip_dns() {
        let split = without_dns(PortRange {
            protocol: UDP,
            first: 1,
            last: 100,
        });
        assert_eq!(
            split,
            [
                PortRange {
                    protocol: UDP,
                    first: 1,
                    last: 52
                },
                PortRange {
                    protocol: UDP,
                    first: 54,
                    last: 100
                }
            ]
        );
        let merged = merge(vec![
            PortRange {
                protocol: TCP,
                first: 80,
                last: 80,
            },
            PortRange {
                protocol: TCP,
                first: 81,
                last: 90,
            },
            PortRange {
                protocol: UDP,
                first: 80,
                last: 80,
            },
            PortRange {
                protocol: TCP,
                first: 85,
                last: 100,
            },
        ]);
        assert_eq!(
            merged,
            [
                PortRange {
                    protocol: TCP,
                    first: 80,
                    last: 100
                },
                PortRange {
                    protocol: UDP,
                    first: 80,
                    last: 80
                }
            ]
        );
    }
}
