//! The command line: one file per subcommand, each parsing its arguments, calling the library
//! and printing the result. Only this module prints or knows about exit codes.

mod config;
mod diff;
mod du;
mod gc;
mod get;
mod log;
mod ls;
pub mod output;
mod progress;
mod push;
mod rm;
mod verify;

use crate::catalog::Catalog;
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// Versioned, deduplicated datasets in object storage.
///
/// The store is chosen by --store, else DATASTORE_STORE, else the `store` key of
/// /etc/datastore/config.toml or ~/.config/datastore/config.toml, else a local directory
/// store under ~/.local/share/datastore/store.
#[derive(Debug, Parser)]
#[command(name = "datastore", version, propagate_version = true)]
pub struct Cli {
    /// Store URL: s3://BUCKET/PREFIX, gs://…, az://…, file:///DIR or a directory path.
    #[arg(long, global = true, env = "DATASTORE_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Longest time one store operation may take, retries included, in seconds [default: 30].
    #[arg(long, global = true, env = "DATASTORE_TIMEOUT", value_name = "SECS")]
    pub timeout: Option<u64>,
    /// No progress bars.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Push(push::Args),
    Ls(ls::Args),
    Log(log::Args),
    Du(du::Args),
    Diff(diff::Args),
    Get(get::Args),
    Rm(rm::Args),
    Gc(gc::Args),
    Verify(verify::Args),
}

/// What every subcommand gets: the catalog of the chosen store and the global flags.
pub struct Ctx {
    pub catalog: Catalog,
    pub quiet: bool,
}

/// Logs go to stderr; warnings are shown by default.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .init();
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    let cfg = config::load()?;
    let url = match cli.store.or(cfg.store) {
        Some(u) => u,
        None => config::default_store()?,
    };
    let timeout = Duration::from_secs(cli.timeout.or(cfg.timeout_secs).unwrap_or(30).max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&url, &StoreOptions { timeout })?;
        let ctx = Ctx {
            catalog: Catalog::new(store),
            quiet: cli.quiet,
        };
        match cli.command {
            Command::Push(a) => push::run(&ctx, a).await,
            Command::Ls(a) => ls::run(&ctx, a).await,
            Command::Log(a) => log::run(&ctx, a).await,
            Command::Du(a) => du::run(&ctx, a).await,
            Command::Diff(a) => diff::run(&ctx, a).await,
            Command::Get(a) => get::run(&ctx, a).await,
            Command::Rm(a) => rm::run(&ctx, a).await,
            Command::Gc(a) => gc::run(&ctx, a).await,
            Command::Verify(a) => verify::run(&ctx, a).await,
        }
    })
}

/// An error and its causes on one line.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts
        .join(": ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}
