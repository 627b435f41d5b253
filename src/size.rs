//! Sizes as people write them on command lines, in fstab lines and in config files.
//!
//! One parser for every size option (`memory=`, `fetch_budget=`, `cache_size=`…), so they all
//! accept the same spellings and say the same thing when they cannot.

/// `123`, `64K`, `512M`, `10G`, `1T`, `1P` (binary units; `KiB`, `MB`… spellings too). `None` for
/// anything else, and for sizes past `u64`.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        "p" | "pb" | "pib" => 50,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("1x"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }
}
