//! Counts in words, for every message that says how many of something there are: one
//! spelling of plurals for the command line, the daemon's log and its replies.

/// `1 file`, `2 files`: a count and its noun, singular or plural (`entry` → `entries`).
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}
