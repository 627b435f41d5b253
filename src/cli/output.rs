//! How things look on the terminal: sizes, times, paths and tables.

use std::time::{Duration, UNIX_EPOCH};

/// `1.5 GiB`-style sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub use crate::count::count;

/// A Unix time as `2026-11-24T23:31:00Z`.
pub fn time(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A path or name for display: UTF-8 as is, anything else (and control characters) escaped as
/// `\xNN`, so that every name prints on one line and unambiguously.
pub fn path(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Prints rows as left-aligned columns (the last column is not padded).
pub fn table(rows: &[Vec<String>]) {
    for line in columns(rows) {
        println!("{line}");
    }
}

/// The lines of [`table`]. Cells are padded by the columns they take on a terminal, so that
/// wide characters (CJK names take two each) keep the columns after them aligned.
fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths = Vec::new();
    for r in rows {
        widen(&mut widths, r);
    }
    rows.iter().map(|r| line(r, &widths)).collect()
}

/// Makes `widths` wide enough for `row` too (for tables printed in two passes).
pub fn widen(widths: &mut Vec<usize>, row: &[String]) {
    use unicode_width::UnicodeWidthStr;
    if widths.len() < row.len() {
        widths.resize(row.len(), 0);
    }
    for (w, cell) in widths.iter_mut().zip(row) {
        *w = (*w).max(cell.width());
    }
}

/// One row of a table whose column widths are known.
pub fn line(row: &[String], widths: &[usize]) -> String {
    use unicode_width::UnicodeWidthStr;
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        line.push_str(cell);
        if i + 1 < row.len() {
            line.extend(std::iter::repeat_n(' ', widths[i] - cell.width() + 2));
        }
    }
    line.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(path(b"a/b\xffc"), "a/b\\xffc");
        assert_eq!(path("é\n".as_bytes()), "é\\x0a");
        assert_eq!(time(0), "1970-01-01T00:00:00Z");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(2, "entry"), "2 entries");
        assert_eq!(count(3, "key"), "3 keys");
    }

    #[test]
    fn columns_line_up_after_wide_names() {
        let row = |a: &str, b: &str| vec![a.to_string(), b.to_string(), "x".to_string()];
        let lines = columns(&[row("猫の写真", "1 KiB"), row("cats", "22 KiB")]);
        assert_eq!(lines, ["猫の写真  1 KiB   x", "cats      22 KiB  x"]);
    }
}
