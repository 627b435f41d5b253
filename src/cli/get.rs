use super::output::{bytes, count};
use super::progress::Bar;
use super::{at_least_one, Ctx};
use crate::format::name::parse_target;
use crate::ops::get::{get, GetProgress};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Copy a version, a directory or a file to local disk, verified.
///
/// Every file is checked against its SHA-256 before it is renamed into place, so nothing
/// partial is ever left. Files already present with the right content are kept, so an
/// interrupted get can simply be run again; a file present with other content is an error.
///
/// Examples:
///   datastore get imagenet@v3 ./imagenet
///   datastore get imagenet/train/n01440764/img1.jpg .
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// NAME[@VER][/PATH].
    target: String,
    /// Destination: the directory to create or fill, or the file to write.
    dest: PathBuf,
    /// Chunks downloaded in parallel.
    #[arg(long, default_value_t = 16, value_parser = at_least_one())]
    jobs: usize,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let t = parse_target(&a.target)?;
    let progress = Arc::new(GetProgress::default());
    let p = progress.clone();
    let bar = Bar::follow(
        ctx.quiet || ctx.json,
        "get",
        Arc::new(move || Bar::counters(&p.done_bytes, &p.total_bytes)),
    );
    let r = get(&ctx.catalog, &t, &a.dest, a.jobs, &progress).await?;
    drop(bar);
    if ctx.json {
        super::json::print(&serde_json::json!({
            "version": r.label,
            "path": t.path_display(),
            "dest": a.dest.display().to_string(),
            "files": r.files,
            "bytes": r.bytes,
            "kept": r.kept,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let kept = if r.kept > 0 {
        format!(" ({} already present)", r.kept)
    } else {
        String::new()
    };
    println!(
        "{}{} → {}: {}, {} downloaded{kept}",
        r.label,
        t.path_display(),
        a.dest.display(),
        count(r.files, "file"),
        bytes(r.bytes)
    );
    Ok(ExitCode::SUCCESS)
}
