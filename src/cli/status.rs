use super::output::{bytes, count, table, time};
use super::Ctx;
use crate::catalog::lease::{activity, State};
use anyhow::Result;
use std::process::ExitCode;

/// Show pushes running on this store, and those that failed or were abandoned lately.
///
/// Each push's lease tells its dataset, host, process, start and how far it got (as of its
/// last heartbeat, at most 15 s old). A push whose process is gone (killed, or its machine
/// down) is abandoned: nothing of it is visible, and pushing again finishes the work. A failed
/// push shows its error for a week. A version is in `log` only once committed.
///
/// Examples:
///   datastore status
///   datastore status imagenet --json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Only pushes of this dataset.
    name: Option<String>,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    if let Some(n) = &a.name {
        crate::format::name::check_dataset_name(n)?;
    }
    let all = activity(ctx.catalog.store()).await?;
    let shown: Vec<_> = all
        .into_iter()
        .filter(|x| a.name.as_ref().is_none_or(|n| *n == x.detail.dataset))
        .collect();
    // Nothing under way and no version: there is no such dataset, which is not "no pushes".
    if let (Some(n), true) = (&a.name, shown.is_empty()) {
        if ctx.catalog.version_numbers(n).await?.is_empty() {
            return Err(crate::catalog::CatalogError::UnknownDataset(n.clone()).into());
        }
    }
    if ctx.json {
        let items: Vec<serde_json::Value> = shown
            .iter()
            .map(|x| {
                serde_json::json!({
                    "dataset": x.detail.dataset,
                    "state": state(x.state),
                    "host": x.lease.host,
                    "pid": x.lease.pid,
                    "started_unix": x.lease.started_unix,
                    "updated_unix": x.detail.updated_unix,
                    "source": x.detail.source,
                    "files_done": x.detail.files_done,
                    "files_total": x.detail.files_total,
                    "bytes_done": x.detail.bytes_done,
                    "bytes_total": x.detail.bytes_total,
                    "failure": x.detail.failure,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(ExitCode::SUCCESS);
    }
    if shown.is_empty() {
        let what = a.name.map_or(String::new(), |n| format!(" of {n}"));
        eprintln!(
            "no pushes{what} running, failed or abandoned lately in {}",
            ctx.catalog.store().url()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "DATASET", "STATE", "HOST", "PID", "STARTED", "SOURCE", "PROGRESS",
    ]
    .map(String::from)
    .to_vec()];
    for x in &shown {
        let d = &x.detail;
        let progress = format!(
            "{} of {}, {} of {}",
            d.files_done,
            count(d.files_total, "file"),
            bytes(d.bytes_done),
            bytes(d.bytes_total)
        );
        let progress = match (&d.failure, x.state) {
            (Some(why), _) => format!("{progress}: {why}"),
            (None, State::Abandoned) => {
                format!("{progress}, then its process stopped; push again to finish")
            }
            (None, _) => {
                let age = crate::catalog::unix_now()
                    .saturating_sub(d.updated_unix)
                    .max(0);
                format!("{progress} (as of {age}s ago)")
            }
        };
        rows.push(vec![
            d.dataset.clone(),
            state(x.state).to_string(),
            x.lease.host.clone(),
            x.lease.pid.to_string(),
            time(x.lease.started_unix),
            d.source.clone(),
            progress,
        ]);
    }
    table(&rows);
    Ok(ExitCode::SUCCESS)
}

fn state(s: State) -> &'static str {
    match s {
        State::Running => "pushing",
        State::Abandoned => "abandoned",
        State::Failed => "failed",
    }
}
