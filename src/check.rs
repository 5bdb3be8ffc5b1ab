//! `hubguard check` and `hubguard policy validate`: read everything first, then judge, so bad
//! input stops the run before anything is reported as allowed.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use hubguard_policy::engine::Request;
use hubguard_policy::manifest::{parse_manifests, Manifest};
use hubguard_policy::{Policy, PolicyError, Requester};

use crate::report::{self, Judged};
use crate::Output;

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

/// Runs the admission chain on one object: /mutate's defaults, then /validate on the result.
fn judge(policy: &Policy, manifest: Manifest, request: &Request<'_>) -> Result<Judged, String> {
    let place = |e: &dyn std::fmt::Display| {
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
    };
    let patch = policy
        .defaults_patch(&manifest.object, request)
        .map_err(|e| place(&e))?;
    let mut object = manifest.object.clone();
    if let Some(patch) = &patch {
        json_patch::patch(&mut object, patch).map_err(|e| place(&e))?;
    }
    let review = policy.review(&object, request).map_err(|e| place(&e))?;
    Ok(Judged {
        manifest,
        patch,
        review,
    })
}

pub fn run(
    policy_file: &Path,
    output: Output,
    requester: Option<&Requester>,
    namespace: &str,
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
    let mut judged = Vec::with_capacity(manifests.len());
    let mut errors = Vec::new();
    for manifest in manifests {
        let ns = manifest.namespace(namespace).to_string();
        let request = Request {
            namespace: &ns,
            requester,
        };
        match judge(&policy, manifest, &request) {
            Ok(j) => judged.push(j),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        errors.iter().for_each(|e| eprintln!("error: {e}"));
        eprintln!("nothing was judged");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let allowed = judged.iter().all(|j| j.review.allowed());
    match output {
        Output::Text => print!("{}", report::text(&judged, namespace)),
        Output::Json => println!("{}", report::json(&policy, &judged, namespace)),
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
