//! A DaskWorkerGroup names the DaskCluster it joins (`spec.cluster`), and the dask-kubernetes
//! operator adopts its workers into that cluster whoever owns it: a tenant's group could add
//! workers (with its own images and mounts) to another tenant's cluster, or receive that
//! cluster's tasks and data. A tenant's group may join only that tenant's cluster. The
//! webhook looks the cluster up (like the exec check) and refuses when it cannot.

use super::{Check, Findings};
use crate::identity::RequesterKind;
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "daskClusterOwner",
    summary: "a tenant's DaskWorkerGroup joins only that tenant's DaskCluster",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, _class: &ClassPolicy, out: &mut Findings) {
    let is_group = pod.object.get("kind").and_then(|k| k.as_str()) == Some("DaskWorkerGroup");
    if !is_group || pod.requester == RequesterKind::Trusted {
        return;
    }
    let cluster = pod
        .object
        .pointer("/spec/cluster")
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let tenant = pod.tenant();
    let who = tenant.map_or("a requester of no tenant".to_string(), |t| {
        format!("tenant {t}")
    });
    let complaint = match pod.cluster_lookup {
        None => Some(format!(
            "nobody looked up DaskCluster {cluster}, so hubguard cannot confirm it belongs to {who}"
        )),
        Some(Err(why)) => Some(format!(
            "hubguard cannot confirm that DaskCluster {cluster} belongs to {who}: {why}"
        )),
        Some(Ok(owner)) if owner.as_deref() != tenant || tenant.is_none() => Some(format!(
            "DaskCluster {cluster} belongs to {}, not to {who}",
            owner
                .as_deref()
                .map_or("no tenant".to_string(), |o| format!("tenant {o}"))
        )),
        Some(Ok(_)) => None,
    };
    if let Some(message) = complaint {
        out.add(
            "spec.cluster".to_string(),
            message,
            "name a DaskCluster of your own in spec.cluster",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    const GROUP: &str =
        "{kind: DaskWorkerGroup, metadata: {name: extra}, spec: {cluster: bobs-cluster}}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "joins its own cluster",
                    object: Some(GROUP),
                    requester_tenant: Some("alice"),
                    cluster: Some(Ok(Some("alice"))),
                    ..CASE
                },
                Case {
                    name: "joins another tenant's cluster",
                    object: Some(GROUP),
                    requester_tenant: Some("alice"),
                    cluster: Some(Ok(Some("bob"))),
                    expect: &["spec.cluster"],
                    ..CASE
                },
                Case {
                    name: "joins a cluster of no tenant",
                    object: Some(GROUP),
                    requester_tenant: Some("alice"),
                    cluster: Some(Ok(None)),
                    expect: &["spec.cluster"],
                    ..CASE
                },
                Case {
                    name: "the look-up failed",
                    object: Some(GROUP),
                    requester_tenant: Some("alice"),
                    cluster: Some(Err(
                        "daskclusters.kubernetes.dask.org \"bobs-cluster\" not found",
                    )),
                    expect: &["spec.cluster"],
                    ..CASE
                },
                Case {
                    name: "nobody looked",
                    object: Some(GROUP),
                    requester_tenant: Some("alice"),
                    expect: &["spec.cluster"],
                    ..CASE
                },
                Case {
                    name: "an administrator's group",
                    object: Some(GROUP),
                    requester: RequesterKind::Trusted,
                    ..CASE
                },
                Case {
                    name: "not a worker group",
                    requester_tenant: Some("alice"),
                    ..CASE
                },
            ],
        );
    }
}
