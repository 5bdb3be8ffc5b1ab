//! The headers of the corpus files (tests/corpus), read by the corpus test and the
//! control-plane test alike.

use std::path::Path;

pub struct Header {
    pub policy: String,
    pub requester: Option<String>,
    pub groups: Vec<String>,
    pub rules: Vec<String>,
    pub fix: Option<String>,
    pub no_mutations: bool,
    /// How many violations a one-rule attack makes (one unless `# findings: N` says more).
    pub findings: usize,
    /// `# action: delete` (or exec, attach, port-forward): the objects are judged as that
    /// action's targets (`hubguard check --action`), not as creates.
    pub action: Option<String>,
}

pub fn header(path: &Path) -> Header {
    let text = std::fs::read_to_string(path).unwrap();
    let mut h = Header {
        policy: String::new(),
        requester: None,
        groups: Vec::new(),
        rules: Vec::new(),
        fix: None,
        no_mutations: false,
        findings: 1,
        action: None,
    };
    for line in text.lines().take_while(|l| l.starts_with('#')) {
        let Some((key, value)) = line.trim_start_matches('#').trim().split_once(": ") else {
            continue;
        };
        let words = || {
            value
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        match key {
            "policy" => h.policy = value.to_string(),
            "as" => h.requester = Some(value.to_string()),
            "groups" => h.groups = words(),
            "rule" | "rules" => h.rules = words(),
            "fix" => h.fix = Some(value.to_string()),
            "mutations" => h.no_mutations = value == "none",
            "findings" => h.findings = value.parse().expect("# findings: a number"),
            "action" => h.action = Some(value.to_string()),
            _ => {}
        }
    }
    assert!(
        !h.policy.is_empty(),
        "{}: no '# policy:' header",
        path.display()
    );
    h
}
