//! Sizes and addresses on the command line: `512M`, `4G`, `0x1000`, `4096`.

/// Parses a byte count or address: a decimal or `0x` hexadecimal number with
/// an optional binary suffix K, M, G or T (case-insensitive, `iB`/`B` allowed
/// after it).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("invalid size {text:?} (expected e.g. 4096, 0x1000, 512M, 4G)");
    let lower = text.trim().to_ascii_lowercase();
    // Suffix letters are never hexadecimal digits, so `0x1g` and `0xab` are
    // unambiguous; a bare `b` (bytes) is not accepted for that reason.
    let (digits, shift) = [("k", 10), ("m", 20), ("g", 30), ("t", 40)]
        .iter()
        .find_map(|&(letter, shift)| {
            ["ib", "b", ""].iter().find_map(|tail| {
                lower
                    .strip_suffix(&format!("{letter}{tail}"))
                    .map(|digits| (digits.to_owned(), shift))
            })
        })
        .unwrap_or((lower.clone(), 0));
    let value = match digits.strip_prefix("0x") {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
            u64::from_str_radix(hex, 16).map_err(|_| bad())?
        }
        Some(_) => return Err(bad()),
        None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse::<u64>().map_err(|_| bad())?
        }
        None => return Err(bad()),
    };
    value.checked_mul(1 << shift).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0x1000"), Ok(4096));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4g"), Ok(4 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("3GB"), Ok(3 << 30));
        assert_eq!(parse_size("0xab"), Ok(0xab));
        assert_eq!(parse_size("0x1g"), Ok(1 << 30));
        assert_eq!(parse_size("0x1fb"), Ok(0x1fb));
        for bad in [
            "",
            "G",
            "-1",
            "+1",
            "1.5G",
            "0x",
            "0xG",
            "16777216T",
            "1Q",
            "1b",
            "0xgb",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
