use super::output::{bytes, count};
use super::Ctx;
use crate::ops::gc::gc;
use anyhow::Result;
use std::process::ExitCode;
use std::time::Duration;

/// Delete blobs, packs and manifests that no version references.
///
/// Safe to run while pushes run: gc waits for none, stops itself when a push starts, and
/// never deletes objects younger than the grace period. Objects that imported versions read
/// in place are outside the store's prefixes and never touched.
///
/// Example: datastore gc --dry-run
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Report what would be deleted, delete nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Keep unreferenced objects younger than this (e.g. 30m, 1h, 2days).
    #[arg(long, default_value = "1h", value_parser = super::duration)]
    grace: Duration,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let r = gc(&ctx.catalog, a.grace, a.dry_run).await?;
    let verb = if r.dry_run { "would delete" } else { "deleted" };
    println!(
        "live: {}, {}; {verb} {} ({}); kept {} younger than {}",
        count(r.live_versions, "version"),
        count(r.live_objects, "object"),
        count(r.deleted_objects, "object"),
        bytes(r.deleted_bytes),
        count(r.young_objects, "unreferenced object"),
        humantime::format_duration(a.grace)
    );
    if r.source_objects > 0 {
        println!(
            "left alone: {} that imported versions read in place (gc deletes only what datastore stored)",
            count(r.source_objects, "source object")
        );
    }
    Ok(ExitCode::SUCCESS)
}
