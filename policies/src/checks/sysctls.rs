//! PSP `allowedUnsafeSysctls` and `forbiddenSysctls`: the safe set is always allowed unless
//! forbidden; others only when listed as allowed unsafe. Entries may end in `*`.

use super::support::glob_match;
use super::{Check, Findings};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "sysctls",
    summary: "pods may set only safe or explicitly allowed sysctls",
    evaluate,
    defaults: None,
    validate: None,
    level: Some(level),
    normalise: None,
};

/// Namespaced sysctls the kubelet allows by default (Pod Security Standards baseline).
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
    "net.ipv4.tcp_slow_start_after_idle",
    "net.ipv4.tcp_notsent_lowat",
];

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let controls = &class.controls;
    if controls.allowed_unsafe_sysctls.is_none() && controls.forbidden_sysctls.is_none() {
        return;
    }
    let forbidden = controls.forbidden_sysctls.as_deref().unwrap_or_default();
    let unsafe_ok = controls
        .allowed_unsafe_sysctls
        .as_deref()
        .unwrap_or_default();
    let sysctls = pod
        .pod_security()
        .and_then(|p| p.sysctls.as_deref())
        .unwrap_or_default();
    for (i, sysctl) in sysctls.iter().enumerate() {
        let name = sysctl.name.as_str();
        let complaint = if forbidden.iter().any(|p| glob_match(p, name)) {
            Some(format!("sysctl {name} is forbidden by the policy"))
        } else if SAFE_SYSCTLS.contains(&name) || unsafe_ok.iter().any(|p| glob_match(p, name)) {
            None
        } else {
            Some(format!(
                "sysctl {name} is not in the safe set and not allowed as unsafe"
            ))
        };
        if let Some(message) = complaint {
            out.add(
                pod.path(&format!("securityContext.sysctls[{i}].name")),
                message,
                "remove the sysctl (or ask for it in the policy's allowedUnsafeSysctls)",
            );
        }
    }
}

fn level(c: &mut crate::controls::Controls, _: super::Level) {
    c.allowed_unsafe_sysctls = Some(Vec::new());
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
                    name: "safe since 1.37",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {sysctls: [{name: net.ipv4.tcp_slow_start_after_idle, value: '0'}, {name: net.ipv4.tcp_notsent_lowat, value: '16384'}]}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "safe sysctl",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {sysctls: [{name: net.ipv4.tcp_syncookies, value: '1'}]}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "unsafe sysctl",
                    policy: "bundle: baseline",
                    pod: "{securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.sysctls[0].name"],
                    ..CASE
                },
                Case {
                    name: "unsafe allowed by glob",
                    policy: "controls: {allowedUnsafeSysctls: ['kernel.msg*']}",
                    pod: "{securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}, containers: [{name: a}]}",
                    ..CASE
                },
                Case {
                    name: "safe but forbidden",
                    policy: "controls: {forbiddenSysctls: ['net.ipv4.*']}",
                    pod: "{securityContext: {sysctls: [{name: kernel.shm_rmid_forced, value: '1'}, {name: net.ipv4.tcp_syncookies, value: '0'}]}, containers: [{name: a}]}",
                    expect: &["spec.securityContext.sysctls[1].name"],
                    ..CASE
                },
                Case {
                    name: "not configured",
                    pod: "{securityContext: {sysctls: [{name: kernel.msgmax, value: '1'}]}, containers: [{name: a}]}",
                    ..CASE
                },
            ],
        );
    }
}
