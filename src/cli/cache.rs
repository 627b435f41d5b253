use super::config::Config;
use super::output::{bytes, count};
use crate::cache::stats::Snapshot;
use crate::cache::{CacheSize, DiskCache};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Inspect or empty the disk cache that mounts on this node share.
///
/// Examples:
///   datastore cache stats
///   datastore cache verify       # from a timer: drop entries whose bytes have rotted
///   datastore cache clear --cache-dir /scratch/datastore-cache
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The cache directory [default: as for mount].
    #[arg(long, global = true, env = "DATASTORE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Size, entries, hit ratio and evictions (counters summed over every daemon that used it).
    Stats,
    /// Delete every entry; mounts keep working and fetch again.
    Clear,
    /// Check every entry against its SHA-256 and delete the damaged ones; mounts fetch them
    /// again. Exits 1 if any was damaged.
    Verify,
}

pub fn run(a: Args, cfg: &Config, json: bool) -> Result<ExitCode> {
    let (dir, size) = cfg.cache(a.cache_dir, None)?;
    if dir.exists() && !dir.is_dir() {
        anyhow::bail!(
            "{} is a file, not a cache directory; give the cache's directory with --cache-dir",
            dir.display()
        );
    }
    // Nothing here to show, check or delete: said, and nothing is created.
    let stats_json = json && matches!(a.action, Action::Stats);
    if !dir.join(crate::cache::ENTRIES).is_dir() {
        if stats_json {
            super::json::print(
                &serde_json::json!({ "directory": dir.display().to_string(), "exists": false }),
            );
            return Ok(ExitCode::SUCCESS);
        }
        println!("{}: no cache here", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    match a.action {
        Action::Stats => {
            let (entries, used) = DiskCache::usage(&dir);
            let s = Snapshot::load_all(&dir);
            let lookups = s.hits + s.misses;
            let ratio = if lookups == 0 {
                0.0
            } else {
                100.0 * s.hits as f64 / lookups as f64
            };
            if stats_json {
                super::json::print(&serde_json::json!({
                    "directory": dir.display().to_string(),
                    "exists": true,
                    "bytes": used,
                    "entries": entries,
                    "quota_bytes": size.bytes_in(&dir).ok(),
                    "hits": s.hits,
                    "hit_bytes": s.hit_bytes,
                    "misses": s.misses,
                    "written_bytes": s.written_bytes,
                    "evictions": s.evictions,
                    "damaged": s.damaged,
                    "passthrough_opens": s.passthrough_opens,
                    "fallback_opens": s.fallback_opens,
                }));
                return Ok(ExitCode::SUCCESS);
            }
            let quota = match (size, size.bytes_in(&dir)) {
                (CacheSize::Percent(p), Ok(b)) => format!("{}, {p}% of its filesystem", bytes(b)),
                (CacheSize::Percent(p), Err(_)) => format!("{p}% of its filesystem"),
                (CacheSize::Bytes(b), _) => bytes(b),
            };
            println!("directory  {}", dir.display());
            println!(
                "size       {} in {} (quota {quota})",
                bytes(used),
                count(entries, "entry")
            );
            println!(
                "hits       {} ({ratio:.1}% of lookups), {} served",
                s.hits,
                bytes(s.hit_bytes)
            );
            println!("misses     {}", s.misses);
            println!("written    {}", bytes(s.written_bytes));
            println!("evictions  {}", s.evictions);
            println!("damaged    {} (dropped and fetched again)", s.damaged);
            println!(
                "opens      {} by passthrough, {} through the daemon",
                s.passthrough_opens, s.fallback_opens
            );
        }
        Action::Verify => {
            let (checked, damaged) = DiskCache::verify(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot verify the cache in {}: {}; run as the user the mounts run as",
                    dir.display(),
                    crate::io_cause::Cause(&e)
                )
            })?;
            for p in &damaged {
                println!("damaged, deleted: {}", p.display());
            }
            println!(
                "{}: {checked} entries checked, {} damaged",
                dir.display(),
                damaged.len()
            );
            if !damaged.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Action::Clear => {
            let (n, b) = DiskCache::clear(&dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot clear the cache in {}: {}; run as the user the mounts run as",
                    dir.display(),
                    crate::io_cause::Cause(&e)
                )
            })?;
            println!(
                "{}: deleted {} ({})",
                dir.display(),
                count(n, "entry"),
                bytes(b)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
