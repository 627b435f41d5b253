use super::output::path;
use super::Ctx;
use crate::format::name::parse_target;
use crate::ops::diff::{diff, Change};
use anyhow::{bail, Result};
use std::process::ExitCode;

/// Show paths added (A), removed (D) and changed (M) between two versions, in tree order.
///
/// A change is a different content, kind, symlink target or mode; a new mtime alone is not.
///
/// Example: datastore diff imagenet@v2 imagenet@v3
#[derive(Debug, clap::Args)]
pub struct Args {
    /// NAME@A
    from: String,
    /// NAME@B
    to: String,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let (ta, tb) = (parse_target(&a.from)?, parse_target(&a.to)?);
    if !ta.path.is_empty() || !tb.path.is_empty() {
        bail!("diff compares whole versions: give NAME@A NAME@B without a path");
    }
    let va = ctx.catalog.resolve(&ta.dataset, ta.version).await?;
    let vb = ctx.catalog.resolve(&tb.dataset, tb.version).await?;
    let (ma, mb) = futures::try_join!(ctx.catalog.manifest(&va), ctx.catalog.manifest(&vb))?;
    let mut counts = [0u64; 3];
    let mut changes = ctx.json.then(|| {
        let head = serde_json::json!({ "from": va.label(), "to": vb.label() }).to_string();
        super::json::Array::start(&format!("{},\"changes\":", head.trim_end_matches('}')))
    });
    diff(&ma, &mb, &mut |c, p| {
        let (tag, i, word) = match c {
            Change::Added => ('A', 0, "added"),
            Change::Removed => ('D', 1, "removed"),
            Change::Changed => ('M', 2, "changed"),
        };
        counts[i] += 1;
        match &mut changes {
            Some(out) => out.push(&serde_json::json!({ "change": word, "path": path(p) })),
            None => println!("{tag}\t{}", path(p)),
        }
    });
    if let Some(out) = changes {
        let [added, removed, changed] = counts;
        out.end(&format!(
            ",\"added\":{added},\"removed\":{removed},\"changed\":{changed}}}"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "{} → {}: {} added, {} removed, {} changed",
        va.label(),
        vb.label(),
        counts[0],
        counts[1],
        counts[2]
    );
    Ok(ExitCode::SUCCESS)
}
