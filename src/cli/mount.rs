use super::Ctx;
use crate::format::name::parse_target;
use crate::mount::daemon::{self, Notify, READY_FD};
use crate::mount::options::MountOptions;
use crate::mount::{mountpoint, serve, MountRequest, DEFAULT_MEMORY, DEFAULT_THREADS};
use anyhow::Result;
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
/// need `user_allow_other` in /etc/fuse.conf for that).
///
/// Options (-o, comma-separated, also accepted from fstab and `mount -t fuse.datastore`):
///   store=URL  timeout=SECS  allow_other  allow_root  threads=N  memory=SIZE  log=FILE
///   cache_dir=DIR  cache_size=SIZE  prefetch=SIZE
/// Options of mount(8) such as ro, dev, suid, _netdev, nofail and x-* are ignored.
///
/// Examples:
///   datastore mount imagenet                    # latest version at /datastores/imagenet
///   datastore mount imagenet@v3 /mnt/imagenet -o allow_other
///   datastore umount /datastores/imagenet
#[derive(Debug, clap::Args)]
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
    /// Descriptor to report readiness on (set by the background launcher).
    #[arg(long, hide = true)]
    pub ready_fd: Option<i32>,
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
        return match daemon::spawn(args) {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(why) => anyhow::bail!("{why}"),
        };
    }
    let mut notify = Notify::from(a.ready_fd);
    let req = MountRequest {
        target,
        mountpoint: point,
        allow_other: a.allow_other || opts.allow_other,
        allow_root: opts.allow_root,
        threads: opts.threads.unwrap_or(DEFAULT_THREADS),
        memory: opts.memory.unwrap_or(DEFAULT_MEMORY),
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
