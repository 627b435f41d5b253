use super::output::count;
use super::Ctx;
use crate::format::name::{parse_target, VersionSel};
use anyhow::{bail, Result};
use std::process::ExitCode;

/// Delete a version, or with -r every version of a dataset.
///
/// A deleted version can no longer be read or mounted; its number is never reused. Its content
/// is removed from the store by the next `datastore gc` (unless another version shares it).
///
/// Examples:
///   datastore rm imagenet@v2
///   datastore rm -r scratch
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// NAME@vN, or NAME with -r.
    target: String,
    /// Delete every version of the dataset.
    #[arg(short, long)]
    recursive: bool,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let t = parse_target(&a.target)?;
    if !t.path.is_empty() {
        bail!("rm deletes whole versions, not paths: use NAME@vN or rm -r NAME");
    }
    match (a.recursive, t.version_given, t.version) {
        (true, false, _) => {
            let mut n = 0;
            for v in ctx.catalog.versions(&t.dataset).await? {
                if v.is_committed() {
                    ctx.catalog.delete(&t.dataset, v.version).await?;
                    n += 1;
                }
            }
            println!("deleted {} of {}", count(n, "version"), t.dataset);
        }
        (true, true, _) => bail!(
            "rm -r takes a dataset name without a version: rm -r {}",
            t.dataset
        ),
        (false, true, VersionSel::Number(n)) => {
            let v = ctx.catalog.delete(&t.dataset, n).await?;
            println!("deleted {}", v.label());
        }
        (false, true, VersionSel::Latest) => {
            bail!("rm needs an explicit version number (NAME@vN), not 'latest'")
        }
        (false, false, _) => bail!(
            "rm needs a version: datastore rm {0}@vN (or rm -r {0} to delete every version)",
            t.dataset
        ),
    }
    Ok(ExitCode::SUCCESS)
}
