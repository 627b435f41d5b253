use super::output::{bytes, count, path};
use super::progress::Bar;
use super::Ctx;
use crate::push::{push, PushOptions, PushProgress};
use anyhow::Result;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Push a directory as the next version of a dataset.
///
/// Files are deduplicated by SHA-256: unchanged content is never uploaded twice, and an
/// unchanged tree creates no new version. Symlinks are stored as links; fifos, sockets and
/// devices are skipped with a warning. The version becomes visible only when complete.
///
/// Example: datastore push ./imagenet imagenet -m "add val split"
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to push.
    dir: PathBuf,
    /// Dataset name: lower-case letters, digits, '.', '_' and '-'.
    name: String,
    /// Message recorded with the version.
    #[arg(short, long, default_value = "")]
    message: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Files read in parallel.
    #[arg(long, default_value_t = 16)]
    jobs: usize,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let progress = Arc::new(PushProgress::default());
    let p = progress.clone();
    let _bar = Bar::follow(
        ctx.quiet || a.json,
        "push",
        Arc::new(move || Bar::counters(&p.read_bytes, &p.total_bytes)),
    );
    let opts = PushOptions {
        message: a.message,
        concurrency: a.jobs,
        ..Default::default()
    };
    let r = push(&ctx.catalog, &a.dir, &a.name, &opts, progress).await?;
    drop(_bar);
    for s in &r.skipped {
        eprintln!(
            "warning: skipped {} {} (only files, directories and symlinks are stored)",
            s.kind,
            path(s.path.as_os_str().as_bytes())
        );
    }
    if a.json {
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
            "skipped": r.skipped.len(),
        });
        println!("{j}");
    } else if r.unchanged {
        println!(
            "{} unchanged: {}, {}; nothing uploaded",
            r.version.label(),
            count(r.files, "file"),
            bytes(r.bytes)
        );
    } else {
        println!(
            "{}: {}, {}, uploaded {} in {}, dedup saved {}",
            r.version.label(),
            count(r.files, "file"),
            bytes(r.bytes),
            bytes(r.uploaded_bytes),
            count(r.uploaded_objects, "object"),
            bytes(r.dedup_bytes())
        );
    }
    Ok(ExitCode::SUCCESS)
}
