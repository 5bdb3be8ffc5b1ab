//! `hubguard check` and `hubguard policy validate`: read everything first, then judge, so bad
//! input stops the run before anything is reported as allowed.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use hubguard_policy::action::Action;
use hubguard_policy::engine::Request;
use hubguard_policy::manifest::{parse_manifests, Manifest};
use hubguard_policy::{Policy, PolicyError, Requester};

use crate::report::{self, Judged};
use crate::Output;

/// `--action`: what the requester does to the objects instead of creating them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ActionArg {
    Delete,
    Evict,
    Exec,
    Attach,
    PortForward,
}

impl ActionArg {
    pub fn action(self) -> Action {
        match self {
            ActionArg::Delete => Action::Delete,
            ActionArg::Evict => Action::Evict,
            ActionArg::Exec => Action::Exec,
            ActionArg::Attach => Action::Attach,
            ActionArg::PortForward => Action::PortForward,
        }
    }
}

const EXIT_DENIED: u8 = 1;
const EXIT_BAD_INPUT: u8 = 2;

fn read_input(file: &str) -> Result<String, String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("<stdin>: cannot read: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).map_err(|e| format!("{file}: cannot read: {e}"))
    }
}

fn read_manifests(files: &[String]) -> Result<Vec<Manifest>, Vec<String>> {
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let name = if file == "-" {
            "<stdin>"
        } else {
            file.as_str()
        };
        match read_input(file)
            .and_then(|text| parse_manifests(&text, name).map_err(|e| e.to_string()))
        {
            Ok(found) => manifests.extend(found),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(manifests)
    } else {
        Err(errors)
    }
}

fn place(manifest: &Manifest, e: &dyn std::fmt::Display) -> String {
    format!(
        "{}: document {}{} ({}): {e}",
        manifest.file,
        manifest.document,
        manifest
            .item
            .map(|i| format!(", items[{i}]"))
            .unwrap_or_default(),
        manifest.describe()
    )
}

/// /mutate's half of the admission chain: the object as the API server would store it.
fn mutated(
    policy: &Policy,
    manifest: &Manifest,
    request: &Request<'_>,
) -> Result<(Option<json_patch::Patch>, serde_json::Value), String> {
    let patch = policy
        .defaults_patch(&manifest.object, request)
        .map_err(|e| place(manifest, &e))?;
    let mut object = manifest.object.clone();
    if let Some(patch) = &patch {
        json_patch::patch(&mut object, patch).map_err(|e| place(manifest, &e))?;
    }
    Ok((patch, object))
}

/// What the webhook's look-up would find of a DaskCluster, here among the inputs (as admitted):
/// offline there is no cluster to ask.
fn cluster_among(
    policy: &Policy,
    admitted: &[(String, serde_json::Value)],
    namespace: &str,
    name: &str,
) -> hubguard_policy::pod::ClusterLookup {
    admitted
        .iter()
        .find(|(ns, o)| {
            ns == namespace
                && o.get("kind").and_then(|k| k.as_str()) == Some("DaskCluster")
                && o.pointer("/metadata/name").and_then(|n| n.as_str()) == Some(name)
        })
        .map(|(_, o)| policy.cluster_tenant(o))
        .ok_or_else(|| {
            format!(
                "DaskCluster {name} is not among the inputs, and hubguard check cannot look it up"
            )
        })
}

pub fn run(
    policy_file: &Path,
    output: Output,
    requester: Option<&Requester>,
    namespace: &str,
    action: Option<Action>,
    files: &[String],
) -> ExitCode {
    let policy = match Policy::load(policy_file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let manifests = match read_manifests(files) {
        Ok(m) => m,
        Err(errors) => {
            errors.iter().for_each(|e| eprintln!("error: {e}"));
            eprintln!("nothing was judged");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if let Some(action) = action {
        return act(&policy, output, requester, namespace, action, manifests);
    }
    let mut errors = Vec::new();
    let mut admitted = Vec::with_capacity(manifests.len());
    for manifest in &manifests {
        let ns = manifest.namespace(namespace).to_string();
        let request = Request {
            namespace: &ns,
            requester,
            cluster: None,
        };
        match mutated(&policy, manifest, &request) {
            Ok((patch, object)) => admitted.push((ns, patch, object)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        errors.iter().for_each(|e| eprintln!("error: {e}"));
        eprintln!("nothing was judged");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let objects: Vec<(String, serde_json::Value)> = admitted
        .iter()
        .map(|(ns, _, o)| (ns.clone(), o.clone()))
        .collect();
    let mut judged = Vec::with_capacity(manifests.len());
    for (manifest, (ns, patch, object)) in manifests.into_iter().zip(admitted) {
        let cluster = policy
            .cluster_reference(&object)
            .map(|name| cluster_among(&policy, &objects, &ns, name));
        let request = Request {
            namespace: &ns,
            requester,
            cluster: cluster.as_ref(),
        };
        match policy.review(&object, &request) {
            Ok(review) => {
                let hint = (requester.is_none() && !review.allowed())
                    .then(|| requester_hint(&policy, &manifest, &ns))
                    .flatten();
                judged.push(Judged {
                    manifest,
                    patch,
                    review,
                    hint,
                })
            }
            Err(e) => errors.push(place(&manifest, &e)),
        }
    }
    if !errors.is_empty() {
        errors.iter().for_each(|e| eprintln!("error: {e}"));
        eprintln!("nothing was judged");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    report(&policy, output, &judged, namespace)
}

/// Judges each object as the target of `action` by the requester, as it stands (nothing is
/// created, so nothing is mutated).
fn act(
    policy: &Policy,
    output: Output,
    requester: Option<&Requester>,
    namespace: &str,
    action: Action,
    manifests: Vec<Manifest>,
) -> ExitCode {
    let mut judged = Vec::with_capacity(manifests.len());
    for manifest in manifests {
        let object = &manifest.object;
        let kind = object
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("object");
        if action != Action::Delete && kind != "Pod" {
            // Eviction, exec, attach and port-forward are pods' subresources.
            eprintln!(
                "error: {}: {} reaches only into pods",
                place(&manifest, &kind),
                action.as_str()
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        let name = object
            .pointer("/metadata/name")
            .and_then(|n| n.as_str())
            .unwrap_or("");
        let ns = manifest.namespace(namespace).to_string();
        let request = Request {
            namespace: &ns,
            requester,
            cluster: None,
        };
        let review = policy.review_action(action, kind, name, Ok(object), &request);
        let hint = requester.is_none().then(|| {
            format!(
                "no --as: {} is judged for tenants only; pass --as with the requester",
                action.as_str()
            )
        });
        judged.push(Judged {
            manifest,
            patch: None,
            review,
            hint,
        });
    }
    report(policy, output, &judged, namespace)
}

/// For an object denied with no `--as`: whether the policy's first trusted requester would
/// have it admitted, in which case the decision turns on who creates it and the fixes point
/// elsewhere.
fn requester_hint(policy: &Policy, manifest: &Manifest, namespace: &str) -> Option<String> {
    let trust = &policy.document.spec.trust;
    let (name, trusted) = match (trust.requesters.first(), trust.groups.first()) {
        (Some(user), _) => (
            user.clone(),
            Requester::authenticated(user.clone(), Vec::new()),
        ),
        (None, Some(group)) => (
            format!("a member of {group}"),
            Requester {
                username: "hubguard-check".into(),
                groups: vec![group.clone()],
            },
        ),
        (None, None) => return None,
    };
    let request = Request {
        namespace,
        requester: Some(&trusted),
        cluster: None,
    };
    let (_, object) = mutated(policy, manifest, &request).ok()?;
    let allowed = policy.review(&object, &request).ok()?.allowed();
    allowed.then(|| {
        format!(
            "judged with no --as, as a requester neither trusted nor a tenant; as {name} \
             (trusted) it is allowed: the decision turns on who creates it, so check again \
             with --as that requester"
        )
    })
}

fn report(policy: &Policy, output: Output, judged: &[Judged], namespace: &str) -> ExitCode {
    let allowed = judged.iter().all(|j| j.review.allowed());
    match output {
        Output::Text => print!("{}", report::text(judged, namespace)),
        Output::Json => println!("{}", report::json(policy, judged, namespace)),
    }
    if allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_DENIED)
    }
}

pub fn validate(file: &Path) -> ExitCode {
    match Policy::load(file) {
        Ok(policy) => {
            let classes: Vec<&str> = hubguard_policy::PodClass::ALL
                .iter()
                .filter(|c| policy.class(**c).is_some())
                .map(|c| c.as_str())
                .collect();
            println!(
                "{}: policy {} is valid (classes: {})",
                file.display(),
                policy.name,
                classes.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e @ PolicyError::Read { .. }) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_DENIED)
        }
    }
}

/// `hubguard policy mutating-policy`: the generated MutatingAdmissionPolicy, as YAML.
pub fn mutating_policy(file: &Path, name: &str) -> ExitCode {
    let generated = Policy::load(file)
        .map_err(|e| e.to_string())
        .and_then(|policy| {
            hubguard_policy::mutating_policy::generate(&policy, name)
                .map_err(|e| format!("{}: {e}", file.display()))
        });
    match generated.and_then(|p| serde_norway::to_string(&p).map_err(|e| e.to_string())) {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}
