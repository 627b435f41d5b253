//! The command line: one file per subcommand, each parsing its arguments, calling the library
//! and printing the result. Only this module prints or knows about exit codes.

mod cache;
mod config;
mod diff;
mod du;
mod gc;
mod get;
mod json;
mod log;
mod ls;
mod mount;
pub mod output;
mod prefetch;
mod progress;
mod push;
mod rm;
mod status;
mod switch;
mod umount;
mod verify;

use crate::catalog::Catalog;
use crate::store::tier::Tier;
use crate::store::{Store, StoreOptions};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// The heading that keeps the options every command takes apart from its own.
const GLOBAL: &str = "Global options";

/// Versioned, deduplicated datasets in object storage.
///
/// The store is chosen by --store, else DATASTORE_STORE, else the `store` key of
/// /etc/datastore/config.toml or ~/.config/datastore/config.toml, else a local directory
/// store under ~/.local/share/datastore/store.
#[derive(Debug, Parser)]
#[command(name = "datastore", version, propagate_version = true)]
pub struct Cli {
    /// Store URL: s3://BUCKET/PREFIX, gs://…, az://…, file:///DIR or a directory path
    /// [env: DATASTORE_STORE].
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "URL")]
    pub store: Option<String>,
    /// Longest time one store operation may take, retries included, in seconds [default: 30]
    /// [env: DATASTORE_TIMEOUT].
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "SECS", value_parser = seconds, allow_negative_numbers = true)]
    pub timeout: Option<u64>,
    /// No progress bars.
    #[arg(long, short, global = true, help_heading = GLOBAL)]
    pub quiet: bool,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(long, short, global = true, help_heading = GLOBAL, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print the result as JSON (doc/JSON.md), and an error as a JSON line on stderr.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub json: bool,
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
    Prefetch(prefetch::Args),
    Status(status::Args),
    Mount(mount::Args),
    Umount(umount::Args),
    Switch(switch::Args),
    Cache(cache::Args),
}

/// A number of seconds, at least 1 (a timeout of 0 would fail everything at once).
fn seconds(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a number of seconds of at least 1")),
    }
}

/// A variable of ours from the environment; set but empty is unset.
fn env_setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `DATASTORE_TIMEOUT`, refused in its own name (read by clap, its mistakes were put down
/// to --timeout).
fn env_timeout() -> Result<Option<u64>> {
    let Some(v) = env_setting("DATASTORE_TIMEOUT") else {
        return Ok(None);
    };
    match seconds(&v) {
        Ok(n) => Ok(Some(n)),
        Err(why) => anyhow::bail!("DATASTORE_TIMEOUT: {why}; fix or unset it"),
    }
}

/// A duration as people write them (30m, 1h, 2days), refused in our own words: humantime's
/// name a position in the text and list every unit it knows.
pub fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|_| {
        format!(
            "'{}' is not a duration such as 30m, 1h or 2days",
            s.escape_debug()
        )
    })
}

/// A count of things done at once (`--jobs`): 0 would do nothing, and is refused.
pub fn at_least_one() -> impl clap::builder::TypedValueParser<Value = usize> {
    |s: &str| match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("'{s}' is not a number of at least 1")),
    }
}

/// What every subcommand gets: the catalog of the chosen store and the global flags.
pub struct Ctx {
    pub catalog: Catalog,
    pub quiet: bool,
    /// `--json`: results as JSON on stdout.
    pub json: bool,
    /// The store timeout in effect, passed on to a background mount daemon.
    pub timeout_secs: u64,
    pub config: config::Config,
}

/// A command stopped by a signal before it finished, having undone what it did.
#[derive(Debug, thiserror::Error)]
#[error("{} interrupted the {what}", signal_name(*signal))]
pub struct Interrupted {
    pub signal: i32,
    /// The command, and what became of what it did.
    pub what: String,
}

impl Interrupted {
    /// The exit code of a command a signal ended: 128 + its number, as shells report it.
    pub fn exit_code(&self) -> u8 {
        (128 + self.signal).clamp(0, 255) as u8
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    }
}

/// The first of SIGINT, SIGTERM and SIGHUP to arrive, for a command that undoes its work
/// when stopped: once this is listened for, they no longer end the process at once.
pub async fn interrupted() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    async fn one(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = one(SignalKind::interrupt()) => libc::SIGINT,
        _ = one(SignalKind::terminate()) => libc::SIGTERM,
        _ = one(SignalKind::hangup()) => libc::SIGHUP,
    }
}

/// The exit code of a command that failed with `e`: 1, or 128 + the signal that stopped it.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    match e.downcast_ref::<Interrupted>() {
        Some(i) => ExitCode::from(i.exit_code()),
        None => ExitCode::FAILURE,
    }
}

/// The shared cache tier at `url` (`cache_url=`, else `DATASTORE_CACHE_URL`, else the config
/// file's `cache_url`), with its secret from `DATASTORE_CACHE_SECRET` (never an option or
/// flag: it would be on a command line).
fn open_tier(url: Option<String>, store_timeout: Duration) -> Result<Option<std::sync::Arc<Tier>>> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let secret = std::env::var("DATASTORE_CACHE_SECRET").ok();
    let tier = Tier::new(&url, secret, store_timeout.min(crate::store::tier::TIMEOUT))?;
    Ok(Some(std::sync::Arc::new(tier)))
}

/// Where log lines go.
enum LogSink {
    Stderr,
    File(std::fs::File),
    Syslog,
}

/// Logs go to stderr, warnings and errors by default (errors alone with --quiet), coloured
/// only on a terminal; a mount daemon also says how it mounts and when it unmounts, to stderr
/// in the foreground (the journal, under systemd), else to syslog or its `log=` file.
fn init_logging(verbose: u8, quiet: bool, sink: LogSink, daemon: bool) {
    let level = match (verbose, &sink) {
        (0, LogSink::Stderr) if quiet && !daemon => "error",
        (0, LogSink::Stderr) if !daemon => "warn",
        (0 | 1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match sink {
        LogSink::Stderr => {
            use std::io::IsTerminal;
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            fmt.with_writer(std::io::stderr)
                .with_ansi(colour)
                .without_time()
                .init()
        }
        LogSink::File(f) => fmt
            .with_writer(std::sync::Mutex::new(f))
            .with_ansi(false)
            .init(),
        LogSink::Syslog => {
            let w = crate::mount::daemon::Syslog::open();
            fmt.with_writer(move || w)
                .with_ansi(false)
                .without_time()
                .init()
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    // A mount's -o options may name the store and its log; read them before anything else.
    let mount_opts = match &cli.command {
        Command::Mount(a) => Some(a.parsed_options()?),
        _ => None,
    };
    let sink = match (&cli.command, &mount_opts) {
        (Command::Mount(a), Some(o)) if a.ready_fd.is_some() => match &o.log {
            Some(path) => LogSink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open log file {}", path.display()))?,
            ),
            None => LogSink::Syslog,
        },
        _ => LogSink::Stderr,
    };
    init_logging(cli.verbose, cli.quiet, sink, mount_opts.is_some());
    if let Command::Umount(a) = cli.command {
        return umount::run(a);
    }
    if let Command::Switch(a) = cli.command {
        return switch::run(a, cli.quiet);
    }
    if let Command::Prefetch(a) = &cli.command {
        if let Some(handed) = a.to_mount(cli.quiet, cli.json) {
            return handed;
        }
    }
    if let Command::Push(a) = &cli.command {
        a.check()?;
    }
    let cfg = config::load()?;
    if let Command::Cache(a) = cli.command {
        return cache::run(a, &cfg, cli.json);
    }
    let url = match mount_opts
        .as_ref()
        .and_then(|o| o.store.clone())
        .or(cli.store)
        .or_else(|| env_setting("DATASTORE_STORE"))
        .or(cfg.store.clone())
    {
        Some(u) => u,
        None => config::default_store()?,
    };
    let given = mount_opts
        .as_ref()
        .and_then(|o| o.timeout_secs)
        .or(cli.timeout);
    let timeout_secs = match given {
        Some(secs) => Some(secs),
        None => env_timeout()?.or(cfg.timeout_secs),
    }
    .unwrap_or(30)
    .max(1);
    let timeout = Duration::from_secs(timeout_secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        // Only a push makes a store that is not there yet.
        let create = matches!(cli.command, Command::Push(_));
        let store = Store::open(&url, &StoreOptions { timeout, create })?;
        let tier_url = mount_opts
            .as_ref()
            .and_then(|o| o.cache_url.clone())
            .or_else(|| std::env::var("DATASTORE_CACHE_URL").ok())
            .or(cfg.cache_url.clone());
        let ctx = Ctx {
            catalog: Catalog::new(store).with_tier(open_tier(tier_url, timeout)?),
            quiet: cli.quiet,
            json: cli.json,
            timeout_secs,
            config: cfg,
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
            Command::Prefetch(a) => prefetch::run(&ctx, a).await,
            Command::Status(a) => status::run(&ctx, a).await,
            Command::Mount(a) => {
                let opts = mount_opts.unwrap_or_default();
                mount::run(&ctx, a, opts, &url).await
            }
            Command::Umount(_) | Command::Switch(_) | Command::Cache(_) => {
                unreachable!("handled above")
            }
        }
    })
}

/// Rewrites the command line mount helpers use, `datastore SOURCE MOUNTPOINT -o OPTIONS`
/// (how mount(8) runs `mount -t fuse.datastore` and fstab lines, through mount.fuse3), into
/// `datastore mount SOURCE MOUNTPOINT -o OPTIONS`. mount(8) always passes `-o` (at least `rw`
/// or `ro`), so a first word that is no subcommand, followed by an absolute path and `-o`, is
/// that call; without `-o` it is a mistyped subcommand, left for clap to name (`datastore pussh
/// /srv/d` is not a mount of a dataset called "pussh").
pub fn helper_form(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let is_helper = args.len() >= 5
        && args[1].to_str().is_some_and(|first| {
            !first.starts_with('-')
                && first != "help"
                && !Cli::command()
                    .get_subcommands()
                    .any(|c| c.get_name() == first)
        })
        && std::path::Path::new(&args[2]).is_absolute()
        && args[3..].iter().any(|a| a == "-o");
    if is_helper {
        args.insert(1, "mount".into());
    }
    args
}

/// How `main` shows an error: its line, or under `--json` the JSON line of [`json::error`].
pub fn error_report(e: &anyhow::Error, json: bool) -> String {
    match json {
        true => json::error(e),
        false => format!("datastore: {}", error_line(e)),
    }
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

#[cfg(test)]
mod tests {
    use super::{helper_form, Cli};
    use clap::CommandFactory;

    /// Examples and option lists are printed as written, one per line, and the options every
    /// command takes under their own heading.
    #[test]
    fn help_keeps_examples_as_written() {
        let mut cli = Cli::command();
        cli.build();
        for sub in cli.get_subcommands_mut().filter(|s| s.get_name() != "help") {
            let name = sub.get_name().to_string();
            let help = sub.render_long_help().to_string();
            if help.contains("Examples:") {
                assert!(help.contains("Examples:\n  datastore "), "{name}:\n{help}");
            }
            assert!(help.contains("Global options:"), "{name}:\n{help}");
        }
        let mount = cli.find_subcommand_mut("mount").unwrap().render_long_help();
        assert!(
            mount.to_string().contains(
                "comma-separated, also accepted from fstab and `mount -t \
             fuse.datastore`):\n  store=URL"
            ),
            "{mount}"
        );
    }

    fn form(line: &str) -> String {
        let args = line.split(' ').map(Into::into).collect();
        let out: Vec<String> = helper_form(args)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        out.join(" ")
    }

    #[test]
    fn only_the_call_of_mount8_is_taken_for_a_mount() {
        let helper = "datastore ds@v2 /mnt/ds -o rw,store=s3://b";
        assert_eq!(
            form(helper),
            "datastore mount ds@v2 /mnt/ds -o rw,store=s3://b"
        );
        for typo in [
            "datastore pussh /srv/d",
            "datastore mydata /mnt/m2",
            "datastore pussh /srv/d mydata",
            "datastore pussh ./d -o x",
            "datastore push /srv/d -o x",
        ] {
            assert_eq!(form(typo), typo);
        }
    }
}
