//! One rule per file, registered here. A rule's file holds all of its knowledge: its
//! configuration types, its values at each Pod Security Standards level (`level`), the
//! validation and normalisation of its settings, its evaluation of a [`PodSubject`], and where
//! PodSecurityPolicy defaulted its field, that default (the webhook's mutate path). Adding a
//! rule is adding a file, a line in [`CHECKS`], and the field that names its settings in the
//! policy schema (`Controls` or `ClassSpec`); a test fails when a registered rule has no case
//! table or no corpus attack. Rules on the Services an object asks for, and on actions on
//! existing objects (delete, exec), are registered the same way, in [`SERVICE_CHECKS`] and
//! [`ACTION_CHECKS`].

use crate::action::ActionSubject;
use crate::controls::Controls;
use crate::defaults::PodDefault;
use crate::pod::{ContainerView, PodSubject};
use crate::policy::ClassPolicy;
use crate::service::ServiceSubject;
use crate::validate::FieldErrors;

mod apparmor;
pub(crate) mod capabilities;
pub(crate) mod csi_drivers;
mod dask_cluster_owner;
mod ephemeral_volumes;
pub(crate) mod flex_volumes;
mod fs_group;
mod host_ipc;
mod host_network;
pub(crate) mod host_paths;
mod host_pid;
mod host_ports;
mod host_probes;
mod host_process;
mod images;
mod platform_labels;
mod privilege_escalation;
mod privileged;
mod proc_mount;
mod read_only_root_filesystem;
mod recorded_identity;
mod resources;
mod run_as_group;
pub(crate) mod run_as_user;
pub(crate) mod runtime_class;
pub mod scheduling;
mod seccomp;
pub mod secrets;
pub(crate) mod selinux;
pub mod service_accounts;
mod service_exposure;
pub mod service_names;
mod service_selector;
mod supplemental_groups;
pub(crate) mod support;
mod sysctls;
mod template_record;
pub(crate) mod tenant_actions;
mod tenant_label;
mod tenant_volumes;
pub mod untrusted_requesters;
pub(crate) mod volume_types;

#[cfg(test)]
pub(crate) mod testing;

pub type Evaluate = fn(&PodSubject<'_>, &ClassPolicy, &mut Findings);
/// The defaults the check sets where a pod of the class leaves the field unset.
pub type Defaults = fn(&ClassPolicy, &mut Vec<PodDefault>);
/// Refuses the rule's part of a class's controls that cannot be enforced; `path` is where the
/// controls sit in the document.
pub type ValidateControls = fn(&Controls, &str, &mut FieldErrors);
/// Sets the rule's controls to their value at a Pod Security Standards level.
pub type SetLevel = fn(&mut Controls, Level);
/// Brings the rule's controls to one spelling before anything reads them.
pub type Normalise = fn(&mut Controls);

/// The Pod Security Standards levels a class's `bundle` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Baseline,
    Restricted,
}

pub struct Check {
    /// The rule id: used in policy `modes`, metrics labels and messages.
    pub id: &'static str,
    /// What the check enforces, one line (docs/policy-reference.md lists them).
    pub summary: &'static str,
    pub evaluate: Evaluate,
    pub defaults: Option<Defaults>,
    pub validate: Option<ValidateControls>,
    /// The rule's values in the bundles (`restricted` is baseline plus what it sets more).
    pub level: Option<SetLevel>,
    pub normalise: Option<Normalise>,
}

/// The controls of a Pod Security Standards level, as the rules set them.
pub fn level_controls(level: Level) -> Controls {
    let mut controls = Controls::default();
    for check in CHECKS {
        if let Some(set) = check.level {
            set(&mut controls, level);
        }
    }
    controls
}

/// Every rule's normalisation of a class's controls.
pub fn normalise_controls(mut controls: Controls) -> Controls {
    for check in CHECKS {
        if let Some(normalise) = check.normalise {
            normalise(&mut controls);
        }
    }
    controls
}

/// Every rule's validation of a class's controls.
pub fn validate_controls(controls: &Controls, path: &str, errs: &mut FieldErrors) {
    for check in CHECKS {
        if let Some(validate) = check.validate {
            validate(controls, path, errs);
        }
    }
}

pub static CHECKS: &[Check] = &[
    privileged::CHECK,
    host_pid::CHECK,
    host_ipc::CHECK,
    host_process::CHECK,
    host_network::CHECK,
    host_ports::CHECK,
    volume_types::CHECK,
    host_paths::CHECK,
    flex_volumes::CHECK,
    csi_drivers::CHECK,
    run_as_user::CHECK,
    run_as_group::CHECK,
    supplemental_groups::CHECK,
    fs_group::CHECK,
    selinux::CHECK,
    read_only_root_filesystem::CHECK,
    privilege_escalation::CHECK,
    capabilities::CHECK,
    proc_mount::CHECK,
    sysctls::CHECK,
    seccomp::CHECK,
    apparmor::CHECK,
    runtime_class::CHECK,
    host_probes::CHECK,
    untrusted_requesters::CHECK,
    recorded_identity::CHECK,
    template_record::CHECK,
    tenant_label::CHECK,
    platform_labels::CHECK,
    service_accounts::CHECK,
    secrets::CHECK,
    tenant_volumes::CHECK,
    ephemeral_volumes::CHECK,
    images::CHECK,
    resources::CHECK,
    scheduling::CHECK,
    dask_cluster_owner::CHECK,
];

/// Validates the parts of a class spec that rules own; `path` is the class's place in the
/// document.
pub fn validate_class(
    spec: &crate::model::ClassSpec,
    path: &str,
    errs: &mut crate::validate::FieldErrors,
) {
    if let Some(rules) = &spec.service_accounts {
        service_accounts::validate(rules, &format!("{path}.serviceAccounts"), errs);
    }
    if let Some(rules) = &spec.secrets {
        secrets::validate(rules, &format!("{path}.secrets"), errs);
    }
    if let Some(rules) = &spec.scheduling {
        scheduling::validate(rules, &format!("{path}.scheduling"), errs);
    }
    if let Some(rules) = &spec.volumes {
        tenant_volumes::validate(rules, &format!("{path}.volumes"), errs);
    }
}

/// Every rule's defaults for a class, in the rules' order.
pub fn class_defaults(class: &ClassPolicy) -> Vec<PodDefault> {
    let mut out = Vec::new();
    for check in CHECKS {
        if let Some(defaults) = check.defaults {
            defaults(class, &mut out);
        }
    }
    out
}

/// A rule on a Service spec: a Service's own, or the one a Dask resource asks the operator
/// for. Its mode is the mode of the class the requester's pods would get.
pub struct ServiceCheck {
    pub id: &'static str,
    pub summary: &'static str,
    pub evaluate: fn(&ServiceSubject<'_>, &mut Findings),
}

pub static SERVICE_CHECKS: &[ServiceCheck] = &[
    service_exposure::CHECK,
    service_selector::CHECK,
    service_names::CHECK,
];

/// A rule on an action on an existing object (delete, exec, attach, port-forward). Its mode
/// is the mode of the class the requester's pods would get.
pub struct ActionCheck {
    pub id: &'static str,
    pub summary: &'static str,
    pub evaluate: fn(&ActionSubject<'_>, &mut Findings),
}

pub static ACTION_CHECKS: &[ActionCheck] = &[tenant_actions::CHECK];

/// Every rule's id and summary: the pod rules, the Service rules, the action rules.
pub fn rules() -> impl Iterator<Item = (&'static str, &'static str)> {
    CHECKS
        .iter()
        .map(|c| (c.id, c.summary))
        .chain(SERVICE_CHECKS.iter().map(|c| (c.id, c.summary)))
        .chain(ACTION_CHECKS.iter().map(|c| (c.id, c.summary)))
}

pub fn rule_ids() -> impl Iterator<Item = &'static str> {
    rules().map(|(id, _)| id)
}

pub fn is_rule_id(id: &str) -> bool {
    rule_ids().any(|r| r == id)
}

/// One thing wrong with a pod: where, what, and the change that fixes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// z2jh adds this init container to block the metadata endpoint with iptables; hubguard's node
/// agent does that job, so the fix is to turn the container off, not to harden it.
const Z2JH_METADATA_BLOCKER: &str = "block-cloud-metadata";
const Z2JH_METADATA_FIX: &str = "set singleuser.cloudMetadata.blockWithIptables: false in the \
    z2jh values: hubguard's node agent blocks the metadata endpoint without a privileged init \
    container";

/// Collects the findings of the check currently running.
#[derive(Debug, Default)]
pub struct Findings {
    rule: &'static str,
    items: Vec<Finding>,
}

impl Findings {
    pub(crate) fn start(&mut self, rule: &'static str) {
        self.rule = rule;
    }

    pub fn add(&mut self, path: String, message: String, fix: impl Into<String>) {
        self.items.push(Finding {
            rule: self.rule,
            path,
            message,
            fix: fix.into(),
        });
    }

    /// A finding about one container; `rest` is the field below the container.
    pub fn add_for(
        &mut self,
        container: &ContainerView<'_>,
        rest: &str,
        message: String,
        fix: impl Into<String>,
    ) {
        let fix = if container.name == Z2JH_METADATA_BLOCKER {
            Z2JH_METADATA_FIX.to_string()
        } else {
            fix.into()
        };
        self.add(container.path(rest), message, fix);
    }

    pub fn into_vec(self) -> Vec<Finding> {
        self.items
    }
}

/// Whether a profile name is covered by a list of allowed profiles (`Localhost/*` covers every
/// local profile).
pub fn profile_is_allowed(allowed: &[String], profile: &str) -> bool {
    support::profile_allowed(allowed, profile)
}
