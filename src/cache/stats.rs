//! Cache counters: kept by each daemon, written to `DIR/stats/PID.json`, summed by
//! `datastore cache stats`.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Counters {
    hits: AtomicU64,
    hit_bytes: AtomicU64,
    misses: AtomicU64,
    written_bytes: AtomicU64,
    evictions: AtomicU64,
    damaged: AtomicU64,
    write_failures: AtomicU64,
    passthrough_opens: AtomicU64,
    fallback_opens: AtomicU64,
}

/// A snapshot of [`Counters`], as stored and summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub hits: u64,
    pub hit_bytes: u64,
    pub misses: u64,
    pub written_bytes: u64,
    pub evictions: u64,
    pub damaged: u64,
    pub write_failures: u64,
    /// Opens served by the kernel from a file entry (FUSE passthrough), and opens of files
    /// read through the daemon instead while passthrough was on (see `mount::fs`).
    #[serde(default)]
    pub passthrough_opens: u64,
    #[serde(default)]
    pub fallback_opens: u64,
}

impl Counters {
    pub fn hit(&self, bytes: u64) {
        metrics::counter!(crate::metrics::CACHE_HITS).increment(1);
        self.hits.fetch_add(1, Ordering::Relaxed);
        self.hit_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn miss(&self) {
        metrics::counter!(crate::metrics::CACHE_MISSES).increment(1);
        self.misses.fetch_add(1, Ordering::Relaxed);
    }
    pub fn written(&self, bytes: u64) {
        self.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn evicted(&self) {
        metrics::counter!(crate::metrics::CACHE_EVICTIONS).increment(1);
        self.evictions.fetch_add(1, Ordering::Relaxed);
    }
    pub fn damaged(&self) {
        metrics::counter!(crate::metrics::CACHE_DAMAGED).increment(1);
        self.damaged.fetch_add(1, Ordering::Relaxed);
        self.miss();
    }
    pub fn write_failed(&self) {
        self.write_failures.fetch_add(1, Ordering::Relaxed);
    }
    /// An open served by passthrough (`true`) or read through the daemon (`false`).
    pub fn opened(&self, passthrough: bool) {
        let (counter, name) = if passthrough {
            (&self.passthrough_opens, crate::metrics::PASSTHROUGH_OPENS)
        } else {
            (&self.fallback_opens, crate::metrics::FALLBACK_OPENS)
        };
        metrics::counter!(name).increment(1);
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Snapshot {
            hits: l(&self.hits),
            hit_bytes: l(&self.hit_bytes),
            misses: l(&self.misses),
            written_bytes: l(&self.written_bytes),
            evictions: l(&self.evictions),
            damaged: l(&self.damaged),
            write_failures: l(&self.write_failures),
            passthrough_opens: l(&self.passthrough_opens),
            fallback_opens: l(&self.fallback_opens),
        }
    }

    /// Saves this daemon's counters (atomically) for `datastore cache stats`.
    pub fn save(&self, cache_dir: &Path) {
        let dir = cache_dir.join("stats");
        let Ok(json) = serde_json::to_vec(&self.snapshot()) else {
            return;
        };
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
            std::io::Write::write_all(&mut tmp, &json)?;
            tmp.persist(dir.join(format!("{}.json", std::process::id())))
                .map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!("cannot save cache statistics: {e}");
        }
    }
}

impl Snapshot {
    pub fn add(&mut self, o: &Snapshot) {
        self.hits += o.hits;
        self.hit_bytes += o.hit_bytes;
        self.misses += o.misses;
        self.written_bytes += o.written_bytes;
        self.evictions += o.evictions;
        self.damaged += o.damaged;
        self.write_failures += o.write_failures;
        self.passthrough_opens += o.passthrough_opens;
        self.fallback_opens += o.fallback_opens;
    }

    /// The counters of every daemon that has used the cache, summed.
    pub fn load_all(cache_dir: &Path) -> Snapshot {
        let mut total = Snapshot::default();
        for e in std::fs::read_dir(cache_dir.join("stats"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "json") {
                if let Some(s) = std::fs::read(e.path())
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Snapshot>(&b).ok())
                {
                    total.add(&s);
                }
            }
        }
        total
    }
}
