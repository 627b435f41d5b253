//! Running a mount in the background, and telling whoever started it when it is live.
//!
//! `datastore mount` (without `--foreground`) starts a copy of itself in a new session with
//! `--foreground --ready-fd 3`, and waits on a pipe: the daemon writes `ok` once the kernel has
//! accepted the mount, or the one-line reason it failed. So the command returns only when the
//! mount can be used, and fails with the daemon's own error otherwise; mount(8) and fstab get
//! the same behaviour through it. Under systemd (`--foreground`, Type=notify) readiness goes
//! to systemd instead.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The descriptor a background daemon reports readiness on.
pub const READY_FD: i32 = 3;

/// Where readiness goes.
pub enum Notify {
    /// The pipe of a `datastore mount` waiting in the foreground.
    Pipe(File),
    /// systemd's notification socket (`Type=notify`).
    Systemd,
    Nobody,
}

/// What a daemon writes to the ready pipe once its mount is live, before the label of the
/// version it serves (an error line never starts with a tab).
const READY: &str = "ok\t";

impl Notify {
    /// The pipe if `ready_fd` is given, else systemd if it is listening, else nobody.
    pub fn from(ready_fd: Option<i32>) -> Notify {
        if let Some(fd) = ready_fd {
            // SAFETY: the fd was set up for us by the parent (see `spawn`), and nothing else
            // in this process owns it.
            return Notify::Pipe(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            return Notify::Systemd;
        }
        Notify::Nobody
    }

    /// Says the mount is ready, serving version `label`; `status` is for systemd.
    pub fn ready(&mut self, label: &str, status: &str) {
        match self {
            Notify::Pipe(f) => {
                let _ = writeln!(f, "{READY}{label}");
            }
            Notify::Systemd => {
                let _ = sd_notify::notify(&[
                    sd_notify::NotifyState::Ready,
                    sd_notify::NotifyState::Status(status),
                ]);
            }
            Notify::Nobody => {}
        }
        // Said once: the pipe is closed so the parent stops waiting.
        *self = Notify::Nobody;
    }

    pub fn failed(&mut self, error: &str) {
        if let Notify::Pipe(f) = self {
            let _ = writeln!(f, "{}", error.replace('\n', " "));
        }
        *self = Notify::Nobody;
    }

    pub fn stopping() {
        if std::env::var_os("NOTIFY_SOCKET").is_some() {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        }
    }
}

/// Starts `args` (a full command line for this program) as a daemon in its own session and
/// waits until it reports. Returns `Err(reason)` if it failed or died before the mount was live.
pub fn spawn(args: Vec<OsString>) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: pipe2 just returned these two descriptors, owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let write_raw = fds[1];
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::dup2(write_raw, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the mount daemon: {e}"))?;
    drop(write_end);
    let mut said = String::new();
    let _ = File::from(read_end).read_to_string(&mut said);
    let said = said.trim();
    if let Some(label) = said.strip_prefix(READY) {
        return Ok(label.to_string());
    }
    if !said.is_empty() {
        let _ = child.wait();
        return Err(said.to_string());
    }
    match child.wait() {
        Ok(status) => Err(format!(
            "the mount daemon exited ({status}) before the mount was ready; run with --foreground to see why"
        )),
        Err(e) => Err(format!("lost the mount daemon: {e}")),
    }
}

/// Where a background daemon logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogPlace {
    Syslog,
    File(PathBuf),
}

impl LogPlace {
    /// Where a background mount at `mountpoint` logs when not told (`-o log=FILE`): syslog
    /// when something listens on /dev/log (journald or a syslog daemon), else a file named
    /// after the mount point, so that a machine with neither keeps its logs.
    pub fn default_for(mountpoint: &Path) -> LogPlace {
        let listening = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect("/dev/log"))
            .is_ok();
        if listening {
            return LogPlace::Syslog;
        }
        // SAFETY: geteuid has no preconditions.
        let dir = if unsafe { libc::geteuid() } == 0 {
            PathBuf::from("/var/log/datastore")
        } else {
            dirs::state_dir()
                .unwrap_or_else(std::env::temp_dir)
                .join("datastore")
        };
        let name: String = mountpoint
            .to_string_lossy()
            .trim_matches('/')
            .replace('/', "-");
        LogPlace::File(dir.join(format!("{name}.log")))
    }

    /// For the message that says where the log is.
    pub fn describe(&self) -> String {
        match self {
            LogPlace::Syslog => "syslog (journalctl -t datastore, or /var/log/syslog)".into(),
            LogPlace::File(p) => p.display().to_string(),
        }
    }
}

/// A tracing writer to syslog, for a background daemon that has no terminal.
#[derive(Clone, Copy)]
pub struct Syslog;

impl Syslog {
    pub fn open() -> Syslog {
        static IDENT: &[u8] = b"datastore\0";
        // SAFETY: IDENT is a static NUL-terminated string, as openlog requires.
        unsafe { libc::openlog(IDENT.as_ptr().cast(), libc::LOG_PID, libc::LOG_DAEMON) };
        Syslog
    }
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        for l in line.lines().filter(|l| !l.trim().is_empty()) {
            let level = if l.contains("ERROR") {
                libc::LOG_ERR
            } else if l.contains("WARN") {
                libc::LOG_WARNING
            } else {
                libc::LOG_INFO
            };
            let c = std::ffi::CString::new(l.replace('\0', " ")).unwrap_or_default();
            // SAFETY: both strings are NUL-terminated; "%s" consumes exactly one argument.
            unsafe { libc::syslog(level, c"%s".as_ptr(), c.as_ptr()) };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
