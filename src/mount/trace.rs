//! The order files are first opened in, recorded for `datastore prefetch --from-list`.

use super::versions::Mounted;
use std::io::Write;
use std::sync::Mutex;

/// The order files are first opened in, for `datastore prefetch --from-list`: one path per
/// line, relative to the version's root (names holding a newline are left out).
pub struct Trace {
    out: Mutex<std::io::LineWriter<std::fs::File>>,
    seen: Mutex<std::collections::HashSet<u64>>,
}

impl Trace {
    /// Starts a trace in `file`, headed with the version `label` it is of.
    pub fn new(file: std::fs::File, label: &str) -> std::io::Result<Trace> {
        let mut out = std::io::LineWriter::new(file);
        writeln!(out, "# datastore trace {label}")?;
        Ok(Trace {
            out: Mutex::new(out),
            seen: Mutex::new(std::collections::HashSet::new()),
        })
    }

    pub fn record(&self, v: &Mounted, i: usize) {
        if !self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(v.ino(i))
        {
            return;
        }
        let mut line = v.manifest.path_of(i);
        if line.contains(&b'\n') {
            return;
        }
        line.push(b'\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = out.write_all(&line) {
            tracing::warn!("cannot write the read trace: {e}");
        }
    }
}
