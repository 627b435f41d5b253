use super::output::{bytes, count, path};
use super::progress::Bar;
use super::Ctx;
use crate::format::name::parse_target;
use crate::ops::verify::{verify, VerifyProgress};
use anyhow::{bail, Result};
use std::process::ExitCode;
use std::sync::Arc;

/// Check that every object a version references exists and matches its SHA-256.
///
/// Downloads everything the version references. Exits 1 and lists each damaged or missing
/// object, with a path that uses it, if anything is wrong.
///
/// Examples:
///   datastore verify imagenet@v3
///   datastore verify imagenet --all
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// NAME[@VER].
    target: String,
    /// Verify every version of the dataset.
    #[arg(long)]
    all: bool,
    /// Objects fetched in parallel.
    #[arg(long, default_value_t = 8, value_parser = super::at_least_one())]
    jobs: usize,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let t = parse_target(&a.target)?;
    if !t.path.is_empty() {
        bail!("verify checks whole versions: give NAME or NAME@VER without a path");
    }
    if a.all && t.version_given {
        bail!(
            "verify --all takes a dataset name without a version: verify {} --all",
            t.dataset
        );
    }
    // With --all, refs that cannot be read are named and the others verified.
    let (versions, damage) = if a.all {
        let listing = ctx.catalog.list_dataset(&t.dataset).await?;
        (listing.committed().cloned().collect(), listing.damage)
    } else {
        let v = ctx.catalog.resolve(&t.dataset, t.version).await?;
        (vec![v], Vec::new())
    };
    let mut bad = 0;
    let mut reports = Vec::new();
    for v in versions {
        let progress = Arc::new(VerifyProgress::default());
        let p = progress.clone();
        let bar = Bar::follow(
            ctx.quiet || ctx.json,
            "verify",
            Arc::new(move || Bar::counters(&p.done_bytes, &p.total_bytes)),
        );
        let r = verify(&ctx.catalog, &v, a.jobs, &progress).await?;
        drop(bar);
        bad += r.problems.len();
        if ctx.json {
            let problems: Vec<_> = r
                .problems
                .iter()
                .map(|p| serde_json::json!({ "path": path(&p.path), "problem": p.what }))
                .collect();
            reports.push(serde_json::json!({
                "version": r.label,
                "ok": problems.is_empty(),
                "objects": r.objects,
                "bytes": r.bytes,
                "problems": problems,
            }));
            continue;
        }
        for p in &r.problems {
            eprintln!("{}/{}: {}", r.label, path(&p.path), p.what);
        }
        let status = if r.problems.is_empty() {
            "ok".to_string()
        } else {
            count(r.problems.len() as u64, "problem")
        };
        println!(
            "{}: {status} ({}, {} checked)",
            r.label,
            count(r.objects, "object"),
            bytes(r.bytes)
        );
    }
    if ctx.json {
        super::json::print(&reports.into());
    }
    let damaged = !damage.is_empty();
    super::ls::name_damage(ctx, damage);
    Ok(if bad == 0 && !damaged {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
