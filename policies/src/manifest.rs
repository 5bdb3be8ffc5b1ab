//! Reading manifests for `hubguard check`: multi-document YAML (or JSON), with `kind: List`
//! flattened into its items. Everything is read before anything is judged.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}{}: {message}", location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ManifestError {
    pub file: String,
    /// Line and column, where the YAML parser gives them.
    pub location: Option<(usize, usize)>,
    pub message: String,
}

/// One object to judge, and where it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: String,
    /// 1-based document number in the file.
    pub document: usize,
    /// Index within a `List`, if it came from one.
    pub item: Option<usize>,
    pub object: Value,
}

impl Manifest {
    pub fn describe(&self) -> String {
        let kind = self
            .object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("?");
        let meta = self.object.get("metadata");
        let name = meta
            .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        format!("{kind}/{name}")
    }

    pub fn namespace<'a>(&'a self, fallback: &'a str) -> &'a str {
        self.object
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or(fallback)
    }
}

fn is_list(object: &Value) -> bool {
    object
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k == "List" || k.ends_with("List"))
        && object.get("items").is_some_and(Value::is_array)
}

pub fn parse_manifests(text: &str, file: &str) -> Result<Vec<Manifest>, ManifestError> {
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = Value::deserialize(doc).map_err(|e| ManifestError {
            file: file.to_string(),
            location: e.location().map(|l| (l.line(), l.column())),
            message: format!("document {document}: {e}"),
        })?;
        if value.is_null() {
            continue;
        }
        let not_object = |what: &str| ManifestError {
            file: file.to_string(),
            location: None,
            message: format!(
                "document {document}{what}: not a Kubernetes object (needs apiVersion and kind)"
            ),
        };
        if !(value.get("apiVersion").is_some_and(Value::is_string)
            && value.get("kind").is_some_and(Value::is_string))
        {
            return Err(not_object(""));
        }
        if is_list(&value) {
            let items = value["items"].as_array().cloned().unwrap_or_default();
            for (k, object) in items.into_iter().enumerate() {
                if !(object.get("apiVersion").is_some() && object.get("kind").is_some()) {
                    return Err(not_object(&format!(", items[{k}]")));
                }
                out.push(Manifest {
                    file: file.to_string(),
                    document,
                    item: Some(k),
                    object,
                });
            }
        } else {
            out.push(Manifest {
                file: file.to_string(),
                document,
                item: None,
                object: value,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        let two = "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n- {apiVersion: v1, kind: Pod, metadata: {name: c}}\n";
        let parsed = parse_manifests(two, "x.yaml").unwrap();
        let names: Vec<String> = parsed.iter().map(Manifest::describe).collect();
        assert_eq!(names, ["Pod/a", "Pod/b", "Pod/c"]);
        assert_eq!(parsed[2].item, Some(1));

        let broken = "apiVersion: v1\nkind: Pod\nmetadata: {name: a\n";
        let err = parse_manifests(broken, "bad.yaml").unwrap_err();
        assert_eq!(err.file, "bad.yaml");
        assert!(err.location.is_some(), "{err}");

        let scalar = "just a string\n";
        let err = parse_manifests(scalar, "s.yaml").unwrap_err();
        assert!(err.message.contains("not a Kubernetes object"), "{err}");
    }
}
