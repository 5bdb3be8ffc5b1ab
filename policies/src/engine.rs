//! Judging an object: find its pod specs, decide class and tenant from the requester, run every
//! check, and attach each finding's mode; the same for the Service specs it carries. Also
//! computes the PSP-style defaults patch.

use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;
use serde_json::Value;

use crate::action::{Action, ActionSubject};
use crate::checks::{Findings, ACTION_CHECKS, CHECKS, SERVICE_CHECKS};
use crate::classify::{PodClass, Standing, StringMap};
use crate::defaults::Additions;
use crate::identity::{self, Identity, Recorded, RequesterKind};
use crate::model::Mode;
use crate::objects::{layout, walk, Layout, SpecSite};
use crate::pod::{ClusterLookup, PodSubject};
use crate::policy::{ClassPolicy, Policy, Requester};
use crate::service::{service_site, ServiceSite, ServiceSubject};

/// What an object is judged in the context of.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request<'a> {
    pub namespace: &'a str,
    pub requester: Option<&'a Requester>,
    /// For a DaskWorkerGroup: what a look-up found of the DaskCluster it names (see
    /// [`Policy::cluster_reference`]). Without it, the group is refused: nobody confirmed the
    /// cluster is its tenant's.
    pub cluster: Option<&'a ClusterLookup>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("the object has no apiVersion and kind")]
    NotAnObject,
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub mode: Mode,
    pub pod_class: PodClass,
    pub path: String,
    pub message: String,
    pub fix: String,
}

/// One pod spec of the object, as judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgedPod {
    pub path: &'static str,
    pub class: PodClass,
    pub tenant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The policy does not govern the namespace.
    Namespace,
    /// The kind has no pod spec hubguard judges.
    Kind,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Namespace => "namespace not governed by the policy",
            Skip::Kind => "kind not judged",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Review {
    pub skipped: Option<Skip>,
    pub pods: Vec<JudgedPod>,
    pub violations: Vec<Violation>,
}

impl Review {
    /// Allowed unless some violation is enforced.
    pub fn allowed(&self) -> bool {
        !self.violations.iter().any(|v| v.mode == Mode::Enforce)
    }
}

fn type_of(object: &Value) -> Result<(&str, &str), ObjectError> {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    match (api_version, kind) {
        (Some(a), Some(k)) => Ok((a, k)),
        _ => Err(ObjectError::NotAnObject),
    }
}

fn parse_spec(value: &Value, base: &str) -> Result<PodSpec, ObjectError> {
    // The plain deserialiser is the fast path; the tracking one only runs to explain a failure.
    PodSpec::deserialize(value).map_err(|_| {
        let err = serde_path_to_error::deserialize::<_, PodSpec>(value)
            .err()
            .map(|e| (e.path().to_string(), e.inner().to_string()));
        let (path, message) = err.unwrap_or_else(|| (".".into(), "not a pod spec".into()));
        ObjectError::Invalid {
            path: if path == "." {
                base.to_string()
            } else {
                format!("{base}.{path}")
            },
            message,
        }
    })
}

impl Policy {
    fn governed_layout(
        &self,
        object: &Value,
        request: &Request<'_>,
    ) -> Result<Result<&'static Layout, Skip>, ObjectError> {
        let (api_version, kind) = type_of(object)?;
        let Some(layout) = layout(api_version, kind) else {
            return Ok(Err(Skip::Kind));
        };
        if !self.governs(request.namespace) {
            return Ok(Err(Skip::Namespace));
        }
        Ok(Ok(layout))
    }

    fn identity_of(
        &self,
        layout: &Layout,
        site: &SpecSite,
        object: &Value,
        standing: &Standing,
    ) -> Identity {
        let labels = StringMap::of(site.metadata(object), "labels");
        let object_labels = StringMap::of(object.get("metadata"), "labels");
        identity::decide(
            labels,
            object_labels,
            layout.class,
            standing,
            &self.tenant_labels,
        )
    }

    fn label_tenant<'v>(&self, labels: StringMap<'v>) -> Option<&'v str> {
        self.tenant_labels.iter().find_map(|key| labels.get(key))
    }

    /// The DaskCluster a DaskWorkerGroup joins (`spec.cluster`), which the caller looks up and
    /// passes back in [`Request::cluster`].
    pub fn cluster_reference<'v>(&self, object: &'v Value) -> Option<&'v str> {
        let (api_version, kind) = type_of(object).ok()?;
        let layout = layout(api_version, kind)?;
        (layout.kind == "DaskWorkerGroup")
            .then(|| object.pointer("/spec/cluster").and_then(Value::as_str))
            .flatten()
    }

    /// The tenant a DaskCluster belongs to, as recorded on it (or on its worker template).
    pub fn cluster_tenant(&self, cluster: &Value) -> Option<String> {
        ["/metadata/labels", "/spec/worker/metadata/labels"]
            .iter()
            .find_map(|pointer| {
                let labels = cluster.pointer(pointer)?;
                self.tenant_labels
                    .iter()
                    .find_map(|key| labels.get(key).and_then(Value::as_str))
            })
            .map(str::to_string)
    }

    /// Judges an object as it arrives. Pods are judged as they are (the API server has already
    /// run the mutating webhook); workloads and Dask resources are judged as the pods they will
    /// create, so with their class's defaults applied.
    pub fn review(&self, object: &Value, request: &Request<'_>) -> Result<Review, ObjectError> {
        let (api_version, kind) = type_of(object)?;
        let layout = layout(api_version, kind);
        let service = service_site(api_version, kind).filter(|_| self.services.is_some());
        let skipped = if layout.is_none() && service.is_none() {
            Some(Skip::Kind)
        } else if !self.governs(request.namespace) {
            Some(Skip::Namespace)
        } else {
            None
        };
        let mut review = Review {
            skipped,
            ..Review::default()
        };
        if skipped.is_some() {
            return Ok(review);
        }
        if let Some(layout) = layout {
            self.judge_pods(object, request, layout, &mut review)?;
        }
        if let Some(site) = service {
            self.judge_service(object, request, site, &mut review.violations);
        }
        // A finding on the object's own metadata is found once per pod template: say it once.
        if review.violations.len() > 1 {
            let mut seen = std::collections::HashSet::new();
            review
                .violations
                .retain(|v| seen.insert((v.rule, v.path.clone(), v.message.clone())));
        }
        Ok(review)
    }

    /// Runs the pod rules on every pod spec of the object.
    fn judge_pods(
        &self,
        object: &Value,
        request: &Request<'_>,
        layout: &Layout,
        review: &mut Review,
    ) -> Result<(), ObjectError> {
        let standing = self.standing(request.requester);
        let requester_kind = RequesterKind::of(&standing, request.requester.is_some());
        let object_labels = StringMap::of(object.get("metadata"), "labels");
        for site in layout.sites {
            let Some(spec_value) = site.locate(object) else {
                if site.required {
                    return Err(ObjectError::Invalid {
                        path: site.base.to_string(),
                        message: "missing: the object has no pod spec".into(),
                    });
                }
                continue;
            };
            let identity = self.identity_of(layout, site, object, &standing);
            let class = identity.class;
            let class_policy = self.class(class);
            let defaulted;
            let spec_value = match class_policy {
                Some(cp) if cp.mutate && layout.kind != "Pod" => {
                    defaulted = crate::defaults::applied(spec_value, &cp.defaults);
                    &defaulted
                }
                _ => spec_value,
            };
            let spec = parse_spec(spec_value, site.base)?;
            let metadata = site.metadata(object);
            let labels = StringMap::of(metadata, "labels");
            let label_tenant = self.label_tenant(labels);
            let pod = PodSubject {
                spec: &spec,
                base: site.base,
                meta_base: site.meta_base,
                labels,
                annotations: StringMap::of(metadata, "annotations"),
                class,
                requester: requester_kind,
                requester_tenant: standing.tenant.as_deref(),
                decided_tenant: identity.tenant.as_deref(),
                label_tenant,
                tenant_label_keys: &self.tenant_labels,
                recorded: Recorded::of(labels),
                object,
                object_labels,
                cluster_lookup: request.cluster,
            };
            review.pods.push(JudgedPod {
                path: site.base,
                class,
                tenant: pod.tenant().map(str::to_string),
            });
            if let Some(cp) = class_policy {
                judge(&pod, cp, &mut review.violations);
            }
        }
        Ok(())
    }

    /// Judges an action on an existing object of `kind` named `name` by the action rules;
    /// `target` is the object (at least its metadata), or why it could not be read.
    pub fn review_action(
        &self,
        action: Action,
        kind: &str,
        name: &str,
        target: Result<&Value, &str>,
        request: &Request<'_>,
    ) -> Review {
        if !self.governs(request.namespace) {
            return Review {
                skipped: Some(Skip::Namespace),
                ..Review::default()
            };
        }
        let standing = self.standing(request.requester);
        let class = crate::classify::classify(PodClass::Other, &standing);
        let Some(class_policy) = self.class(class) else {
            return Review::default();
        };
        let subject = ActionSubject {
            action,
            kind,
            name,
            namespace: request.namespace,
            target,
            requester: RequesterKind::of(&standing, request.requester.is_some()),
            requester_tenant: standing.tenant.as_deref(),
            tenant_label_keys: &self.tenant_labels,
        };
        let mut findings = Findings::default();
        for check in ACTION_CHECKS {
            findings.start(check.id);
            (check.evaluate)(&subject, &mut findings);
        }
        Review {
            violations: violations(findings, class_policy, class),
            ..Review::default()
        }
    }

    /// Runs the Service rules on the Service spec at `site`, in the mode of the class the
    /// requester's pods would get (a Dask resource's: `dask`).
    fn judge_service(
        &self,
        object: &Value,
        request: &Request<'_>,
        site: &ServiceSite,
        violations: &mut Vec<Violation>,
    ) {
        let is_service = site.kind == "Service";
        let spec = walk(object, site.base).unwrap_or(&Value::Null);
        if spec.is_null() && !is_service {
            return;
        }
        let standing = self.standing(request.requester);
        let class = if is_service {
            let labels = StringMap::of(object.get("metadata"), "labels");
            identity::decide(labels, labels, None, &standing, &self.tenant_labels).class
        } else {
            PodClass::Dask
        };
        let (Some(class_policy), Some(reserved)) = (self.class(class), &self.services) else {
            return;
        };
        let subject = ServiceSubject {
            spec,
            base: site.base,
            name: is_service
                .then(|| object.pointer("/metadata/name").and_then(Value::as_str))
                .flatten(),
            namespace: request.namespace,
            requester: RequesterKind::of(&standing, request.requester.is_some()),
            requester_tenant: standing.tenant.as_deref(),
            reserved,
        };
        let mut findings = Findings::default();
        for check in SERVICE_CHECKS {
            findings.start(check.id);
            (check.evaluate)(&subject, &mut findings);
        }
        violations.extend(self::violations(findings, class_policy, class));
    }

    /// The JSON patch `/mutate` returns: the identity hubguard decides, recorded on the pod
    /// and on every pod template (workloads, Dask resources), and, on pods of classes that
    /// mutate, the PSP-style defaults. Workloads' pods get their defaults when they are created.
    /// Computed against the object as it is: nothing is copied, and nothing is allocated for
    /// the defaults a pod already has. Never for a ReplicaSet, which the chart does not send
    /// to `/mutate` (the deployment controller compares templates; `templateRecord`).
    pub fn defaults_patch(
        &self,
        object: &Value,
        request: &Request<'_>,
    ) -> Result<Option<json_patch::Patch>, ObjectError> {
        let Ok(layout) = self.governed_layout(object, request)? else {
            return Ok(None);
        };
        if layout.kind == "ReplicaSet" {
            return Ok(None);
        }
        let standing = self.standing(request.requester);
        let mut additions = Additions::default();
        for site in layout.sites {
            if site.locate(object).is_none() {
                continue;
            }
            let identity = self.identity_of(layout, site, object, &standing);
            record_identity(&mut additions, object, site.meta_base, &identity);
            let Some(cp) = self.class(identity.class).filter(|cp| cp.mutate) else {
                continue;
            };
            if layout.kind == "Pod" {
                let base: Vec<&str> = site.base.split('.').collect();
                additions.pod_defaults(object, &base, &cp.defaults);
            }
        }
        if additions.is_empty() {
            return Ok(None);
        }
        Ok(Some(json_patch::Patch(additions.operations(object))))
    }
}

/// Writes the identity labels where they are missing. A record already there is left for
/// `/validate` to judge: overwriting it would hide a forgery instead of refusing it.
fn record_identity(
    additions: &mut Additions,
    object: &Value,
    meta_base: &str,
    identity: &Identity,
) {
    additions.set_if_missing(
        object,
        label_path(meta_base, identity::CLASS_LABEL),
        Value::String(identity.class.as_str().to_string()),
    );
    if let Some(tenant) = identity
        .tenant
        .as_deref()
        .filter(|t| identity::is_label_value(t))
    {
        additions.set_if_missing(
            object,
            label_path(meta_base, identity::TENANT_LABEL),
            Value::String(tenant.to_string()),
        );
    }
}

/// The path of label `key` under the metadata at `meta_base`.
fn label_path(meta_base: &str, key: &str) -> Vec<String> {
    meta_base
        .split('.')
        .chain(["labels", key])
        .map(str::to_string)
        .collect()
}

fn judge(pod: &PodSubject<'_>, class: &ClassPolicy, violations: &mut Vec<Violation>) {
    let mut findings = Findings::default();
    for check in CHECKS {
        findings.start(check.id);
        (check.evaluate)(pod, class, &mut findings);
    }
    violations.extend(self::violations(findings, class, pod.class));
}

/// The findings as violations, each in its rule's mode for `class`.
fn violations(findings: Findings, policy: &ClassPolicy, class: PodClass) -> Vec<Violation> {
    findings
        .into_vec()
        .into_iter()
        .map(|f| Violation {
            rule: f.rule,
            mode: policy.mode_for(f.rule),
            pod_class: class,
            path: f.path,
            message: f.message,
            fix: f.fix,
        })
        .collect()
}
