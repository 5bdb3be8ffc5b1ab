//! A parser for the Prometheus text format, so that tests compare samples, not substrings.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// The sum of the samples named `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

/// Parses every sample line; panics, naming the line, on anything malformed.
pub fn parse(text: &str) -> Samples {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(
            parse_line(line)
                .unwrap_or_else(|| panic!("metrics line {}: cannot parse {line:?}", number + 1)),
        );
    }
    Samples(samples)
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(mut inner) = rest.strip_prefix('{') {
        // key="value" pairs, values with \\, \" and \n escapes, separated by commas.
        loop {
            inner = inner.trim_start_matches(',');
            if let Some(after) = inner.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = inner.split_once("=\"")?;
            let mut value = String::new();
            let mut chars = after_key.char_indices();
            let end = loop {
                match chars.next()? {
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    (i, '"') => break i,
                    (_, other) => value.push(other),
                }
            };
            labels.insert(key.to_string(), value);
            inner = &after_key[end + 1..];
        }
    }
    let value = match rest.split_whitespace().next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_with_escapes() {
        let s = parse(
            "# HELP x y\nx_total{a=\"1\",b=\"q\\\"u,o}te\"} 3\nplain 4.5\nh_bucket{le=\"+Inf\"} 7\n",
        );
        assert_eq!(s.sum("x_total", &[("b", "q\"u,o}te")]), 3.0);
        assert_eq!(s.sum("plain", &[]), 4.5);
        assert_eq!(s.sum("h_bucket", &[("le", "+Inf")]), 7.0);
    }
}
