//! The Pod Security Standards levels as bundles of controls
//! (https://kubernetes.io/docs/concepts/security/pod-security-standards/). Each rule sets its
//! own controls for each level, in its own file (`Check::level`); this only names the levels.

use crate::checks::{level_controls, Level};
use crate::controls::Controls;
use crate::model::BundleName;

pub use crate::checks::capabilities::BASELINE_CAPABILITIES;
pub use crate::checks::volume_types::{NON_HOST_VOLUME_TYPES, RESTRICTED_VOLUME_TYPES};

pub fn bundle(name: BundleName) -> Controls {
    match name {
        BundleName::None => Controls::default(),
        BundleName::Baseline => baseline(),
        BundleName::Restricted => restricted(),
    }
}

pub fn baseline() -> Controls {
    level_controls(Level::Baseline)
}

/// Restricted is baseline plus: a short volume list, no privilege escalation, non-root, a
/// seccomp profile, all capabilities dropped, procMount masked even in a user namespace. The
/// defaults make a z2jh-default pod pass once mutated.
pub fn restricted() -> Controls {
    level_controls(Level::Restricted)
}
