//! Pod Security Standards baseline (1.34+), probes and lifecycle handlers: the kubelet calls
//! `httpGet` and `tcpSocket` handlers from the node's own network namespace, past the node
//! agent's per-pod filter, so a `host` there makes the node itself fetch any address — the
//! metadata endpoint included.

use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "hostProbes",
    summary: "probes and lifecycle handlers may not name a host",
    evaluate,
    defaults: None,
    validate: None,
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    if class.controls.host_probes != Some(false) {
        return;
    }
    for c in pod.containers() {
        let mut hosts: Vec<(String, &str)> = Vec::new();
        for (name, probe) in c.probes {
            let Some(probe) = probe else { continue };
            if let Some(h) = probe.http_get.as_ref().and_then(|g| g.host.as_deref()) {
                hosts.push((format!("{name}.httpGet.host"), h));
            }
            if let Some(h) = probe.tcp_socket.as_ref().and_then(|t| t.host.as_deref()) {
                hosts.push((format!("{name}.tcpSocket.host"), h));
            }
        }
        let handlers = c.lifecycle.map(|l| {
            [
                ("postStart", l.post_start.as_ref()),
                ("preStop", l.pre_stop.as_ref()),
            ]
        });
        for (name, handler) in handlers.into_iter().flatten() {
            let Some(handler) = handler else { continue };
            if let Some(h) = handler.http_get.as_ref().and_then(|g| g.host.as_deref()) {
                hosts.push((format!("lifecycle.{name}.httpGet.host"), h));
            }
            if let Some(h) = handler.tcp_socket.as_ref().and_then(|t| t.host.as_deref()) {
                hosts.push((format!("lifecycle.{name}.tcpSocket.host"), h));
            }
        }
        for (field, host) in hosts.into_iter().filter(|(_, h)| !h.is_empty()) {
            out.add_for(
                &c,
                &field,
                format!(
                    "container '{}' makes the kubelet connect to host {host} from the node",
                    c.name
                ),
                format!("remove {field}: the kubelet then calls the pod's own address"),
            );
        }
    }
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.host_probes = Some(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    const BASELINE: &str = "bundle: baseline";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "probes on the pod's own address",
                    policy: BASELINE,
                    pod: "{containers: [{name: a, livenessProbe: {httpGet: {path: /api, port: 8888}}, readinessProbe: {tcpSocket: {port: 8888, host: ''}}}]}",
                    ..CASE
                },
                Case {
                    name: "the metadata endpoint through a liveness probe",
                    policy: BASELINE,
                    pod: "{containers: [{name: a, livenessProbe: {httpGet: {host: 169.254.169.254, path: /latest/meta-data/iam/security-credentials/, port: 80}}}]}",
                    expect: &["spec.containers[0].livenessProbe.httpGet.host"],
                    ..CASE
                },
                Case {
                    name: "a private host through a startup tcp probe of an init container",
                    policy: BASELINE,
                    pod: "{containers: [{name: a}], initContainers: [{name: i, restartPolicy: Always, startupProbe: {tcpSocket: {host: 10.0.0.1, port: 5432}}}]}",
                    expect: &["spec.initContainers[0].startupProbe.tcpSocket.host"],
                    ..CASE
                },
                Case {
                    name: "a lifecycle hook",
                    policy: BASELINE,
                    pod: "{containers: [{name: a, lifecycle: {preStop: {httpGet: {host: hub, port: 8081, path: /hub/api}}}}]}",
                    expect: &["spec.containers[0].lifecycle.preStop.httpGet.host"],
                    ..CASE
                },
                Case {
                    name: "not configured",
                    pod: "{containers: [{name: a, livenessProbe: {httpGet: {host: 169.254.169.254, port: 80}}}]}",
                    ..CASE
                },
            ],
        );
    }
}
