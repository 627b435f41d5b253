use super::output::{bytes, count};
use super::Ctx;
use crate::format::name::parse_target;
use crate::ops::{du::usage, open};
use anyhow::Result;
use std::process::ExitCode;

/// Show the size of a version or of a path in it.
///
/// Example: datastore du imagenet@v3/train
#[derive(Debug, clap::Args)]
pub struct Args {
    /// NAME[@VER][/PATH].
    target: String,
    /// Exact byte counts.
    #[arg(short, long)]
    bytes: bool,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let t = parse_target(&a.target)?;
    let o = open(&ctx.catalog, &t).await?;
    let u = usage(&o.manifest, o.entry);
    if ctx.json {
        super::json::print(&serde_json::json!({
            "version": o.version.label(),
            "path": t.path_display(),
            "bytes": u.bytes,
            "unique_bytes": u.unique_bytes,
            "files": u.files,
            "dirs": u.dirs,
            "symlinks": u.symlinks,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let fmt = |n: u64| if a.bytes { n.to_string() } else { bytes(n) };
    println!(
        "{}\t{}\t{}\t{}\tunique content {}\t{}{}",
        fmt(u.bytes),
        count(u.files, "file"),
        count(u.dirs, "dir"),
        count(u.symlinks, "symlink"),
        fmt(u.unique_bytes),
        o.version.label(),
        t.path_display()
    );
    Ok(ExitCode::SUCCESS)
}
