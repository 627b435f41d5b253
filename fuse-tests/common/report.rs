//! Rows for doc/RELIABILITY.md: a test that proves a fault or input class is handled records
//! what it tried, how many times, and what it measured. Rows are appended as JSON lines to
//! `$DATASTORE_RELIABILITY_REPORT` when it is set (by `reliability/run`), and only once the
//! test's checks have passed, so a failed test leaves no row claiming success.

use std::io::Write;

/// Whether this is the long run (`DATASTORE_RELIABILITY=long`), with more iterations and time.
pub fn long() -> bool {
    std::env::var("DATASTORE_RELIABILITY").as_deref() == Ok("long")
}

/// `ci` in the short run, `long` in the long one.
pub fn pick<T>(ci: T, long: T) -> T {
    if self::long() {
        long
    } else {
        ci
    }
}

/// Records one row: the class of fault or input, what was done, how many times, the outcome.
pub fn row(class: &str, tried: &str, times: u64, outcome: &str) {
    let Some(path) = std::env::var_os("DATASTORE_RELIABILITY_REPORT") else {
        return;
    };
    let line = serde_json::json!({
        "class": class,
        "tried": tried,
        "times": times,
        "outcome": outcome,
        "mode": if long() { "long" } else { "ci" },
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the reliability report");
    writeln!(f, "{line}").expect("write the reliability report");
}
