//! What a person reads: the denial message kubectl prints, warnings, audit annotations.

use std::collections::HashMap;

use hubguard_policy::Violation;

/// Enough for any single pod's mistakes; past this the message says how to see the rest.
const MAX_LISTED: usize = 8;
/// The API server may truncate longer warnings.
const MAX_WARNING: usize = 256;

/// The denial message: one line per enforced violation with its path and fix.
pub fn denial(policy: &str, kind: &str, enforced: &[&Violation]) -> String {
    let mut out = format!("hubguard policy {policy} denied this {kind}:");
    for v in enforced.iter().take(MAX_LISTED) {
        out.push_str(&format!(
            "\n- {}: {} [{}]; fix: {}",
            v.path, v.message, v.rule, v.fix
        ));
    }
    if enforced.len() > MAX_LISTED {
        out.push_str(&format!(
            "\n- and {} more; `hubguard check --policy <policy> <manifest>` lists them all",
            enforced.len() - MAX_LISTED
        ));
    }
    out
}

/// One warning per violation, as kubectl prints them ("Warning: ...").
pub fn warning(v: &Violation) -> String {
    let full = format!(
        "hubguard [{}] {}: {}; fix: {}",
        v.rule, v.path, v.message, v.fix
    );
    if full.len() <= MAX_WARNING {
        return full;
    }
    let short = format!("hubguard [{}] {}: {}", v.rule, v.path, v.message);
    truncate(short, MAX_WARNING)
}

/// Audit annotations: one key per rule (the API server prefixes the webhook's name), the
/// paths and messages as the value.
pub fn audit_annotations<'a>(
    audited: impl Iterator<Item = &'a Violation>,
) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for v in audited {
        let entry = out.entry(v.rule.to_string()).or_default();
        if !entry.is_empty() {
            entry.push_str("; ");
        }
        entry.push_str(&format!("{}: {}", v.path, v.message));
    }
    out
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max - 3;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use hubguard_policy::{Mode, PodClass};

    fn violation(rule: &'static str, fix: &str) -> Violation {
        Violation {
            rule,
            mode: Mode::Enforce,
            pod_class: PodClass::User,
            path: "spec.containers[0].securityContext.privileged".into(),
            message: "privileged containers are not allowed".into(),
            fix: fix.into(),
        }
    }

    #[test]
    fn denial_lists_path_message_rule_and_fix() {
        let v = violation("privileged", "set privileged: false");
        let text = denial("tess-private", "Pod", &[&v]);
        assert_eq!(
            text,
            "hubguard policy tess-private denied this Pod:\n- spec.containers[0].securityContext.privileged: \
             privileged containers are not allowed [privileged]; fix: set privileged: false"
        );
    }

    #[test]
    fn denial_stays_short_however_many_violations() {
        let v = violation("privileged", "set privileged: false");
        let many: Vec<&Violation> = std::iter::repeat_n(&v, 30).collect();
        let text = denial("p", "Pod", &many);
        assert_eq!(text.lines().count(), 1 + MAX_LISTED + 1);
        assert!(text.ends_with("lists them all"));
    }

    #[test]
    fn warnings_fit_the_api_server_limit() {
        let v = violation("privileged", &"x".repeat(400));
        let w = warning(&v);
        assert!(w.len() <= MAX_WARNING, "{}", w.len());
        assert!(w.starts_with("hubguard [privileged] spec.containers[0]"));
    }

    #[test]
    fn audit_annotations_group_by_rule() {
        let a = violation("privileged", "");
        let b = violation("privileged", "");
        let out = audit_annotations([&a, &b].into_iter());
        assert_eq!(out.len(), 1);
        assert_eq!(out["privileged"].matches("; ").count(), 1);
    }
}
