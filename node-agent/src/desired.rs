//! What the maps should hold, from the policy and what the agent sees: which cgroup gets which
//! class, and every class's rule entries.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hubguard_policy::identity::{parse_class, CLASS_LABEL};
use hubguard_policy::Policy;

use crate::cgroups;
use crate::classes::ClassId;
use crate::cluster::Inventory;
use crate::events::Owner;
use crate::kernel::Desired;
use crate::rules::{self, Compiled, Resolved};

/// A cgroup the agent maps, and whose it is.
#[derive(Debug, Clone)]
pub struct MappedCgroup {
    pub id: u64,
    pub class: ClassId,
    /// The tenant recorded at admission, if any.
    pub tenant: Option<String>,
    pub owner: Owner,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub desired: Desired,
    pub owners: HashMap<u64, Owner>,
    pub pods_per_class: HashMap<ClassId, i64>,
    /// Pods whose cgroup directory does not exist (yet).
    pub unresolved_pods: Vec<String>,
    /// Pods in governed namespaces with no identity recorded at admission: strictest class.
    pub unrecorded_pods: Vec<String>,
    pub unresolved_destinations: BTreeSet<String>,
}

/// `compiled` is the policy's rules compiled against what the names resolve to now.
pub fn plan(compiled: &Compiled, cgroups: Cgroups, dry_run: bool) -> Plan {
    let Cgroups {
        mapped,
        unresolved: unresolved_pods,
        unrecorded: unrecorded_pods,
    } = cgroups;
    let mut plan = Plan {
        unresolved_pods,
        unrecorded_pods,
        unresolved_destinations: compiled.unresolved.clone(),
        ..Plan::default()
    };
    plan.desired.rules = compiled.table.clone();
    plan.desired.peers = compiled.peers.clone();
    plan.desired.class_flags = compiled.class_flags.clone();
    plan.desired.dry_run = dry_run;
    for cgroup in mapped {
        plan.desired.cgroups.insert(
            cgroup.id,
            (cgroup.class, rules::tenant_id(cgroup.tenant.as_deref())),
        );
        *plan.pods_per_class.entry(cgroup.class).or_default() += 1;
        plan.owners.insert(cgroup.id, cgroup.owner);
    }
    plan
}

/// A running pod's class: the identity hubguard recorded at admission (`hubguard.dev/class`,
/// which `/validate` refuses to let anyone forge), never its component labels, so that the
/// kernel and admission agree on who a pod is. `None`: a pod of a governed namespace with no
/// record (created before hubguard, or while the webhook was bypassed), which gets the
/// strictest class.
pub fn pod_class(
    policy: &Policy,
    namespace: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Option<ClassId> {
    if !policy.governs(namespace) {
        return Some(ClassId::Exempt);
    }
    labels
        .get(CLASS_LABEL)
        .and_then(|c| parse_class(c))
        .map(ClassId::from_pod_class)
}

/// The names the policy's rules resolve through the cluster.
pub fn referenced_namespaces(policy: &Policy) -> BTreeSet<String> {
    hubguard_policy::PodClass::ALL
        .iter()
        .filter_map(|c| policy.class(*c))
        .flat_map(|c| c.egress.iter())
        .filter_map(|r| r.to.namespace.clone())
        .collect()
}

/// This node's pods with their cgroups; the agent's own cgroup is always exempt, so that it
/// can reach the API server even before it has mapped anything.
pub fn cluster_cgroups(
    policy: &Policy,
    inventory: &Inventory,
    pods_tree: &Path,
    own_cgroup: Option<&Path>,
) -> Cgroups {
    let mut mapped = Vec::new();
    let mut unresolved = Vec::new();
    let mut unrecorded = Vec::new();
    for (uid, pod) in &inventory.node_pods {
        let owner = Owner {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
        };
        let class = pod_class(policy, &pod.namespace, &pod.labels).unwrap_or_else(|| {
            unrecorded.push(format!("{}/{}", pod.namespace, pod.name));
            ClassId::Unmapped
        });
        match cgroups::find_pod_cgroup(pods_tree, uid).map(|p| cgroups::cgroup_id(&p)) {
            Some(Ok(id)) => mapped.push(MappedCgroup {
                id,
                class,
                tenant: pod
                    .labels
                    .get(hubguard_policy::identity::TENANT_LABEL)
                    .cloned(),
                owner,
            }),
            _ => unresolved.push(format!("{}/{}", pod.namespace, pod.name)),
        }
    }
    // Only inside the pods' tree: an ancestor of the tree mapped as exempt would exempt every
    // pod the agent has not mapped yet.
    if let Some(own) = own_cgroup.filter(|own| own.starts_with(pods_tree) && *own != pods_tree) {
        if let Ok(id) = cgroups::cgroup_id(own) {
            mapped.retain(|m| m.id != id);
            mapped.push(MappedCgroup {
                id,
                class: ClassId::Exempt,
                tenant: None,
                owner: Owner {
                    namespace: "hubguard".into(),
                    name: "node-agent".into(),
                },
            });
        }
    }
    unresolved.sort();
    unrecorded.sort();
    Cgroups {
        mapped,
        unresolved,
        unrecorded,
    }
}

/// This node's pods as cgroups to map, and the pods that could not be mapped as they are.
#[derive(Debug, Default)]
pub struct Cgroups {
    pub mapped: Vec<MappedCgroup>,
    /// Pods whose cgroup was not found (yet).
    pub unresolved: Vec<String>,
    /// Pods of governed namespaces with no recorded identity (mapped to the strictest class).
    pub unrecorded: Vec<String>,
}

/// Cluster DNS, Services and namespaces' pod IPs, as the policy names them.
pub fn cluster_resolved(policy: &Policy, inventory: &Inventory) -> Resolved {
    let dns = &policy.network.cluster_dns;
    let cluster_dns = if dns.addresses.is_empty() {
        inventory
            .services
            .get(&dns.service)
            .cloned()
            .unwrap_or_default()
    } else {
        dns.addresses.clone()
    };
    let services = namespace_services(inventory);
    Resolved {
        cluster_dns,
        services: inventory.services.clone(),
        namespaces: inventory
            .namespace_pods
            .iter()
            .map(|(ns, pods)| {
                let mut ips: Vec<IpAddr> =
                    pods.values().flat_map(|p| p.ips.iter().copied()).collect();
                ips.extend(
                    services
                        .get(ns.as_str())
                        .into_iter()
                        .flatten()
                        .flat_map(|s| s.ips.iter().copied()),
                );
                (ns.clone(), ips)
            })
            .collect(),
        namespace_tenants: inventory
            .namespace_pods
            .iter()
            .map(|(ns, pods)| {
                let mut peers: Vec<(Option<String>, IpAddr)> = pods
                    .values()
                    .flat_map(|p| p.ips.iter().map(|ip| (p.tenant.clone(), *ip)))
                    .collect();
                for service in services.get(ns.as_str()).into_iter().flatten() {
                    if let Some(tenant) = service_tenant(service.selector, pods) {
                        peers.extend(service.ips.iter().map(|ip| (tenant.clone(), *ip)));
                    }
                }
                peers.sort();
                peers.dedup();
                (ns.clone(), peers)
            })
            .collect(),
    }
}

/// A Service with a selector: its cluster IPs lead only to pods of its own namespace.
struct SelectingService<'a> {
    ips: &'a [IpAddr],
    selector: &'a std::collections::BTreeMap<String, String>,
}

/// The Services with a selector and a cluster IP, by namespace.
fn namespace_services(inventory: &Inventory) -> HashMap<&str, Vec<SelectingService<'_>>> {
    let mut by_namespace: HashMap<&str, Vec<SelectingService<'_>>> = HashMap::new();
    for (key, selector) in &inventory.service_selectors {
        let Some(ips) = inventory.services.get(key).filter(|ips| !ips.is_empty()) else {
            continue;
        };
        let namespace = key.split_once('/').map_or("", |(ns, _)| ns);
        by_namespace
            .entry(namespace)
            .or_default()
            .push(SelectingService { ips, selector });
    }
    by_namespace
}

/// Whose a Service's cluster IP is: the one tenant (or "no tenant") of every pod it selects,
/// ready or not. A Service that selects no pod, or pods of more than one tenant, is nobody's
/// peer: whoever reached it could be sent to another tenant's pod.
fn service_tenant(
    selector: &std::collections::BTreeMap<String, String>,
    pods: &HashMap<String, crate::cluster::PeerPod>,
) -> Option<Option<String>> {
    let mut selected = pods.values().filter(|pod| {
        selector
            .iter()
            .all(|(key, value)| pod.labels.get(key) == Some(value))
    });
    let tenant = selected.next()?.tenant.clone();
    selected.all(|pod| pod.tenant == tenant).then_some(tenant)
}

/// Standalone: the listed cgroups with their classes; one that is missing (removed, perhaps to
/// be made again) is left out until it is back.
pub fn standalone_cgroups(cgroups: &[(PathBuf, ClassId)]) -> Cgroups {
    let mut out = Cgroups::default();
    for (path, class) in cgroups {
        match cgroups::cgroup_id(path) {
            Ok(id) => out.mapped.push(MappedCgroup {
                id,
                class: *class,
                tenant: None,
                owner: Owner {
                    namespace: "standalone".into(),
                    name: path.display().to_string(),
                },
            }),
            Err(_) => out.unresolved.push(path.display().to_string()),
        }
    }
    out
}

/// Standalone DNS: the policy's addresses, else the host's resolvers.
pub fn standalone_resolved(policy: &Policy, resolv_conf: &str) -> Resolved {
    let addresses = &policy.network.cluster_dns.addresses;
    let cluster_dns: Vec<IpAddr> = if addresses.is_empty() {
        resolv_conf
            .lines()
            .filter_map(|l| l.trim().strip_prefix("nameserver"))
            .filter_map(|a| a.trim().parse().ok())
            .collect()
    } else {
        addresses.clone()
    };
    Resolved {
        cluster_dns,
        ..Resolved::default()
    }
}

/// The process's own cgroup v2 directory, from /proc/self/cgroup (`0::/path`).
pub fn own_cgroup(cgroup_root: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let relative = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(cgroup_root.join(relative.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn policy() -> Policy {
        Policy::from_yaml(
            "apiVersion: hubguard.dev/v1alpha1\nkind: HubguardPolicy\nmetadata: {name: t}\nspec:\n  namespaces: {exclude: [kube-system]}\n  classes:\n    user: {bundle: restricted, egress: [{name: d, to: {namespace: dask}, ports: [{port: 8786}]}]}\n",
            "t.yaml",
        )
        .unwrap()
    }

    /// name, namespace, labels, expected class
    type ClassCase = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        Option<ClassId>,
    );

    #[test]
    fn class_cases() {
        let p = policy();
        let cases: &[ClassCase] = &[
            (
                "recorded user",
                "hub",
                &[
                    ("hubguard.dev/class", "user"),
                    ("hubguard.dev/tenant", "alice"),
                ],
                Some(ClassId::User),
            ),
            (
                "recorded user, no component label",
                "hub",
                &[("hubguard.dev/class", "user")],
                Some(ClassId::User),
            ),
            (
                "recorded dask",
                "hub",
                &[
                    ("hubguard.dev/class", "dask"),
                    ("dask.org/component", "worker"),
                ],
                Some(ClassId::Dask),
            ),
            (
                "recorded platform",
                "hub",
                &[("hubguard.dev/class", "platform"), ("component", "hub")],
                Some(ClassId::Platform),
            ),
            (
                "component labels without a record: strictest",
                "hub",
                &[("component", "hub")],
                None,
            ),
            ("no labels at all", "hub", &[], None),
            (
                "a record naming no class",
                "hub",
                &[("hubguard.dev/class", "root")],
                None,
            ),
            (
                "ungoverned namespace",
                "kube-system",
                &[("component", "singleuser-server")],
                Some(ClassId::Exempt),
            ),
        ];
        for (name, ns, labels, want) in cases {
            let labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(pod_class(&p, ns, &labels), *want, "case {name}");
        }
    }

    /// A Service's name and selector, and the peers its cluster IP is expected to give.
    type ServiceCase = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static [Option<&'static str>],
    );

    #[test]
    fn service_cluster_ips_are_the_peers_of_the_one_tenant_they_lead_to() {
        let pod =
            |tenant: Option<&str>, ip: &str, labels: &[(&str, &str)]| crate::cluster::PeerPod {
                ips: vec![ip.parse().unwrap()],
                tenant: tenant.map(str::to_string),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
        let pods = HashMap::from([
            (
                "a1".to_string(),
                pod(
                    Some("alice"),
                    "10.244.0.11",
                    &[
                        ("dask.org/cluster-name", "a"),
                        ("dask.org/component", "scheduler"),
                    ],
                ),
            ),
            (
                "a2".to_string(),
                pod(
                    Some("alice"),
                    "10.244.0.12",
                    &[
                        ("dask.org/cluster-name", "a"),
                        ("dask.org/component", "worker"),
                    ],
                ),
            ),
            (
                "b1".to_string(),
                pod(
                    Some("bob"),
                    "10.244.0.21",
                    &[
                        ("dask.org/cluster-name", "b"),
                        ("dask.org/component", "scheduler"),
                    ],
                ),
            ),
            (
                "h".to_string(),
                pod(None, "10.244.0.2", &[("component", "hub")]),
            ),
        ]);
        let cases: &[ServiceCase] = &[
            (
                "alice's scheduler",
                &[
                    ("dask.org/cluster-name", "a"),
                    ("dask.org/component", "scheduler"),
                ],
                &[Some("alice")],
            ),
            (
                "all of alice's cluster",
                &[("dask.org/cluster-name", "a")],
                &[Some("alice")],
            ),
            (
                "bob's scheduler",
                &[("dask.org/cluster-name", "b")],
                &[Some("bob")],
            ),
            ("the hub: no tenant", &[("component", "hub")], &[None]),
            (
                "both tenants' schedulers: nobody's",
                &[("dask.org/component", "scheduler")],
                &[],
            ),
            (
                "selects nothing: nobody's",
                &[("dask.org/cluster-name", "c")],
                &[],
            ),
        ];
        for (index, (name, selector, want)) in cases.iter().enumerate() {
            let key = format!("hub/svc-{index}");
            let ip: IpAddr = format!("10.96.5.{}", index + 1).parse().unwrap();
            let inventory = Inventory {
                services: HashMap::from([(key.clone(), vec![ip])]),
                service_selectors: HashMap::from([(
                    key,
                    selector
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )]),
                namespace_pods: HashMap::from([("hub".to_string(), pods.clone())]),
                ..Inventory::default()
            };
            let resolved = cluster_resolved(&policy(), &inventory);
            let owners: Vec<Option<&str>> = resolved.namespace_tenants["hub"]
                .iter()
                .filter(|(_, peer)| *peer == ip)
                .map(|(tenant, _)| tenant.as_deref())
                .collect();
            assert_eq!(owners, *want, "case {name}");
            assert!(
                resolved.namespaces["hub"].contains(&ip),
                "case {name}: a Service with a selector leads into its namespace"
            );
        }
        // A Service without a selector routes wherever its hand-made endpoints say.
        let inventory = Inventory {
            services: HashMap::from([(
                "hub/manual".to_string(),
                vec!["10.96.6.1".parse().unwrap()],
            )]),
            namespace_pods: HashMap::from([("hub".to_string(), pods)]),
            ..Inventory::default()
        };
        let resolved = cluster_resolved(&policy(), &inventory);
        let manual: IpAddr = "10.96.6.1".parse().unwrap();
        assert!(!resolved.namespaces["hub"].contains(&manual));
        assert!(!resolved.namespace_tenants["hub"]
            .iter()
            .any(|(_, ip)| *ip == manual));
    }

    #[test]
    fn resolv_conf_is_the_standalone_fallback() {
        let r = standalone_resolved(
            &policy(),
            "search x\nnameserver 10.0.0.2\nnameserver fd00::53\n",
        );
        assert_eq!(
            r.cluster_dns,
            [
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::53".parse().unwrap()
            ]
        );
        assert_eq!(
            referenced_namespaces(&policy()),
            BTreeSet::from(["dask".to_string()])
        );
    }
}
