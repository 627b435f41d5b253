use super::output::{bytes, path, table, time};
use super::Ctx;
use crate::format::name::check_dataset_name;
use anyhow::{bail, Result};
use std::process::ExitCode;

/// Show the versions of a dataset, newest first.
///
/// Deleted versions are left out; their numbers are never reused.
///
/// Example: datastore log imagenet
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dataset name.
    name: String,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    let name = a.name.split(['@', '/']).next().unwrap_or_default();
    check_dataset_name(name)?;
    if name != a.name {
        bail!("log shows every version of a dataset: datastore log {name}");
    }
    let listing = ctx.catalog.list_dataset(name).await?;
    if ctx.json {
        let all: Vec<_> = listing.committed().map(super::json::version).collect();
        super::json::print(&all.into());
        return Ok(super::ls::name_damage(ctx, listing.damage));
    }
    let mut rows = vec![["VERSION", "CREATED", "FILES", "SIZE", "PARENT", "MESSAGE"]
        .map(String::from)
        .to_vec()];
    for v in listing.committed() {
        rows.push(vec![
            format!("v{}", v.version),
            time(v.created_unix),
            v.files.to_string(),
            bytes(v.bytes),
            v.parent.map_or("-".into(), |p| format!("v{p}")),
            path(v.message.as_bytes()),
        ]);
    }
    if rows.len() > 1 {
        table(&rows);
    }
    Ok(super::ls::name_damage(ctx, listing.damage))
}
