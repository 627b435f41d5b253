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
    #[arg(long, default_value_t = 8)]
    jobs: usize,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let t = parse_target(&a.target)?;
    if !t.path.is_empty() {
        bail!("verify checks whole versions: give NAME or NAME@VER without a path");
    }
    let versions = if a.all {
        ctx.catalog
            .versions(&t.dataset)
            .await?
            .into_iter()
            .filter(|v| v.is_committed())
            .collect()
    } else {
        vec![ctx.catalog.resolve(&t.dataset, t.version).await?]
    };
    let mut bad = 0;
    for v in versions {
        let progress = Arc::new(VerifyProgress::default());
        let p = progress.clone();
        let bar = Bar::follow(
            ctx.quiet,
            "verify",
            Arc::new(move || Bar::counters(&p.done_bytes, &p.total_bytes)),
        );
        let r = verify(&ctx.catalog, &v, a.jobs, &progress).await?;
        drop(bar);
        for p in &r.problems {
            eprintln!("{}/{}: {}", r.label, path(&p.path), p.what);
        }
        bad += r.problems.len();
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
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
