//! PSP `hostPorts`: host ports only inside the allowed ranges (an empty list allows none).

use super::{Check, Findings};
use crate::controls::{describe_ranges, in_ranges};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "hostPorts",
    summary: "container host ports must lie in the allowed ranges",
    evaluate,
    defaults: None,
    validate: Some(validate),
    level: Some(level),
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(ranges) = &class.controls.host_ports else {
        return;
    };
    for c in pod.containers() {
        for (j, port) in c.ports.iter().enumerate() {
            let Some(host_port) = port.host_port.filter(|p| *p != 0) else {
                continue;
            };
            if !in_ranges(ranges, i64::from(host_port)) {
                let allowed = if ranges.is_empty() {
                    "no host ports are allowed".to_string()
                } else {
                    format!("allowed: {}", describe_ranges(ranges))
                };
                out.add_for(
                    &c,
                    &format!("ports[{j}].hostPort"),
                    format!(
                        "container '{}' binds host port {host_port} ({allowed})",
                        c.name
                    ),
                    "remove hostPort and reach the container through a Service",
                );
            }
        }
    }
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.host_ports = Some(Vec::new());
}

fn validate(c: &crate::controls::Controls, path: &str, errs: &mut crate::validate::FieldErrors) {
    if let Some(ports) = &c.host_ports {
        super::support::validate_ranges(ports, &format!("{path}.hostPorts"), (0, 65535), errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "container port only",
                    policy: "controls: {hostPorts: []}",
                    pod: "{containers: [{name: a, ports: [{containerPort: 8888}]}]}",
                    ..CASE
                },
                Case {
                    name: "host port zero is unset",
                    policy: "controls: {hostPorts: []}",
                    pod: "{containers: [{name: a, ports: [{containerPort: 80, hostPort: 0}]}]}",
                    ..CASE
                },
                Case {
                    name: "none allowed",
                    policy: "controls: {hostPorts: []}",
                    pod: "{containers: [{name: a, ports: [{containerPort: 80}, {containerPort: 22, hostPort: 22}]}]}",
                    expect: &["spec.containers[0].ports[1].hostPort"],
                    ..CASE
                },
                Case {
                    name: "inside a range",
                    policy: "controls: {hostPorts: [{min: 8000, max: 8100}]}",
                    pod: "{containers: [{name: a, ports: [{containerPort: 80, hostPort: 8080}]}]}",
                    ..CASE
                },
                Case {
                    name: "outside the range, init container",
                    policy: "controls: {hostPorts: [{min: 8000, max: 8100}]}",
                    pod: "{containers: [{name: a}], initContainers: [{name: i, ports: [{containerPort: 80, hostPort: 9000}]}]}",
                    expect: &["spec.initContainers[0].ports[0].hostPort"],
                    ..CASE
                },
            ],
        );
    }
}
