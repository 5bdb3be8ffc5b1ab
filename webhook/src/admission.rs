//! Turning an AdmissionRequest into an AdmissionResponse: which requests are judged, how
//! violations become a denial, warnings or audit annotations, and the defaults patch.

use std::collections::BTreeMap;

use hubguard_policy::action::Action;
use hubguard_policy::pod::ClusterLookup;
use hubguard_policy::{Mode, Policy, Request, Requester, Violation};
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::Status;

use crate::message;
use crate::object::RawObject;

/// The decision label of `hubguard_admission_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
    /// The request could not be judged (a malformed object); answered with a denial.
    Invalid,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::Invalid => "invalid",
        }
    }
}

/// A response with what the metrics need to know about it.
#[derive(Debug)]
pub struct Outcome {
    pub response: AdmissionResponse,
    pub decision: Decision,
    pub violations: Vec<Violation>,
    /// Violations of dry-run requests are counted apart.
    pub dry_run: bool,
}

impl Outcome {
    pub fn allow(request: &AdmissionRequest<RawObject>) -> Self {
        Outcome {
            response: AdmissionResponse::from(request),
            decision: Decision::Allowed,
            violations: Vec::new(),
            dry_run: request.dry_run,
        }
    }

    /// The strongest mode among the violations, or "none".
    pub fn mode(&self) -> &'static str {
        let strongest = |m: Mode| self.violations.iter().any(|v| v.mode == m);
        if strongest(Mode::Enforce) {
            "enforce"
        } else if strongest(Mode::Warn) {
            "warn"
        } else if strongest(Mode::Audit) {
            "audit"
        } else {
            "none"
        }
    }
}

/// What `/validate` must do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Subject {
    /// Judge the object (CREATE, UPDATE, and pods/ephemeralcontainers).
    Object,
    /// Evicting a pod, or exec, attach or port-forward into it: the requester must be
    /// entitled to that pod, which the webhook looks up (the request carries only options).
    PodAction { pod: String, action: Action },
    /// Deleting an object: the requester must be entitled to it.
    Delete,
    /// Nothing hubguard judges (status and other subresources).
    Pass,
}

/// Pod subresources whose update changes what the pod is: its containers
/// (`ephemeralcontainers`) or its resources (`resize`, in place).
const JUDGED_SUBRESOURCES: &[&str] = &["ephemeralcontainers", "resize"];

pub fn subject(request: &AdmissionRequest<RawObject>) -> Subject {
    let sub = request.sub_resource.as_deref();
    let is_pods = request.resource.group.is_empty() && request.resource.resource == "pods";
    // Eviction is created, exec, attach and port-forward connected to.
    if let Some(action) = sub.and_then(Action::of_subresource).filter(|_| is_pods) {
        let expected = match action {
            Action::Evict => Operation::Create,
            _ => Operation::Connect,
        };
        return if request.operation == expected {
            Subject::PodAction {
                pod: request.name.clone(),
                action,
            }
        } else {
            Subject::Pass
        };
    }
    match request.operation {
        Operation::Delete if sub.is_none() => Subject::Delete,
        Operation::Create | Operation::Update
            if sub.is_none()
                || (is_pods && sub.is_some_and(|s| JUDGED_SUBRESOURCES.contains(&s))) =>
        {
            Subject::Object
        }
        _ => Subject::Pass,
    }
}

pub fn requester(request: &AdmissionRequest<RawObject>) -> Requester {
    Requester {
        username: request.user_info.username.clone().unwrap_or_default(),
        groups: request.user_info.groups.clone().unwrap_or_default(),
    }
}

/// The DaskCluster to look up before judging this request: the one a DaskWorkerGroup joins,
/// when its requester is not trusted and the namespace is governed.
pub fn cluster_to_look_up(
    policy: &Policy,
    request: &AdmissionRequest<RawObject>,
) -> Option<String> {
    let object = request.object.as_ref()?;
    let name = policy.cluster_reference(&object.value)?;
    let governed = policy.governs(request.namespace.as_deref().unwrap_or(""));
    let trusted = policy.standing(Some(&requester(request))).trusted;
    (governed && !trusted).then(|| name.to_string())
}

/// `/validate` for CREATE and UPDATE: judge the new object as it arrives; `cluster` is what
/// [`cluster_to_look_up`]'s look-up found.
pub fn validate_object(
    policy: &Policy,
    request: &AdmissionRequest<RawObject>,
    cluster: Option<&ClusterLookup>,
) -> Outcome {
    let Some(object) = &request.object else {
        return invalid(request, "the request carries no object".into());
    };
    if request.operation == Operation::Update && unchanged_for_policy(request) {
        return Outcome::allow(request);
    }
    let requester = requester(request);
    let judged = policy.review(
        &object.value,
        &Request {
            namespace: request.namespace.as_deref().unwrap_or(""),
            requester: Some(&requester),
            cluster,
        },
    );
    let review = match judged {
        Ok(review) => review,
        Err(error) => {
            return invalid(
                request,
                format!("hubguard cannot judge this object: {error}"),
            )
        }
    };
    let kind = object.kind().unwrap_or("object");
    respond(policy, kind, request, review.violations)
}

/// An UPDATE that leaves spec and labels as they were (a finalizer removed, an annotation
/// added) is not judged again: refusing it would only stop controllers from cleaning up
/// objects admitted under an older policy. One that changes either is judged, even while the
/// object is being deleted: a pod in its grace period still runs what it says.
fn unchanged_for_policy(request: &AdmissionRequest<RawObject>) -> bool {
    let (Some(new), Some(old)) = (&request.object, &request.old_object) else {
        return false;
    };
    new.labels() == old.labels() && new.spec() == old.spec() && request.sub_resource.is_none()
}

fn respond(
    policy: &Policy,
    kind: &str,
    request: &AdmissionRequest<RawObject>,
    violations: Vec<Violation>,
) -> Outcome {
    let mut response = AdmissionResponse::from(request);
    let warnings: Vec<String> = violations
        .iter()
        .filter(|v| v.mode == Mode::Warn)
        .map(message::warning)
        .collect();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response.audit_annotations =
        message::audit_annotations(violations.iter().filter(|v| v.mode == Mode::Audit));
    let enforced: Vec<&Violation> = violations
        .iter()
        .filter(|v| v.mode == Mode::Enforce)
        .collect();
    let decision = if enforced.is_empty() {
        Decision::Allowed
    } else {
        response = forbid(response, message::denial(&policy.name, kind, &enforced));
        Decision::Denied
    };
    Outcome {
        response,
        decision,
        violations,
        dry_run: request.dry_run,
    }
}

/// For eviction, exec, attach and port-forward: whether the target pod must be looked up, that is
/// whether the requester is a tenant in a governed namespace (trusted requesters and people
/// are left to RBAC, and decided without it).
pub fn action_needs_target(policy: &Policy, request: &AdmissionRequest<RawObject>) -> bool {
    policy.governs(request.namespace.as_deref().unwrap_or(""))
        && policy.standing(Some(&requester(request))).tenant.is_some()
}

/// `/validate` for an action on an existing object of `kind` named `name`: a DELETE (the
/// object as the request carries it) or eviction, exec, attach and port-forward (the pod's
/// labels, looked up, or why they could not be).
pub fn validate_action(
    policy: &Policy,
    request: &AdmissionRequest<RawObject>,
    action: Action,
    kind: &str,
    target: Result<&serde_json::Value, &str>,
) -> Outcome {
    let requester = requester(request);
    let review = policy.review_action(
        action,
        kind,
        &request.name,
        target,
        &Request {
            namespace: request.namespace.as_deref().unwrap_or(""),
            requester: Some(&requester),
            cluster: None,
        },
    );
    respond(policy, kind, request, review.violations)
}

/// `/validate` for a DELETE: judged on the object being deleted (the request's old object).
pub fn validate_delete(policy: &Policy, request: &AdmissionRequest<RawObject>) -> Outcome {
    let old = request.old_object.as_ref();
    let kind = old
        .and_then(RawObject::kind)
        .unwrap_or(request.kind.kind.as_str());
    let target = old.map(|o| &o.value).ok_or("the request carries no object");
    validate_action(policy, request, Action::Delete, kind, target)
}

/// A looked-up pod's labels as the object the action rules read.
pub fn pod_metadata(labels: BTreeMap<String, String>) -> serde_json::Value {
    serde_json::json!({ "metadata": { "labels": labels } })
}

/// `/mutate`: the PSP-style defaults of the pod's class, for classes that mutate. Never
/// denies: judging is `/validate`'s job, and it sees the object after this patch.
pub fn mutate(policy: &Policy, request: &AdmissionRequest<RawObject>) -> Outcome {
    let allow = Outcome::allow(request);
    if request.operation != Operation::Create || request.sub_resource.is_some() {
        return allow;
    }
    let Some(object) = &request.object else {
        return allow;
    };
    let requester = requester(request);
    let patch = policy.defaults_patch(
        &object.value,
        &Request {
            namespace: request.namespace.as_deref().unwrap_or(""),
            requester: Some(&requester),
            cluster: None,
        },
    );
    match patch {
        Ok(Some(patch)) => match AdmissionResponse::from(request).with_patch(patch) {
            Ok(response) => Outcome { response, ..allow },
            Err(error) => {
                tracing::error!(%error, "cannot serialise the defaults patch; admitting unpatched");
                allow
            }
        },
        // A malformed object gets its explanation from /validate.
        Ok(None) | Err(_) => allow,
    }
}

fn invalid(request: &AdmissionRequest<RawObject>, message: String) -> Outcome {
    let mut response = AdmissionResponse::from(request);
    response.allowed = false;
    response.result = Status::failure(&message, "BadRequest").with_code(400);
    Outcome {
        response,
        decision: Decision::Invalid,
        violations: Vec::new(),
        dry_run: request.dry_run,
    }
}

fn forbid(response: AdmissionResponse, message: String) -> AdmissionResponse {
    let mut response = response;
    response.allowed = false;
    response.result = Status::failure(&message, "Forbidden").with_code(403);
    response
}
