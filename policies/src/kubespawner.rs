//! KubeSpawner 7's "safe" slug scheme, which z2jh 4 uses for a user's labels and the names of
//! their pods and home claims. Home claims are `claim-{user_server}`; the username label is
//! the name made safe as a label value. The two differ for names a label allows but an object
//! name does not (a digit first, upper case, dots, underscores) and for long names, so a home
//! claim is computed, not guessed from the label. Checked against the real KubeSpawner from
//! PyPI by `tests/kubespawner.rs`.

use sha2::{Digest, Sha256};

const HASH_LENGTH: usize = 8;
/// The limit KubeSpawner sets on each slug when it expands a name template.
const TEMPLATE_SLUG_MAX: usize = 48;
/// The limit of a slug made without one.
const DEFAULT_HASHED_MAX: usize = 32;

/// The username label KubeSpawner puts on a user's pods.
pub fn username_label(name: &str) -> String {
    safe_slug(name, is_valid_label, None)
}

/// The server-name label KubeSpawner puts on a named server's pods (empty for the default).
pub fn servername_label(server: &str) -> String {
    safe_slug(server, is_valid_label, None)
}

/// `{user_server}` in KubeSpawner's templates: the user, or the user and a named server.
pub fn user_server(name: &str, server: &str) -> String {
    let safe_user = safe_slug(name, is_valid_object_name, Some(TEMPLATE_SLUG_MAX));
    let safe_server = if server.is_empty() {
        String::new()
    } else {
        safe_slug(server, is_valid_object_name, Some(TEMPLATE_SLUG_MAX))
    };
    if safe_user.len() + safe_server.len() + 2 > TEMPLATE_SLUG_MAX {
        multi_slug(&[name, server], TEMPLATE_SLUG_MAX)
    } else if server.is_empty() {
        safe_user
    } else {
        format!("{safe_user}--{safe_server}")
    }
}

/// KubeSpawner 7's default `pvc_name_template`, which z2jh 4 keeps.
pub const DEFAULT_CLAIM_TEMPLATE: &str = "claim-{user_server}";

/// The template fields hubguard can fill; the rest (`{userid}`, `{unescaped_username}`, ...)
/// name things a pod does not carry or that are not safe names.
const FIELDS: [&str; 6] = [
    "username",
    "servername",
    "user_server",
    "safe_username",
    "safe_servername",
    "safe_user_server",
];

/// Why a name template cannot be used.
pub fn template_error(template: &str) -> Option<String> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Some(format!("'{{' at {open} is never closed"));
        };
        let field = &rest[open + 1..open + close];
        if !FIELDS.contains(&field) {
            return Some(format!(
                "unknown field {{{field}}}; the fields are {}",
                FIELDS.map(|f| format!("{{{f}}}")).join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Some("a '}' without its '{'".into());
    }
    None
}

/// `template` expanded as KubeSpawner does for user `name`'s server `server` ("" for the
/// default server), with its `safe` slug scheme. Fields outside `FIELDS` are left as written
/// (`template_error` refuses them first).
pub fn expand(template: &str, name: &str, server: &str) -> String {
    let safe_user = safe_slug(name, is_valid_object_name, Some(TEMPLATE_SLUG_MAX));
    let safe_server = if server.is_empty() {
        String::new()
    } else {
        safe_slug(server, is_valid_object_name, Some(TEMPLATE_SLUG_MAX))
    };
    let joined = user_server(name, server);
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let field = &rest[open + 1..open + close];
        match field {
            "username" | "safe_username" => out.push_str(&safe_user),
            "servername" | "safe_servername" => out.push_str(&safe_server),
            "user_server" | "safe_user_server" => out.push_str(&joined),
            _ => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    // KubeSpawner strips the '-' an empty server name leaves at the end, unless the template
    // itself ends in one.
    if !template.ends_with('-') {
        out.truncate(out.trim_end_matches('-').len());
    }
    out
}

/// Whether `name` has the shape of a name KubeSpawner made safe with a hash
/// (`<safe name>---<8 hex digits>`): the one place its names hold `--`.
pub fn is_hashed_slug(name: &str) -> bool {
    let Some((safe, hash)) = name.rsplit_once("---") else {
        return false;
    };
    hash.len() == HASH_LENGTH
        && hash
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        && safe.starts_with(|c: char| c.is_ascii_lowercase())
        && !safe.contains("--")
        && safe
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Characters Python's `re.IGNORECASE` lets `[a-z]` match besides ASCII letters.
const CASELESS_EXTRA: [char; 4] = ['\u{130}', '\u{131}', '\u{17f}', '\u{212a}'];

fn is_valid_object_name(s: &str) -> bool {
    let length = s.chars().count();
    (1..=63).contains(&length)
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_valid_label(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    s.chars().count() <= 63
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') || CASELESS_EXTRA.contains(&c)
        })
}

fn safe_slug(name: &str, is_valid: fn(&str) -> bool, max_length: Option<usize>) -> String {
    let fits = max_length.is_none_or(|max| name.chars().count() <= max);
    if !name.contains("--") && is_valid(name) && fits {
        return name.to_string();
    }
    strip_and_hash(name, max_length.unwrap_or(DEFAULT_HASHED_MAX))
}

fn short_hash(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    digest
        .iter()
        .take(HASH_LENGTH / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn strip_and_hash(name: &str, max_length: usize) -> String {
    let name_length = max_length.saturating_sub(HASH_LENGTH + 3).max(1);
    format!(
        "{}---{}",
        extract_safe_name(name, name_length),
        short_hash(&[name.as_bytes()])
    )
}

fn multi_slug(names: &[&str], max_length: usize) -> String {
    let mut parts: Vec<&[u8]> = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            // 0xFF starts no UTF-8 sequence: words cannot run into each other.
            parts.push(&[0xff]);
        }
        parts.push(name.as_bytes());
    }
    let per_name = (max_length - (HASH_LENGTH + 1)) / names.len();
    let name_max_length = per_name.saturating_sub(2).max(2);
    let slugs: Vec<String> = names
        .iter()
        .map(|n| extract_safe_name(n, name_max_length))
        .collect();
    format!("{}---{}", slugs.join("--"), short_hash(&parts))
}

/// Lower case, each run of anything but `[a-z0-9]` one `-`, cut to `max_length`, starting
/// with a letter (`x-` put first otherwise), never empty.
fn extract_safe_name(name: &str, max_length: usize) -> String {
    let mut safe = String::new();
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            safe.push(c);
        } else if !safe.ends_with('-') {
            safe.push('-');
        }
    }
    let cut: String = safe
        .trim_start_matches('-')
        .chars()
        .take(max_length)
        .collect();
    let mut safe = cut.trim_end_matches('-').to_string();
    if !safe.is_empty() && !safe.starts_with(|c: char| c.is_ascii_lowercase()) {
        safe = format!(
            "x-{}",
            &safe[..safe.len().min(max_length.saturating_sub(2))]
        );
    }
    if safe.is_empty() {
        safe = "x".into();
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names KubeSpawner 7.0.0 gave these users and servers (printed by the real one; the
    /// integration tests compare many more against it).
    #[test]
    fn names_as_kubespawner_makes_them() {
        let long_x = "x".repeat(70);
        let long_y = "y".repeat(70);
        let a47 = "a".repeat(47);
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            // (template, user, server, claim, username label)
            ("claim-{user_server}", "alice", "", "claim-alice", "alice"),
            (
                "claim-{user_server}",
                "alice",
                "gpu",
                "claim-alice--gpu",
                "alice",
            ),
            (
                "claim-{user_server}",
                "1337coder",
                "",
                "claim-x-1337coder---6640c2da",
                "1337coder",
            ),
            (
                "claim-{user_server}",
                "Alice.Smith@example.org",
                "gpu",
                "claim-alice-smith-example-org---323a0b32--gpu",
                "alice-smith-example-o---323a0b32",
            ),
            (
                "claim-{user_server}",
                &a47,
                "",
                "claim-aaaaaaaaaaaaaaaaa--x---b191b19d",
                &a47,
            ),
            (
                "claim-{user_server}",
                "ünïcødé",
                "Analysis 2",
                "claim-n-c-d---5713bed3--analysis-2---6df4ab23",
                "n-c-d---5713bed3",
            ),
            (
                "claim-{user_server}",
                "alice--gpu",
                "",
                "claim-alice-gpu---c8718bea",
                "alice-gpu---c8718bea",
            ),
            (
                "claim-{user_server}",
                &long_x,
                &long_y,
                "claim-xxxxxxxxxxxxxxxxx--yyyyyyyyyyyyyyyyy---14b17512",
                "xxxxxxxxxxxxxxxxxxxxx---c71bd109",
            ),
            ("claim-{username}", "alice", "gpu", "claim-alice", "alice"),
            (
                "claim-{username}",
                &a47,
                "",
                "claim-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                &a47,
            ),
            (
                "claim-{username}{servername}",
                "alice",
                "gpu",
                "claim-alicegpu",
                "alice",
            ),
            (
                "home-{username}--{servername}-",
                "alice",
                "",
                "home-alice---",
                "alice",
            ),
            (
                "home-{username}--{servername}-",
                "1337coder",
                "",
                "home-x-1337coder---6640c2da---",
                "1337coder",
            ),
        ];
        for (template, user, server, claim, label) in cases {
            assert_eq!(
                expand(template, user, server),
                *claim,
                "{template} {user} {server}"
            );
            assert_eq!(username_label(user), *label, "label of {user}");
        }
        assert_eq!(servername_label("Analysis 2"), "analysis-2---6df4ab23");
        assert_eq!(servername_label(""), "");
    }

    #[test]
    fn hashed_names_and_templates() {
        for (name, hashed) in [
            ("alice-example-org---1a2b3c4d", true),
            ("alice--gpu", false),
            ("alice--gpu---1a2b3c4d", false),
            ("alice---1a2b3c4", false),
            ("alice---1A2B3C4D", false),
            ("1alice---1a2b3c4d", false),
        ] {
            assert_eq!(is_hashed_slug(name), hashed, "{name}");
        }
        for (template, error) in [
            ("claim-{username}", None),
            ("claim-{user_server}", None),
            ("claim-{userid}", Some("unknown field {userid}")),
            ("claim-{username", Some("never closed")),
            ("claim-username}", Some("without its")),
        ] {
            let got = template_error(template);
            match error {
                None => assert_eq!(got, None, "{template}"),
                Some(want) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(want)),
                    "{template}: {got:?}"
                ),
            }
        }
    }
}
