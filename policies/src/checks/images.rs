//! Tenancy: images only from the policy's registries and repositories, pinned by digest where
//! the policy asks — the containers' images and `image` volumes' references alike (an image
//! volume mounts any image's files, another tenant's private one included).

use super::{Check, Findings};
use crate::image::{is_sha256_digest, parse_image, repository_allowed};
use crate::pod::PodSubject;
use crate::policy::ClassPolicy;

pub const CHECK: Check = Check {
    id: "images",
    summary: "images must come from an allowed repository (pinned by digest if required)",
    evaluate,
    defaults: None,
    validate: None,
    level: None,
    normalise: None,
};

fn evaluate(pod: &PodSubject<'_>, class: &ClassPolicy, out: &mut Findings) {
    let Some(rules) = &class.images else {
        return;
    };
    for (i, volume) in pod.spec.volumes.iter().flatten().enumerate() {
        let Some(source) = &volume.image else {
            continue;
        };
        let reference = source.reference.as_deref().unwrap_or("");
        let parsed = parse_image(reference);
        let allowed =
            !reference.is_empty() && repository_allowed(&rules.allowed, &parsed.repository);
        let pinned = !rules.require_digest || parsed.digest.is_some_and(is_sha256_digest);
        if !allowed || !pinned {
            out.add(
                pod.path(&format!("volumes[{i}].image.reference")),
                format!(
                    "image volume '{}' mounts image {reference}, which the policy does not allow{}",
                    volume.name,
                    if allowed { " without a digest" } else { "" }
                ),
                format!(
                    "use an image from: {} (pinned by digest where required)",
                    rules.allowed.join(", ")
                ),
            );
        }
    }
    for c in pod.containers() {
        let Some(image) = c.image.filter(|i| !i.is_empty()) else {
            out.add_for(
                &c,
                "image",
                format!("container '{}' names no image", c.name),
                "set image to an allowed repository",
            );
            continue;
        };
        let parsed = parse_image(image);
        if !repository_allowed(&rules.allowed, &parsed.repository) {
            out.add_for(
                &c,
                "image",
                format!(
                    "container '{}' uses image {image} from a repository the policy does not allow",
                    c.name
                ),
                format!("use an image from: {}", rules.allowed.join(", ")),
            );
        } else if rules.require_digest && !parsed.digest.is_some_and(is_sha256_digest) {
            out.add_for(
                &c,
                "image",
                format!("container '{}' uses image {image} without a digest", c.name),
                "pin the image by digest: <repository>@sha256:<digest>",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testing::{run, Case, CASE};

    const ALLOW: &str =
        "images: {allowed: [quay.io/jupyterhub/k8s-singleuser-sample, ghcr.io/tess-science/*]}";
    const PINNED: &str = "images: {allowed: [ghcr.io/tess-science/*], requireDigest: true}";

    #[test]
    fn cases() {
        run(
            &CHECK,
            &[
                Case {
                    name: "allowed repository",
                    policy: ALLOW,
                    pod: "{containers: [{name: a, image: 'quay.io/jupyterhub/k8s-singleuser-sample:4.4.0'}]}",
                    ..CASE
                },
                Case {
                    name: "allowed prefix",
                    policy: ALLOW,
                    pod: "{containers: [{name: a, image: 'ghcr.io/tess-science/notebook:2026.11'}]}",
                    ..CASE
                },
                Case {
                    name: "docker hub image",
                    policy: ALLOW,
                    pod: "{containers: [{name: a, image: 'ghcr.io/tess-science/notebook:1'}], initContainers: [{name: i, image: 'alpine'}]}",
                    expect: &["spec.initContainers[0].image"],
                    ..CASE
                },
                Case {
                    name: "no image",
                    policy: ALLOW,
                    expect: &["spec.containers[0].image"],
                    ..CASE
                },
                Case {
                    name: "digest required, tag given",
                    policy: PINNED,
                    pod: "{containers: [{name: a, image: 'ghcr.io/tess-science/notebook:1'}]}",
                    expect: &["spec.containers[0].image"],
                    ..CASE
                },
                Case {
                    name: "an image volume from an allowed repository",
                    policy: ALLOW,
                    pod: "{containers: [{name: a, image: 'ghcr.io/tess-science/notebook:1'}], volumes: [{name: data, image: {reference: 'ghcr.io/tess-science/catalogue:2026'}}]}",
                    ..CASE
                },
                Case {
                    name: "an image volume of another repository",
                    policy: ALLOW,
                    pod: "{containers: [{name: a, image: 'ghcr.io/tess-science/notebook:1'}], volumes: [{name: data, image: {reference: 'registry.internal/hub/secrets:latest'}}]}",
                    expect: &["spec.volumes[0].image.reference"],
                    ..CASE
                },
                Case {
                    name: "digest required and given",
                    policy: PINNED,
                    pod: "{containers: [{name: a, image: 'ghcr.io/tess-science/notebook@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef'}]}",
                    ..CASE
                },
            ],
        );
    }
}
