use super::output::{bytes, count, path};
use super::progress::Bar;
use super::{at_least_one, Ctx};
use crate::push::{push, PushOptions, PushProgress};
use anyhow::Result;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Push a directory as the next version of a dataset.
///
/// Content is deduplicated by SHA-256: what the dataset's latest version holds is never
/// uploaded again, nor is any chunk of a large file that the store already holds (small
/// files, packed together, are shared with the previous version only). An unchanged tree
/// creates no new version. Symlinks are stored as links; fifos, sockets and devices are
/// skipped with a warning. The version becomes visible only when complete.
///
/// Files whose size, mtime, ctime and inode are those they had at the last push of this
/// directory to this dataset (from this machine) are not read again: their hashes are
/// remembered under ~/.local/state/datastore (or $DATASTORE_STATE_DIR). --rehash reads
/// every file.
///
/// A store URL instead of a directory imports the objects under it (s3://bucket/prefix,
/// gs://…, az://…, file:///dir): each object is read once to hash it, and by default the
/// version reads the objects where they are (pinned by ETag and verified by SHA-256: an
/// object changed or deleted later fails the reads of its file); --copy stores their content
/// instead. Objects unchanged since the last import (same key, size and ETag) are not read
/// again. Settings a source needs go in its URL (s3://b/p?endpoint=http://host:9000&region=x);
/// credentials come from the environment, as for the store.
///
/// A directory that holds no files is refused unless --allow-empty is given: its version
/// would empty the dataset for every reader of its latest version.
///
/// Examples:
///   datastore push ./imagenet imagenet -m "add val split"
///   datastore push s3://raw-data/imagenet imagenet
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Directory to push, or store URL to import from.
    #[arg(value_name = "SOURCE")]
    dir: PathBuf,
    /// Dataset name: lower-case letters, digits, '.', '_' and '-'.
    name: String,
    /// Message recorded with the version.
    #[arg(short, long, default_value = "")]
    message: String,
    /// Files read in parallel.
    #[arg(long, default_value_t = 16, value_parser = at_least_one())]
    jobs: usize,
    /// Read and hash every file, even those unchanged since the last push.
    #[arg(long)]
    rehash: bool,
    /// Push a directory that holds no files, making an empty version.
    #[arg(long)]
    allow_empty: bool,
    /// Import: copy the objects' content into the store rather than read them in place.
    #[arg(long)]
    copy: bool,
    /// Do nothing if this directory was pushed to this dataset from this machine less than
    /// this long ago (e.g. 1h): for timers that fire often and pushes that should not.
    #[arg(long, value_name = "DURATION", value_parser = super::duration)]
    min_interval: Option<std::time::Duration>,
}

impl Args {
    /// What can be checked before the store is opened (and, for a push, created).
    pub fn check(&self) -> Result<()> {
        let Some(url) = self.url() else {
            if self.copy {
                anyhow::bail!("--copy is for imports from a store URL; a directory is always copied into the store");
            }
            return Ok(crate::push::check_args(&self.dir, &self.name)?);
        };
        crate::format::name::check_dataset_name(&self.name)?;
        if self.min_interval.is_some() {
            anyhow::bail!("--min-interval is for pushes of a directory, not imports from {url}");
        }
        Ok(())
    }

    /// The store URL to import from, if the source is one.
    fn url(&self) -> Option<&str> {
        self.dir.to_str().filter(|s| crate::push::import::is_url(s))
    }
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let stat_dir = crate::push::stat_cache::state_dir().map(|d| d.join("push"));
    if let (Some(every), Some(dir)) = (a.min_interval, &stat_dir) {
        let last = crate::push::stat_cache::last_completed(
            dir,
            ctx.catalog.store().url(),
            &a.name,
            &a.dir,
        );
        let ago = last.and_then(|t| t.elapsed().ok());
        if let Some(ago) = ago.filter(|ago| *ago < every) {
            let secs = std::time::Duration::from_secs(ago.as_secs());
            if ctx.json {
                let j = serde_json::json!({ "not_due": true, "pushed_secs_ago": secs.as_secs() });
                println!("{j}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{} was pushed to {} {} ago, less than --min-interval {}; nothing to do",
                a.dir.display(),
                a.name,
                humantime::format_duration(secs),
                humantime::format_duration(every)
            );
            return Ok(ExitCode::SUCCESS);
        }
    }
    let progress = Arc::new(PushProgress::default());
    let p = progress.clone();
    let _bar = Bar::follow(
        ctx.quiet || ctx.json,
        "push",
        Arc::new(move || Bar::counters(&p.read_bytes, &p.total_bytes)),
    );
    let opts = PushOptions {
        message: a.message.clone(),
        concurrency: a.jobs,
        stat_dir,
        rehash: a.rehash,
        allow_empty: a.allow_empty,
        ..Default::default()
    };
    let r = match a.url() {
        Some(url) => {
            crate::push::import::import(&ctx.catalog, url, &a.name, &opts, a.copy, progress).await?
        }
        None => push(&ctx.catalog, &a.dir, &a.name, &opts, progress).await?,
    };
    drop(_bar);
    for s in &r.skipped {
        eprintln!(
            "warning: skipped {} {} ({})",
            s.kind,
            path(s.path.as_os_str().as_bytes()),
            s.note
        );
    }
    if ctx.json {
        let j = serde_json::json!({
            "version": r.version.label(),
            "number": r.version.version,
            "unchanged": r.unchanged,
            "files": r.files,
            "dirs": r.dirs,
            "symlinks": r.symlinks,
            "bytes": r.bytes,
            "uploaded_bytes": r.uploaded_bytes,
            "uploaded_objects": r.uploaded_objects,
            "dedup_bytes": r.dedup_bytes(),
            "hashed_bytes": r.hashed_bytes,
            "reused_files": r.reused_files,
            "skipped": r.skipped.len(),
        });
        println!("{j}");
    } else if let (Some(url), false) = (a.url(), a.copy) {
        println!(
            "{}{}: {}, {}, read in place from {url}, nothing copied{}",
            r.version.label(),
            if r.unchanged { " unchanged" } else { "" },
            count(r.files, "file"),
            bytes(r.bytes),
            read_note(&r)
        );
    } else if r.unchanged {
        println!(
            "{} unchanged: {}, {}; nothing uploaded{}",
            r.version.label(),
            count(r.files, "file"),
            bytes(r.bytes),
            read_note(&r)
        );
    } else {
        println!(
            "{}: {}, {}, uploaded {} in {}, dedup saved {}{}",
            r.version.label(),
            count(r.files, "file"),
            bytes(r.bytes),
            bytes(r.uploaded_bytes),
            count(r.uploaded_objects, "object"),
            bytes(r.dedup_bytes()),
            read_note(&r)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// How much was read, when the stat cache spared some of it.
fn read_note(r: &crate::push::PushReport) -> String {
    match r.reused_files {
        0 => String::new(),
        n if n == r.files => ", none read (all unchanged since the last push)".to_string(),
        n => format!(
            ", {} read ({} known unchanged)",
            bytes(r.hashed_bytes),
            count(n, "file")
        ),
    }
}
