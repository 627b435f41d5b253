use super::output::{bytes, count};
use super::progress::Bar;
use super::{at_least_one, Ctx};
use crate::cache::{CacheSize, DiskCache};
use crate::format::name::parse_target;
use crate::format::EntryKind;
use crate::ops::open;
use crate::ops::prefetch::{prefetch, PrefetchProgress};
use crate::read::order::Listed;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Warm this node's disk cache ahead of a job, so its first epoch reads from local disk.
///
/// Every chunk is verified before it is cached; what is cached already is skipped, so an
/// interrupted prefetch is finished by running it again. With --from-list, the files of the
/// list are fetched in its order: a list written by `datastore mount --record-trace` replays
/// the order a previous run read them in.
///
/// With --mount, the list goes to the daemon of that mount instead, and this returns at once:
/// the mount fetches ahead of its readers in the list's order (a shuffled epoch, drawn before
/// the first read), within its fetch budget, as they move through it.
///
/// Examples:
///   datastore prefetch imagenet@v3/train imagenet@v3/val
///   datastore prefetch imagenet@v3 --from-list epoch1.trace
///   datastore prefetch --mount /datastores/imagenet --from-list epoch2.order
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// NAME[@VER][/PATH]: a whole version, a directory or a file.
    #[arg(required_unless_present = "mount", conflicts_with = "mount")]
    targets: Vec<String>,
    /// Hand the order of --from-list to the mount at DIR (the version it serves).
    #[arg(long, value_name = "DIR", requires = "from_list")]
    mount: Option<PathBuf>,
    /// Fetch the files listed in FILE (paths relative to the one target's root, one per line;
    /// `#` lines ignored), in that order.
    #[arg(long, value_name = "FILE")]
    from_list: Option<PathBuf>,
    /// Requests in parallel.
    #[arg(short, long, default_value_t = 16, value_parser = at_least_one())]
    jobs: usize,
    /// The cache directory [default: as for mount].
    #[arg(long, env = "DATASTORE_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// The cache size [default: as for mount].
    #[arg(long, value_name = "SIZE")]
    cache_size: Option<CacheSize>,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    if a.from_list.is_some() && a.targets.len() != 1 {
        anyhow::bail!("--from-list takes exactly one NAME[@VER] whose files it lists");
    }
    let (dir, size) = ctx.config.cache(a.cache_dir, a.cache_size)?;
    if matches!(size, CacheSize::Bytes(0) | CacheSize::Percent(0)) {
        anyhow::bail!("the disk cache is disabled (cache size 0); nothing to prefetch into");
    }
    // Every target is found before the cache directory is made: a typo creates nothing.
    let mut opened = Vec::new();
    for target in &a.targets {
        let t = parse_target(target)?;
        let o = open(&ctx.catalog, &t).await?;
        let files = match &a.from_list {
            Some(list) => listed_files(&o, list)?,
            None => o
                .manifest
                .walk(o.entry)
                .indices()
                .into_iter()
                .filter(|&i| matches!(o.manifest.entries[i].kind, EntryKind::File { .. }))
                .collect(),
        };
        opened.push((t, o, files));
    }
    let cache = DiskCache::open(&dir, size)?;
    // Quota accounting needs the entries already there.
    while !cache.scanned() {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut reports = Vec::new();
    for (t, o, files) in &opened {
        let m = &o.manifest;
        let total: u64 = files
            .iter()
            .map(|&i| match m.entries[i].kind {
                EntryKind::File { size, .. } => size,
                _ => 0,
            })
            .sum();
        let label = format!(
            "{}{}",
            o.version.label(),
            if t.path.is_empty() {
                String::new()
            } else {
                t.path_display()
            }
        );
        if total > cache.quota() {
            eprintln!(
                "warning: {label} is {} but the cache holds {}: only part of it stays cached; \
                 raise --cache-size or prefetch less",
                bytes(total),
                bytes(cache.quota())
            );
        }
        // One bar per version, gone before its summary is printed.
        let progress = Arc::new(PrefetchProgress::default());
        let p = progress.clone();
        let bar = Bar::follow(
            ctx.quiet || ctx.json,
            "prefetch",
            Arc::new(move || Bar::counters(&p.done_bytes, &p.total_bytes)),
        );
        let r = prefetch(
            ctx.catalog.store(),
            ctx.catalog.tier().cloned(),
            &cache,
            m,
            files,
            a.jobs,
            &progress,
        )
        .await?;
        drop(bar);
        if ctx.json {
            reports.push(serde_json::json!({
                "target": label,
                "files": r.files,
                "bytes": r.bytes,
                "fetched_bytes": r.fetched_bytes,
                "requests": r.requests,
                "cached_bytes": r.cached_bytes,
            }));
            continue;
        }
        println!(
            "{label}: {}, {}; fetched {} in {}, {} already cached",
            count(r.files, "file"),
            bytes(r.bytes),
            bytes(r.fetched_bytes),
            count(r.requests, "request"),
            bytes(r.cached_bytes)
        );
    }
    if ctx.json {
        super::json::print(&reports.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// The files `list` names in the opened version, in its order. Lines that name no file of
/// the version (a typo, a directory) are skipped with a warning that shows the first few.
fn listed_files(o: &crate::ops::Opened, list: &std::path::Path) -> Result<Vec<usize>> {
    let f = std::fs::File::open(list)
        .with_context(|| format!("cannot read list {}", list.display()))?;
    let mut listed = Listed::default();
    listed
        .add(&o.manifest, std::io::BufReader::new(f))
        .with_context(|| format!("cannot read list {}", list.display()))?;
    if let Some(skipped) = listed.skipped_line() {
        eprintln!(
            "warning: {} of {} {} no file of {}, skipped: {skipped}",
            count(listed.skipped as u64, "line"),
            list.display(),
            if listed.skipped == 1 { "names" } else { "name" },
            o.version.label(),
        );
    }
    Ok(listed.files)
}

impl Args {
    /// With --mount: hands the order of --from-list to that mount (no store is opened: the
    /// mount has its own).
    pub fn to_mount(&self, quiet: bool, json: bool) -> Option<Result<ExitCode>> {
        let (point, list) = (self.mount.as_ref()?, self.from_list.as_ref()?);
        Some((|| {
            let text = std::fs::read(list)
                .with_context(|| format!("cannot read list {}", list.display()))?;
            let said = crate::mount::control::order(point, &text)?;
            if json {
                super::json::print(&serde_json::json!({ "mount": point, "message": said }));
            } else if !quiet {
                println!("{}: {said}", point.display());
            }
            Ok(ExitCode::SUCCESS)
        })())
    }
}
