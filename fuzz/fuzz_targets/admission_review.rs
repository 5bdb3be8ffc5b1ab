//! An AdmissionReview body as the webhook reads it, then judged by /mutate and /validate under
//! the tess-private preset. The webhook catches an engine panic per request; here any panic is
//! a finding.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hubguard_policy::Policy;
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::from_yaml(
            include_str!("../../policies/tess-private.yaml"),
            "tess-private.yaml",
        )
        .expect("the preset loads")
    })
}

fuzz_target!(|body: &[u8]| {
    let Ok(request) = hubguard_webhook::http::read_review(body) else {
        return;
    };
    let policy = policy();
    let _ = hubguard_webhook::admission::mutate(policy, &request);
    let _ = hubguard_webhook::admission::validate_object(policy, &request, None);
    let _ = hubguard_webhook::admission::validate_delete(policy, &request);
    if hubguard_webhook::admission::action_needs_target(policy, &request) {
        let target = hubguard_webhook::admission::pod_metadata(BTreeMap::from([(
            "hubguard.dev/tenant".to_string(),
            "bob".to_string(),
        )]));
        let _ = hubguard_webhook::admission::validate_action(
            policy,
            &request,
            hubguard_policy::action::Action::Exec,
            "Pod",
            Ok(&target),
        );
    }
});
