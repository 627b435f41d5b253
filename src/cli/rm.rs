use super::output::count;
use super::Ctx;
use crate::catalog::CatalogError;
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
            // Damaged refs go too (their versions are what the user wants gone); what rm
            // cannot delete is named, after the rest is deleted.
            let listing = ctx.catalog.list_dataset(&t.dataset).await?;
            let mut doomed: Vec<u64> = listing.committed().map(|v| v.version).collect();
            let mut left = Vec::new();
            for e in listing.damage {
                match e {
                    CatalogError::BadRef { version, .. } => doomed.push(version),
                    e => left.push(e),
                }
            }
            for &n in &doomed {
                ctx.catalog.delete(&t.dataset, n).await?;
            }
            println!(
                "deleted {} of {}",
                count(doomed.len() as u64, "version"),
                t.dataset
            );
            return Ok(super::ls::name_damage(ctx, left));
        }
        (true, true, _) => bail!(
            "rm -r takes a dataset name without a version: rm -r {}",
            t.dataset
        ),
        (false, true, VersionSel::Number(n)) => {
            let v = ctx.catalog.delete(&t.dataset, n).await?;
            // An imported version's sources are the user's: say that they stay.
            let sources = match ctx.catalog.manifest(&v).await {
                Ok(m) if m.is_external() => format!(
                    "; the {} it read in place are left where they are",
                    count(m.objects.len() as u64, "source object")
                ),
                _ => String::new(),
            };
            println!("deleted {}{sources}", v.label());
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
