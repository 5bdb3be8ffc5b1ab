//! A Service that is not a plain ClusterIP reaches past the cluster or past its own pods: a
//! `NodePort` or `LoadBalancer` publishes its pods (a notebook's unauthenticated Dask
//! dashboard, or another tenant's pods it selects) outside the cluster; `externalIPs` makes
//! every node take traffic for any address the tenant names and hand it to her pods
//! (CVE-2020-8554: the address of a public service, or of the platform's); `ExternalName`
//! turns a name the platform's clients trust into any host. A tenant's Service, and the
//! scheduler Service a tenant's Dask resource asks the operator for, is a ClusterIP (or
//! headless) Service with neither.

use super::{Findings, ServiceCheck};
use crate::identity::RequesterKind;
use crate::service::ServiceSubject;

pub const CHECK: ServiceCheck = ServiceCheck {
    id: "serviceExposure",
    summary:
        "a tenant's Service is ClusterIP: no NodePort, LoadBalancer, ExternalName or externalIPs",
    evaluate,
};

fn evaluate(service: &ServiceSubject<'_>, out: &mut Findings) {
    if service.requester == RequesterKind::Trusted {
        return;
    }
    let kind = service
        .field("type")
        .and_then(|t| t.as_str())
        .unwrap_or("ClusterIP");
    if kind != "ClusterIP" {
        let reach = match kind {
            "NodePort" => "publishes its pods on a port of every node",
            "LoadBalancer" => "publishes its pods through the cloud's load balancer",
            "ExternalName" => "answers for its name with any host it names",
            _ => "is no type Kubernetes knows",
        };
        out.add(
            service.path("type"),
            format!("Service type {kind} {reach}"),
            "leave spec.type unset (ClusterIP); users reach their servers through the hub's proxy",
        );
    }
    let external: Vec<&str> = service
        .field("externalIPs")
        .and_then(|ips| ips.as_array())
        .map(|ips| ips.iter().filter_map(|ip| ip.as_str()).collect())
        .unwrap_or_default();
    if !external.is_empty() {
        out.add(
            service.path("externalIPs"),
            format!(
                "externalIPs {} would send every pod's and node's traffic for those addresses \
                 to this Service's pods",
                external.join(", ")
            ),
            "remove spec.externalIPs",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run_service, ServiceCase, SERVICE_CASE};

    #[test]
    fn cases() {
        run_service(
            &CHECK,
            &[
                ServiceCase {
                    name: "a plain ClusterIP Service",
                    spec: "{selector: {app: viewer}, ports: [{port: 8080}]}",
                    requester_tenant: Some("alice"),
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "headless",
                    spec: "{clusterIP: None, type: ClusterIP}",
                    requester_tenant: Some("alice"),
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "NodePort",
                    spec: "{type: NodePort}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.type"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "LoadBalancer with externalIPs",
                    spec: "{type: LoadBalancer, externalIPs: [203.0.113.7]}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.type", "spec.externalIPs"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "ExternalName",
                    spec: "{type: ExternalName, externalName: evil.example}",
                    requester: RequesterKind::Untrusted,
                    expect: &["spec.type"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "externalIPs on a ClusterIP Service (CVE-2020-8554)",
                    spec: "{externalIPs: [10.96.0.1]}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.externalIPs"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "a Dask resource's scheduler Service",
                    base: "spec.scheduler.service",
                    spec: "{type: LoadBalancer}",
                    requester_tenant: Some("alice"),
                    expect: &["spec.scheduler.service.type"],
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "the platform's own LoadBalancer",
                    spec: "{type: LoadBalancer}",
                    requester: RequesterKind::Trusted,
                    ..SERVICE_CASE
                },
                ServiceCase {
                    name: "offline, nobody asking",
                    spec: "{type: NodePort}",
                    expect: &["spec.type"],
                    ..SERVICE_CASE
                },
            ],
        );
    }
}
