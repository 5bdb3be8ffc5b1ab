//! Loading, validating and compiling a policy document. A policy that fails here is refused
//! whole, with every problem named by its field path.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use regex::Regex;

use crate::bundles::bundle;
use crate::checks::is_rule_id;
use crate::classify::{PodClass, Standing};
use crate::controls::Controls;
use crate::egress::{validate_network, validate_rules, EgressRule, NetworkSpec};
use crate::image::validate_pattern;
use crate::model::{ClassSpec, ImageRules, Mode, PolicyDocument, TenantVolumes, API_VERSION, KIND};
use crate::quantity::parse_quantity;
use crate::validate::{FieldError, FieldErrors};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read the policy: {error}")]
    Read {
        file: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{file}: {path}: {message}")]
    Parse {
        file: String,
        path: String,
        message: String,
    },
    #[error("{file}: the policy is invalid:\n{}", list(errors))]
    Invalid {
        file: String,
        errors: Vec<FieldError>,
    },
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Who is asking: the username and groups from the API server's `userInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requester {
    pub username: String,
    pub groups: Vec<String>,
}

impl Requester {
    /// The requester as the API server authenticates `username`: a service account
    /// (`system:serviceaccount:NS:NAME`) also gets the groups its token authenticator adds
    /// (`system:serviceaccounts`, `system:serviceaccounts:NS`, `system:authenticated`), so an
    /// offline check of a service account sees the groups the webhook would.
    pub fn authenticated(username: String, mut groups: Vec<String>) -> Requester {
        if let Some(namespace) = username
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(namespace, _)| namespace)
        {
            for group in [
                "system:serviceaccounts".to_string(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_string(),
            ] {
                if !groups.contains(&group) {
                    groups.push(group);
                }
            }
        }
        Requester { username, groups }
    }
}

#[cfg(test)]
mod requester_tests {
    use super::Requester;

    #[test]
    fn service_accounts_get_the_groups_the_api_server_adds() {
        let sa = Requester::authenticated(
            "system:serviceaccount:kube-system:job-controller".into(),
            vec!["system:authenticated".into()],
        );
        assert_eq!(
            sa.groups,
            [
                "system:authenticated",
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system"
            ]
        );
        let person = Requester::authenticated("alice".into(), vec!["staff".into()]);
        assert_eq!(person.groups, ["staff"]);
        let odd = Requester::authenticated("system:serviceaccount:nonamespace".into(), vec![]);
        assert!(odd.groups.is_empty());
    }
}

/// A cap on a resource: its value in base units and as the operator wrote it.
#[derive(Debug, Clone)]
pub struct Cap {
    pub value: f64,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct ResourceLimits {
    pub require_limits: bool,
    pub max_cpu: Option<Cap>,
    pub max_memory: Option<Cap>,
    pub max_pod_cpu: Option<Cap>,
    pub max_pod_memory: Option<Cap>,
}

/// One class's rules, ready for the checks.
#[derive(Debug, Clone)]
pub struct ClassPolicy {
    pub class: PodClass,
    pub mode: Mode,
    modes: BTreeMap<String, Mode>,
    pub mutate: bool,
    pub controls: Controls,
    pub volumes: Option<TenantVolumes>,
    pub images: Option<ImageRules>,
    pub resources: Option<ResourceLimits>,
    pub service_accounts: Option<crate::checks::service_accounts::ServiceAccountRules>,
    pub secrets: Option<crate::checks::secrets::SecretRules>,
    pub scheduling: Option<crate::checks::scheduling::SchedulingRules>,
    pub untrusted_requesters: crate::checks::untrusted_requesters::UntrustedRequesters,
    pub egress: Vec<EgressRule>,
    /// Raw and ICMP echo sockets allowed (the node agent refuses them otherwise).
    pub raw_sockets: bool,
    /// What mutation sets on the class's pods, from every rule (empty unless `mutate`).
    pub defaults: Vec<crate::defaults::PodDefault>,
}

impl ClassPolicy {
    pub fn mode_for(&self, rule: &str) -> Mode {
        self.modes.get(rule).copied().unwrap_or(self.mode)
    }

    /// Compiles a class spec; `path` is where it sits in the document, for error messages.
    pub fn compile(class: PodClass, spec: ClassSpec, path: &str) -> Result<Self, Vec<FieldError>> {
        let mut errs = FieldErrors::default();
        for rule in spec.modes.keys() {
            if !is_rule_id(rule) {
                errs.push(
                    format!("{path}.modes.{rule}"),
                    format!(
                        "unknown rule '{rule}'; rules are: {}",
                        crate::checks::rule_ids().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
        crate::checks::validate_class(&spec, path, &mut errs);
        let controls = crate::checks::normalise_controls(spec.controls.over(bundle(spec.bundle)));
        crate::checks::validate_controls(&controls, &format!("{path}.controls"), &mut errs);
        if let Some(images) = &spec.images {
            if images.allowed.is_empty() {
                errs.push(
                    format!("{path}.images.allowed"),
                    "list at least one repository",
                );
            }
            for (i, pattern) in images.allowed.iter().enumerate() {
                if let Err(e) = validate_pattern(pattern) {
                    errs.push(format!("{path}.images.allowed[{i}]"), e);
                }
            }
        }
        let resources = spec.resources.as_ref().map(|r| {
            let mut cap = |field: &str, text: &Option<String>| {
                let text = text.as_ref()?;
                match parse_quantity(text) {
                    Ok(value) => Some(Cap {
                        value,
                        text: text.clone(),
                    }),
                    Err(e) => {
                        errs.push(format!("{path}.resources.{field}"), e);
                        None
                    }
                }
            };
            ResourceLimits {
                require_limits: r.require_limits,
                max_cpu: cap("maxCpu", &r.max_cpu),
                max_memory: cap("maxMemory", &r.max_memory),
                max_pod_cpu: cap("maxPodCpu", &r.max_pod_cpu),
                max_pod_memory: cap("maxPodMemory", &r.max_pod_memory),
            }
        });
        validate_rules(&spec.egress, &format!("{path}.egress"), &mut errs);
        if !errs.is_empty() {
            return Err(errs.into_vec());
        }
        let mut compiled = ClassPolicy {
            class,
            mode: spec.mode,
            modes: spec.modes,
            mutate: spec.mutate,
            controls,
            volumes: spec.volumes,
            images: spec.images,
            resources,
            service_accounts: spec.service_accounts,
            secrets: spec.secrets,
            scheduling: spec.scheduling,
            untrusted_requesters: spec.untrusted_requesters,
            raw_sockets: spec.raw_sockets.unwrap_or(spec.egress.is_empty()),
            egress: spec.egress,
            defaults: Vec::new(),
        };
        if compiled.mutate {
            compiled.defaults = crate::checks::class_defaults(&compiled);
        }
        Ok(compiled)
    }
}

/// A compiled policy: what the webhook, `hubguard check` and the node agent consult.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub document: PolicyDocument,
    include: Vec<String>,
    exclude: Vec<String>,
    trusted_requesters: HashSet<String>,
    trusted_groups: HashSet<String>,
    tenant_patterns: Vec<Regex>,
    pub tenant_labels: Vec<String>,
    classes: [Option<ClassPolicy>; 4],
    pub network: NetworkSpec,
    /// Where the policy judges Services: the Service names no tenant may take.
    pub services: Option<crate::service::ReservedServices>,
}

/// The policy's tenant labels and hubguard's own record of the tenant, which every policy
/// reads (the record after the policy's own keys, so fixes name the key operators chose).
fn with_recorded_tenant(keys: &[String]) -> Vec<String> {
    let mut all = keys.to_vec();
    if !all.iter().any(|k| k == crate::identity::TENANT_LABEL) {
        all.push(crate::identity::TENANT_LABEL.to_string());
    }
    all
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| PolicyError::Read {
            file: file.clone(),
            error,
        })?;
        Policy::from_yaml(&text, &file)
    }

    /// `file` names the source in error messages.
    pub fn from_yaml(text: &str, file: &str) -> Result<Policy, PolicyError> {
        let de = serde_norway::Deserializer::from_str(text);
        let document: PolicyDocument = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner().to_string();
            // serde_norway may already lead with the path; say it once.
            let message = inner
                .strip_prefix(&format!("{path}: "))
                .map(str::to_string)
                .unwrap_or(inner);
            PolicyError::Parse {
                file: file.to_string(),
                path,
                message,
            }
        })?;
        Policy::compile(document).map_err(|errors| PolicyError::Invalid {
            file: file.to_string(),
            errors,
        })
    }

    pub fn compile(document: PolicyDocument) -> Result<Policy, Vec<FieldError>> {
        let mut errs = FieldErrors::default();
        if document.api_version != API_VERSION {
            errs.push(
                "apiVersion",
                format!("expected {API_VERSION}, found {}", document.api_version),
            );
        }
        if document.kind != KIND {
            errs.push("kind", format!("expected {KIND}, found {}", document.kind));
        }
        if document.metadata.name.trim().is_empty() {
            errs.push("metadata.name", "must not be empty");
        }
        let spec = &document.spec;
        let mut tenant_patterns = Vec::new();
        for (i, pattern) in spec.tenancy.requester_patterns.iter().enumerate() {
            let path = format!("spec.tenancy.requesterPatterns[{i}]");
            match Regex::new(pattern) {
                Ok(re) if re.capture_names().flatten().any(|n| n == "tenant") => {
                    tenant_patterns.push(re)
                }
                Ok(_) => errs.push(path, "needs a named group (?P<tenant>...)"),
                Err(e) => errs.push(path, format!("not a regular expression: {e}")),
            }
        }
        if spec.tenancy.tenant_labels.is_empty() {
            errs.push("spec.tenancy.tenantLabels", "list at least one label key");
        }
        validate_network(&spec.network, "spec.network", &mut errs);
        let reserved_patterns = spec.services.as_ref().map(|services| {
            crate::checks::service_names::compile(services, "spec.services", &mut errs)
        });
        let specs = [
            (PodClass::User, &spec.classes.user),
            (PodClass::Dask, &spec.classes.dask),
            (PodClass::Platform, &spec.classes.platform),
            (PodClass::Other, &spec.classes.other),
        ];
        let mut classes: [Option<ClassPolicy>; 4] = Default::default();
        for (class, class_spec) in specs {
            if let Some(class_spec) = class_spec {
                let path = format!("spec.classes.{}", class.as_str());
                match ClassPolicy::compile(class, class_spec.clone(), &path) {
                    Ok(compiled) => classes[class.index()] = Some(compiled),
                    Err(errors) => errors
                        .into_iter()
                        .for_each(|e| errs.push(e.path, e.message)),
                }
            }
        }
        if !errs.is_empty() {
            return Err(errs.into_vec());
        }
        let egress_targets = classes
            .iter()
            .flatten()
            .flat_map(|class| &class.egress)
            .filter_map(|rule| rule.to.service.as_deref()?.split_once('/'))
            .map(|(namespace, name)| (namespace.to_string(), name.to_string()))
            .collect();
        Ok(Policy {
            name: document.metadata.name.clone(),
            include: spec.namespaces.include.clone(),
            exclude: spec.namespaces.exclude.clone(),
            trusted_requesters: spec.trust.requesters.iter().cloned().collect(),
            trusted_groups: spec.trust.groups.iter().cloned().collect(),
            tenant_patterns,
            tenant_labels: with_recorded_tenant(&spec.tenancy.tenant_labels),
            classes,
            network: spec.network.clone(),
            services: reserved_patterns.map(|patterns| crate::service::ReservedServices {
                patterns,
                egress_targets,
            }),
            document,
        })
    }

    pub fn governs(&self, namespace: &str) -> bool {
        !self.exclude.iter().any(|n| n == namespace)
            && (self.include.is_empty() || self.include.iter().any(|n| n == namespace))
    }

    pub fn class(&self, class: PodClass) -> Option<&ClassPolicy> {
        self.classes[class.index()].as_ref()
    }

    /// What the policy makes of a requester. With no requester (offline) nothing is trusted.
    pub fn standing(&self, requester: Option<&Requester>) -> Standing {
        let Some(r) = requester else {
            return Standing::default();
        };
        let trusted = self.trusted_requesters.contains(&r.username)
            || r.groups.iter().any(|g| self.trusted_groups.contains(g));
        let tenant = if trusted {
            None
        } else {
            self.tenant_patterns.iter().find_map(|re| {
                re.captures(&r.username)
                    .and_then(|c| c.name("tenant"))
                    .map(|m| m.as_str().to_string())
            })
        };
        Standing { trusted, tenant }
    }
}
