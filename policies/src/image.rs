//! Container image references: normalising Docker Hub short names and matching allowlist
//! patterns.

use std::borrow::Cow;

/// A reference split into its repository (with registry) and whether it is pinned by digest.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageRef<'a> {
    pub repository: Cow<'a, str>,
    pub digest: Option<&'a str>,
}

pub fn parse_image(image: &str) -> ImageRef<'_> {
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A tag is a ':' after the last '/', so a registry port is not mistaken for one.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let name = match name[last_slash..].rfind(':') {
        Some(colon) => &name[..last_slash + colon],
        None => name,
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let repository = if has_registry {
        Cow::Borrowed(name)
    } else if name.contains('/') {
        Cow::Owned(format!("docker.io/{name}"))
    } else {
        Cow::Owned(format!("docker.io/library/{name}"))
    };
    ImageRef { repository, digest }
}

/// `pattern` is `registry/repository` (exact) or ends in `/*` (anything below that prefix).
pub fn repository_allowed(patterns: &[String], repository: &str) -> bool {
    patterns
        .iter()
        .any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => repository.starts_with(prefix),
            None => repository == pattern,
        })
}

pub fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.contains('@') || pattern.is_empty() {
        return Err(format!(
            "'{pattern}' is not a repository pattern (registry/repository or registry/prefix/*)"
        ));
    }
    if let Some(star) = pattern.find('*') {
        if star != pattern.len() - 1 || !pattern.ends_with("/*") {
            return Err(format!(
                "'{pattern}': '*' may only stand as the last path element, as in quay.io/org/*"
            ));
        }
    }
    if !pattern.contains('/') {
        return Err(format!(
            "'{pattern}' names no registry: write e.g. docker.io/library/{pattern}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_cases() {
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let pinned = format!("quay.io/jupyterhub/k8s-singleuser-sample@{digest}");
        let cases: Vec<(&str, &str, Option<&str>)> = vec![
            ("ubuntu", "docker.io/library/ubuntu", None),
            ("ubuntu:22.04", "docker.io/library/ubuntu", None),
            (
                "jupyter/base-notebook:latest",
                "docker.io/jupyter/base-notebook",
                None,
            ),
            (
                "quay.io/jupyterhub/k8s-hub:4.4.0",
                "quay.io/jupyterhub/k8s-hub",
                None,
            ),
            ("localhost:5000/x/y:1", "localhost:5000/x/y", None),
            ("registry.local:5000/img", "registry.local:5000/img", None),
            (
                pinned.as_str(),
                "quay.io/jupyterhub/k8s-singleuser-sample",
                Some(digest),
            ),
        ];
        for (image, repo, want_digest) in cases {
            let parsed = parse_image(image);
            assert_eq!(parsed.repository, repo, "{image}");
            assert_eq!(parsed.digest, want_digest, "{image}");
        }
        assert!(is_sha256_digest(digest));
        assert!(!is_sha256_digest("sha256:abc"));
    }

    #[test]
    fn match_cases() {
        let patterns = vec![
            "quay.io/jupyterhub/k8s-singleuser-sample".to_string(),
            "ghcr.io/dask/*".to_string(),
        ];
        let cases = [
            ("quay.io/jupyterhub/k8s-singleuser-sample", true),
            ("quay.io/jupyterhub/k8s-singleuser-sample-evil", false),
            ("ghcr.io/dask/dask-gateway", true),
            ("ghcr.io/daskevil/x", false),
            ("docker.io/library/ubuntu", false),
        ];
        for (repo, want) in cases {
            assert_eq!(repository_allowed(&patterns, repo), want, "{repo}");
        }
        assert!(validate_pattern("quay.io/org/*").is_ok());
        assert!(validate_pattern("quay.io/org*").is_err());
        assert!(validate_pattern("ubuntu").is_err());
    }
}
