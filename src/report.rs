//! What `hubguard check` prints. The JSON shape is a contract, documented in
//! docs/check-output.md; change it only by adding fields.

use hubguard_policy::manifest::Manifest;
use hubguard_policy::{Mode, Policy, Review};
use serde::Serialize;
use serde_json::Value;

pub struct Judged {
    pub manifest: Manifest,
    /// The defaults /mutate would set, already applied before the review.
    pub patch: Option<json_patch::Patch>,
    pub review: Review,
    /// What the reader should know about how it was judged (no `--as`, and the decision
    /// turns on the requester).
    pub hint: Option<String>,
}

impl Judged {
    fn decision(&self) -> &'static str {
        if self.review.skipped.is_some() {
            "skipped"
        } else if self.review.allowed() {
            "allowed"
        } else {
            "denied"
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    policy: &'a str,
    allowed: bool,
    objects: Vec<JsonObject<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonObject<'a> {
    file: &'a str,
    document: usize,
    item: Option<usize>,
    api_version: Option<&'a str>,
    kind: Option<&'a str>,
    name: Option<&'a str>,
    namespace: &'a str,
    decision: &'static str,
    skipped: Option<&'static str>,
    pods: Vec<JsonPod<'a>>,
    mutations: &'a [json_patch::PatchOperation],
    violations: Vec<JsonViolation<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPod<'a> {
    path: &'a str,
    class: &'static str,
    tenant: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonViolation<'a> {
    rule: &'a str,
    mode: &'static str,
    pod_class: &'static str,
    path: &'a str,
    message: &'a str,
    fix: &'a str,
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

pub fn json(policy: &Policy, judged: &[Judged], namespace: &str) -> String {
    let objects = judged
        .iter()
        .map(|j| {
            let obj = &j.manifest.object;
            JsonObject {
                file: &j.manifest.file,
                document: j.manifest.document,
                item: j.manifest.item,
                api_version: str_at(obj, "/apiVersion"),
                kind: str_at(obj, "/kind"),
                name: str_at(obj, "/metadata/name")
                    .or_else(|| str_at(obj, "/metadata/generateName")),
                namespace: j.manifest.namespace(namespace),
                decision: j.decision(),
                skipped: j.review.skipped.map(|s| s.as_str()),
                pods: j
                    .review
                    .pods
                    .iter()
                    .map(|p| JsonPod {
                        path: p.path,
                        class: p.class.as_str(),
                        tenant: p.tenant.as_deref(),
                    })
                    .collect(),
                mutations: j.patch.as_ref().map_or(&[], |p| p.0.as_slice()),
                violations: j
                    .review
                    .violations
                    .iter()
                    .map(|v| JsonViolation {
                        rule: v.rule,
                        mode: v.mode.as_str(),
                        pod_class: v.pod_class.as_str(),
                        path: &v.path,
                        message: &v.message,
                        fix: &v.fix,
                    })
                    .collect(),
                hint: j.hint.as_deref(),
            }
        })
        .collect();
    let report = JsonReport {
        policy: &policy.name,
        allowed: judged.iter().all(|j| j.review.allowed()),
        objects,
    };
    serde_json::to_string_pretty(&report).expect("the report serialises")
}

pub fn text(judged: &[Judged], namespace: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (mut denied, mut allowed, mut skipped) = (0, 0, 0);
    for j in judged {
        let m = &j.manifest;
        let item = m.item.map(|i| format!(" items[{i}]")).unwrap_or_default();
        let decision = j.decision();
        match decision {
            "denied" => denied += 1,
            "skipped" => skipped += 1,
            _ => allowed += 1,
        }
        let _ = write!(
            out,
            "{} (document {}{item}) {} in {}: ",
            m.file,
            m.document,
            m.describe(),
            m.namespace(namespace)
        );
        if let Some(skip) = j.review.skipped {
            let _ = writeln!(out, "not judged ({})", skip.as_str());
            continue;
        }
        let _ = writeln!(out, "{}", decision.to_uppercase());
        for pod in &j.review.pods {
            let tenant = pod
                .tenant
                .as_deref()
                .map(|t| format!(", tenant {t}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  pod spec {}: class {}{tenant}",
                pod.path,
                pod.class.as_str()
            );
        }
        for v in &j.review.violations {
            let verb = match v.mode {
                Mode::Enforce => "denied",
                Mode::Warn => "warning",
                Mode::Audit => "audited",
            };
            let _ = writeln!(out, "  [{verb}] {}: {}", v.rule, v.path);
            let _ = writeln!(out, "      {}", v.message);
            let _ = writeln!(out, "      fix: {}", v.fix);
        }
        if let Some(hint) = &j.hint {
            let _ = writeln!(out, "  note: {hint}");
        }
        if let Some(patch) = &j.patch {
            let _ = writeln!(out, "  defaults set by mutation before judging:");
            for op in &patch.0 {
                let op = serde_json::to_string(op).unwrap_or_default();
                let _ = writeln!(out, "      {op}");
            }
        }
    }
    let _ = writeln!(
        out,
        "{} objects: {denied} denied, {allowed} allowed, {skipped} not judged",
        judged.len()
    );
    out
}
