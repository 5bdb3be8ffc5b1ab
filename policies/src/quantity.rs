//! Kubernetes resource quantities (`500m`, `2`, `1.5Gi`, `1e3`), as plain numbers for comparing
//! against caps.

/// The quantity's value in base units (cores for cpu, bytes for memory).
pub fn parse_quantity(text: &str) -> Result<f64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a quantity (expected e.g. 500m, 2, 4Gi)"))?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let power: i32 = exp[1..]
                .parse()
                .map_err(|_| format!("'{text}' has a malformed exponent"))?;
            10f64.powi(power)
        }
        other => return Err(format!("'{text}' has an unknown suffix '{other}'")),
    };
    if value < 0.0 {
        return Err(format!("'{text}' is negative"));
    }
    Ok(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        let cases: &[(&str, f64)] = &[
            ("500m", 0.5),
            ("2", 2.0),
            ("1.5", 1.5),
            ("4Gi", 4.0 * 1024.0 * 1024.0 * 1024.0),
            ("128Mi", 128.0 * 1024.0 * 1024.0),
            ("1G", 1e9),
            ("1e3", 1000.0),
            ("100k", 100_000.0),
        ];
        for (text, want) in cases {
            let got = parse_quantity(text).unwrap();
            assert!(
                (got - want).abs() < 1e-9 * want.max(1.0),
                "{text}: {got} != {want}"
            );
        }
        for bad in ["", "abc", "4Gb", "-1", "1e"] {
            assert!(parse_quantity(bad).is_err(), "{bad} should be refused");
        }
    }
}
