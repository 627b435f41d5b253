use super::output::{bytes, path, table, time};
use super::Ctx;
use crate::format::name::check_dataset_name;
use anyhow::Result;
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
    check_dataset_name(&a.name)?;
    let mut rows = vec![["VERSION", "CREATED", "FILES", "SIZE", "PARENT", "MESSAGE"]
        .map(String::from)
        .to_vec()];
    for v in ctx.catalog.committed(&a.name).await? {
        rows.push(vec![
            format!("v{}", v.version),
            time(v.created_unix),
            v.files.to_string(),
            bytes(v.bytes),
            v.parent.map_or("-".into(), |p| format!("v{p}")),
            path(v.message.as_bytes()),
        ]);
    }
    table(&rows);
    Ok(ExitCode::SUCCESS)
}
