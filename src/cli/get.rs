use super::output::{bytes, count};
use super::progress::Bar;
use super::{at_least_one, Ctx};
use crate::format::name::parse_target;
use crate::ops::get::{get, GetOptions, GetProgress};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Copy a version, a directory or a file to local disk, verified.
///
/// Every file is checked against its SHA-256 before it is renamed into place, so nothing
/// partial is ever left. A new destination directory appears whole or not at all. An
/// existing one is filled if it is empty or holds an earlier get of the same version (files
/// with the right content are kept, so a get that was killed can be run again to finish);
/// one holding anything else needs --merge. A file present with other content is an error,
/// and what is already there is never changed. A get that fails or is interrupted (Ctrl-C,
/// SIGTERM, SIGHUP) removes everything it wrote.
///
/// Examples:
///   datastore get imagenet@v3 ./imagenet
///   datastore get imagenet/train/n01440764/img1.jpg .
///   datastore get imagenet@v3/val ~/data --merge
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
    /// Add the version to a destination directory that holds other things too (they are left
    /// as they are; a file the version has with other content is still refused).
    #[arg(long)]
    merge: bool,
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
    let opts = GetOptions {
        concurrency: a.jobs,
        merge: a.merge,
    };
    // The signals are listened for before the get starts (biased: polled first).
    let r = tokio::select! {
        biased;
        signal = super::interrupted() => {
            drop(bar);
            return Err(super::Interrupted {
                signal,
                what: format!("get; nothing it wrote is left in {}", a.dest.display()),
            }
            .into());
        }
        r = get(&ctx.catalog, &t, &a.dest, opts, &progress) => r?,
    };
    drop(bar);
    for path in &r.removed {
        eprintln!(
            "warning: removed {}, left by an earlier get that was killed",
            path.display()
        );
    }
    if ctx.json {
        super::json::print(&serde_json::json!({
            "version": r.label,
            "path": t.path_display(),
            "dest": a.dest.display().to_string(),
            "files": r.files,
            "bytes": r.bytes,
            "kept": r.kept,
            "others": r.others,
            "removed_leftovers": r.removed.len(),
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let mut notes = Vec::new();
    if r.kept > 0 {
        notes.push(format!("{} already present", r.kept));
    }
    if r.others > 0 {
        notes.push(format!(
            "{} there before and not in the version, left alone",
            count(r.others, "entry")
        ));
    }
    let kept = match notes.is_empty() {
        true => String::new(),
        false => format!(" ({})", notes.join("; ")),
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
