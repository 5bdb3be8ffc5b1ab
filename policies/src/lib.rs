//! hubguard's policy model, its checks, and the engine that judges Kubernetes objects with them.
//! The webhook and `hubguard check` call the same [`Policy::review`], so offline judgement and
//! admission agree.

pub mod action;
pub mod bundles;
pub mod checks;
pub mod classify;
pub mod controls;
pub mod defaults;
pub mod egress;
pub mod engine;
pub mod identity;
pub mod image;
pub mod kubespawner;
pub mod manifest;
pub mod model;
pub mod mutating_policy;
pub mod objects;
pub mod pod;
pub mod policy;
pub mod quantity;
pub mod service;
pub mod validate;

pub use classify::{PodClass, Standing};
pub use engine::{JudgedPod, ObjectError, Request, Review, Skip, Violation};
pub use model::Mode;
pub use policy::{Policy, PolicyError, Requester};

/// The presets shipped in `policies/`, by name.
pub const PRESETS: &[(&str, &str)] = &[
    ("baseline", include_str!("../baseline.yaml")),
    ("restricted", include_str!("../restricted.yaml")),
    ("tess-public", include_str!("../tess-public.yaml")),
    ("tess-private", include_str!("../tess-private.yaml")),
];

#[cfg(test)]
mod preset_tests {
    use super::*;

    #[test]
    fn every_preset_compiles() {
        for (name, text) in PRESETS {
            let policy = Policy::from_yaml(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(policy.name, *name);
        }
    }
}
