use super::Ctx;
use crate::cache::CacheSize;
use crate::format::name::parse_target;
use crate::mount::daemon::{self, LogPlace, Notify, READY_FD};
use crate::mount::options::MountOptions;
use crate::mount::{mountpoint, serve, MountRequest, DEFAULT_THREADS};
use crate::read::{default_fetch_budget, DEFAULT_MEMORY};
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Mount a version read-only, as an ordinary directory tree.
///
/// The mount point defaults to /datastores/NAME. It must be absolute; a relative one is
/// placed under /datastores/ (which is created as needed). The command returns once the mount
/// is live, leaving a daemon serving it, or fails with the reason; --foreground keeps the
/// daemon attached (for systemd and debugging). The mount is read-only, nosuid and nodev, and
/// only the user who mounted it may read it unless `-o allow_other` is given (non-root users
/// need `user_allow_other` in /etc/fuse.conf for that). A mount point that holds files is
/// refused, since the mount would hide them, unless `-o nonempty` is given.
///
/// Options (-o, comma-separated, also accepted from fstab and `mount -t fuse.datastore`):
///   store=URL  timeout=SECS  allow_other  allow_root  nonempty  threads=N  memory=SIZE
///   log=FILE  cache_dir=DIR  cache_size=SIZE  fetch_budget=SIZE  passthrough=on|off
///   follow=DURATION (a NAME@latest mount moves to each new version within DURATION)
///   cache_url=URL (a shared HTTP cache tier, e.g. nginx; also DATASTORE_CACHE_URL, with
///   its secret header from DATASTORE_CACHE_SECRET)
/// Options of mount(8) such as ro, dev, suid, _netdev, nofail and x-* are ignored.
///
/// Examples:
///   datastore mount imagenet                    # latest version at /datastores/imagenet
///   datastore mount imagenet@v3 /mnt/imagenet -o allow_other
///   datastore umount /datastores/imagenet
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// NAME or NAME@VER (VER: latest, vN or N).
    pub target: String,
    /// Where to mount [default: /datastores/NAME].
    pub mountpoint: Option<PathBuf>,
    /// Mount options, comma-separated; may be repeated.
    #[arg(short = 'o', value_name = "OPTIONS")]
    pub options: Vec<String>,
    /// Serve in the foreground, logging to stderr, until unmounted or signalled.
    #[arg(short, long)]
    pub foreground: bool,
    /// Let every user read the mount (same as -o allow_other).
    #[arg(long)]
    pub allow_other: bool,
    /// Disk cache directory, shared by every mount on the node [default: /var/cache/datastore
    /// for root, else the user's cache dir] (same as -o cache_dir=DIR, which, being on the
    /// command line too, beats $DATASTORE_CACHE_DIR).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Disk cache size: bytes (200G) or a share of its filesystem (80%); 0 disables the cache
    /// [default: 25%] (same as -o cache_size=SIZE).
    #[arg(long, value_name = "SIZE")]
    pub cache_size: Option<CacheSize>,
    /// Bytes all fetches together (reads and read-ahead) may hold in flight [default: 1/16
    /// of RAM, at most 1G] (same as -o fetch_budget=SIZE).
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes, alias = "prefetch-memory")]
    pub fetch_budget: Option<u64>,
    /// Record the order files are first opened in, one path per line, for
    /// `datastore prefetch NAME@VER --from-list FILE` to replay before the next run.
    #[arg(long, value_name = "FILE")]
    pub record_trace: Option<PathBuf>,
    /// Serve Prometheus metrics on this address (for example 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Descriptor to report readiness on (set by the background launcher).
    #[arg(long, hide = true, value_parser = ready_fd, allow_negative_numbers = true)]
    pub ready_fd: Option<i32>,
}

/// `--ready-fd`: a descriptor this process was started with, other than the standard three
/// (it is taken over, and closed once the mount is live).
fn ready_fd(s: &str) -> Result<i32, String> {
    let fd: i32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a file descriptor"))?;
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!(
            "{fd} is not an open descriptor past stderr; --ready-fd is for the background mount's own use"
        ));
    }
    Ok(fd)
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    crate::size::parse_size(s).ok_or_else(|| format!("'{s}' is not a size such as 512M"))
}

impl Args {
    pub fn parsed_options(&self) -> Result<MountOptions> {
        Ok(MountOptions::parse(&self.options)?)
    }
}

/// Starts the daemon and waits for it (background), or serves (foreground).
pub async fn run(ctx: &Ctx, a: Args, opts: MountOptions, store_url: &str) -> Result<ExitCode> {
    let target = parse_target(&a.target)?;
    let point = mountpoint::resolve(a.mountpoint.as_deref(), &target.dataset);
    if !a.foreground {
        // A dataset or version that is not there is named here, with its kind under --json,
        // before a daemon (and its log) is started for it.
        ctx.catalog.resolve(&target.dataset, target.version).await?;
        let mut args: Vec<OsString> = vec![
            "--store".into(),
            store_url.into(),
            "--timeout".into(),
            ctx.timeout_secs.to_string().into(),
            "mount".into(),
            a.target.clone().into(),
            point.clone().into(),
            "--foreground".into(),
            "--ready-fd".into(),
            READY_FD.to_string().into(),
        ];
        for o in &a.options {
            args.push("-o".into());
            args.push(o.into());
        }
        if a.allow_other {
            args.push("--allow-other".into());
        }
        if let Some(d) = &a.cache_dir {
            args.push("--cache-dir".into());
            args.push(d.into());
        }
        if let Some(t) = &a.record_trace {
            args.push("--record-trace".into());
            args.push(std::path::absolute(t)?.into());
        }
        if let Some(m) = a.metrics_addr {
            args.push("--metrics-addr".into());
            args.push(m.to_string().into());
        }
        if let Some(p) = a.fetch_budget {
            args.push("--fetch-budget".into());
            args.push(p.to_string().into());
        }
        if let Some(s) = &a.cache_size {
            args.push("--cache-size".into());
            args.push(match s {
                CacheSize::Bytes(b) => b.to_string().into(),
                CacheSize::Percent(p) => format!("{p}%").into(),
            });
        }
        // Decided here, so that this command can say where the daemon's log is.
        let log = match &opts.log {
            Some(file) => LogPlace::File(file.clone()),
            None => LogPlace::default_for(&point),
        };
        if let (LogPlace::File(file), None) = (&log, &opts.log) {
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir).with_context(|| {
                    format!(
                        "cannot create the log directory {}; give a log file with -o log=FILE",
                        dir.display()
                    )
                })?;
            }
            args.push("-o".into());
            args.push(format!("log={}", file.display()).into());
        }
        // A refused mount leaves no log file of its choosing behind: its error is printed
        // here (a file the user named is theirs).
        let fresh_log = match (&log, &opts.log) {
            (LogPlace::File(f), None) if !f.exists() => Some(f.clone()),
            _ => None,
        };
        return match daemon::spawn(args) {
            Ok(label) if ctx.json => {
                super::json::print(&serde_json::json!({
                    "version": label,
                    "mountpoint": point.display().to_string(),
                    "log": log.describe(),
                }));
                Ok(ExitCode::SUCCESS)
            }
            Ok(_) => {
                if !ctx.quiet {
                    println!(
                        "{} mounted at {}; log: {}",
                        a.target,
                        point.display(),
                        log.describe()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(why) => {
                if let Some(f) = fresh_log {
                    let _ = std::fs::remove_file(f);
                }
                anyhow::bail!("{why}")
            }
        };
    }
    let mut notify = Notify::from(a.ready_fd);
    let req = MountRequest {
        target,
        mountpoint: point,
        allow_other: a.allow_other || opts.allow_other,
        allow_root: opts.allow_root,
        non_empty: opts.non_empty,
        threads: opts.threads.unwrap_or(DEFAULT_THREADS),
        memory: opts.memory.unwrap_or(DEFAULT_MEMORY),
        fetch_budget: a
            .fetch_budget
            .or(opts.fetch_budget)
            .unwrap_or_else(default_fetch_budget),
        passthrough: opts.passthrough.unwrap_or(true),
        follow: opts.follow,
        trace: a.record_trace,
        metrics_addr: a.metrics_addr,
        cache: Some(
            ctx.config.cache(
                a.cache_dir
                    .or(opts.cache_dir)
                    .or_else(|| std::env::var_os("DATASTORE_CACHE_DIR").map(PathBuf::from)),
                a.cache_size.or(opts.cache_size),
            )?,
        ),
    };
    match serve(&ctx.catalog, req, &mut notify).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            let e = anyhow::Error::from(e);
            notify.failed(&super::error_line(&e));
            Err(e)
        }
    }
}
