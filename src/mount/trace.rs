//! The order files are first opened in, recorded for `datastore prefetch --from-list`.

use super::versions::Mounted;
use std::io::Write;
use std::sync::Mutex;

/// The order files are first opened in, for `datastore prefetch --from-list`: one path per
/// line, relative to the version's root (names holding a newline are left out).
pub struct Trace {
    pub out: Mutex<std::io::LineWriter<std::fs::File>>,
    pub seen: Mutex<std::collections::HashSet<u64>>,
}

impl Trace {
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
