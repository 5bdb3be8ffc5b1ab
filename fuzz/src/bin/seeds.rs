//! Writes the fuzz targets' seed corpora from the project's own inputs: the presets and the
//! corpus policies (policy_file, rule_compiler), every corpus manifest (manifests), and each
//! corpus object wrapped in the AdmissionReview the API server would send (admission_review).
//!
//!   seeds REPO_ROOT OUT_DIR

use std::path::{Path, PathBuf};

use serde_json::json;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
}

fn write(out: &Path, target: &str, name: &str, data: &[u8]) {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir).expect("creating a corpus directory");
    std::fs::write(dir.join(name), data).expect("writing a seed");
}

/// The requester a corpus file is judged as (its `# as:` header), or a tenant.
fn requester(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("# as: "))
        .unwrap_or("system:serviceaccount:tess-private:user-alice")
        .trim()
        .to_string()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(root), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: seeds REPO_ROOT OUT_DIR");
        std::process::exit(2);
    };
    let (root, out) = (PathBuf::from(root), PathBuf::from(out));
    let mut policies = Vec::new();
    yaml_files(&root.join("policies"), &mut policies);
    yaml_files(&root.join("tests/corpus/policies"), &mut policies);
    for (i, path) in policies.iter().enumerate() {
        let data = std::fs::read(path).expect("reading a policy");
        write(&out, "policy_file", &format!("policy-{i}"), &data);
        write(&out, "rule_compiler", &format!("policy-{i}"), &data);
    }
    let mut manifests = Vec::new();
    for area in ["pass", "attack"] {
        yaml_files(&root.join("tests/corpus").join(area), &mut manifests);
    }
    let mut reviews = 0;
    for (i, path) in manifests.iter().enumerate() {
        let text = std::fs::read_to_string(path).expect("reading a manifest");
        write(&out, "manifests", &format!("manifest-{i}"), text.as_bytes());
        let Ok(objects) = hubguard_policy::manifest::parse_manifests(&text, "seed") else {
            continue;
        };
        for (j, manifest) in objects.into_iter().enumerate() {
            let object = manifest.object;
            let api_version = object["apiVersion"].as_str().unwrap_or("v1").to_string();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
            let kind = object["kind"].as_str().unwrap_or("Pod").to_string();
            let review = json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": format!("seed-{i}-{j}"),
                    "kind": {"group": group, "version": version, "kind": kind},
                    "resource": {"group": group, "version": version, "resource": format!("{}s", kind.to_lowercase())},
                    "namespace": object["metadata"]["namespace"].as_str().unwrap_or("tess-private"),
                    "operation": "CREATE",
                    "userInfo": {"username": requester(&text)},
                    "object": object,
                },
            });
            let body = serde_json::to_vec(&review).expect("a JSON value serialises");
            write(&out, "admission_review", &format!("review-{i}-{j}"), &body);
            reviews += 1;
        }
    }
    println!(
        "seeds: {} policies, {} manifest files, {reviews} reviews",
        policies.len(),
        manifests.len()
    );
}
