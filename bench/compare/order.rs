//! Group 10: a read order handed to the mount. A shuffled cold epoch of the small files is read
//! through a fresh mount by [`READERS`] readers (a DataLoader's workers), once as it comes and
//! once with the epoch's order handed to the mount (`datastore prefetch --mount`) just before
//! the first read.

use crate::measure::{self, Figure};
use crate::systems::{Mount, Setup, System};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Readers of the epoch.
pub const READERS: usize = 4;

/// Files/s of the epoch without and with the order given.
pub fn epoch(s: &Setup, small: &[PathBuf], limit: Duration, work: &Path) -> (Figure, Figure) {
    let run = |given: bool| -> Result<Figure, String> {
        let cache = work.join(format!("cache-order-{given}"));
        let _ = std::fs::remove_dir_all(&cache);
        let m = Mount::new(s, System::Datastore, "small", &cache)?;
        crate::setup::drop_caches();
        if given {
            let list = work.join("epoch.order");
            let order: Vec<String> = small.iter().map(|p| p.display().to_string()).collect();
            let text: String = measure::epoch_order(order)
                .iter()
                .map(|p| format!("{p}\n"))
                .collect();
            std::fs::write(&list, text).map_err(|e| e.to_string())?;
            let out = Command::new(&s.bin)
                .args(["prefetch", "--mount"])
                .arg(&m.point)
                .arg("--from-list")
                .arg(&list)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
            }
        }
        Ok(measure::small_files(&m.point, small, READERS, limit).0)
    };
    let fig = |r: Result<Figure, String>| r.unwrap_or_else(Figure::Failed);
    (fig(run(false)), fig(run(true)))
}
