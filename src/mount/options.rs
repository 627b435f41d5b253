//! Mount options, as given after `-o` on the command line, by mount(8) from an fstab line,
//! or by a systemd unit.
//!
//! Ours are parsed and checked; the generic options of mount(8) (`ro`, `dev`, `suid`,
//! `_netdev`, `nofail`, `x-systemd.*`…) are accepted and ignored, because the mount is always
//! read-only (even when `rw` is given), nosuid and nodev; anything else is an error naming the option.

use crate::cache::CacheSize;
use crate::size::parse_size;
use std::path::PathBuf;

/// What `-o` options ask of a mount.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// `store=URL`: the store, overriding `--store`, the environment and config files.
    pub store: Option<String>,
    /// `timeout=SECS`: the longest one store operation may take, retries included.
    pub timeout_secs: Option<u64>,
    /// `allow_other`: let every user, not only the one who mounted, read the mount.
    pub allow_other: bool,
    /// `allow_root`: let root read a mount made by another user.
    pub allow_root: bool,
    /// `threads=N`: FUSE request threads.
    pub threads: Option<usize>,
    /// `memory=SIZE`: bytes of verified chunks kept in memory.
    pub memory: Option<u64>,
    /// `cache_dir=DIR`, `cache_size=SIZE|N%`: the disk cache.
    pub cache_dir: Option<PathBuf>,
    pub cache_size: Option<CacheSize>,
    /// `fetch_budget=SIZE`: bytes all fetches together may hold in flight (`prefetch=SIZE`,
    /// its first name, is still accepted so that fstab lines written with it keep working).
    pub fetch_budget: Option<u64>,
    /// `passthrough=off`: never let the kernel serve cached files itself (default: on, where
    /// the kernel and the daemon's privileges allow it).
    pub passthrough: Option<bool>,
    /// `log=FILE`: where a background mount logs (default: syslog).
    pub log: Option<PathBuf>,
    /// `nonempty`: mount over a directory that holds files, hiding them while mounted.
    pub non_empty: bool,
    /// `follow=DURATION`: an `@latest` mount looks for a newer version this often and
    /// switches to it.
    pub follow: Option<std::time::Duration>,
    /// `cache_url=URL`: a shared HTTP cache tier that content is read through.
    pub cache_url: Option<String>,
}

/// A bad `-o` option.
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    #[error("unknown mount option '{0}'; datastore takes store=URL, timeout=SECS, allow_other, allow_root, nonempty, threads=N, memory=SIZE, cache_dir=DIR, cache_size=SIZE, fetch_budget=SIZE, passthrough=on|off, follow=DURATION, cache_url=URL, log=FILE")]
    Unknown(String),
    #[error("mount option '{0}' needs a value ({1})")]
    Missing(String, &'static str),
    #[error("mount option '{0}' is not valid: give {1}")]
    Invalid(String, &'static str),
}

/// Options of mount(8) and of the kernel that say nothing to us.
/// `rw` is among them: mount(8) adds it when no `ro` is given, and the mount is read-only
/// whatever it is asked.
const IGNORED: &[&str] = &[
    "ro",
    "rw",
    "defaults",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "_netdev",
    "nofail",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "lazytime",
    "diratime",
    "nodiratime",
    "async",
    "silent",
    "loud",
    "default_permissions",
];

impl MountOptions {
    /// Parses `-o` values, each a comma-separated list; later values win.
    pub fn parse<S: AsRef<str>>(lists: &[S]) -> Result<MountOptions, OptionError> {
        let mut o = MountOptions::default();
        for list in lists {
            for opt in list.as_ref().split(',').filter(|s| !s.is_empty()) {
                o.apply(opt)?;
            }
        }
        Ok(o)
    }

    fn apply(&mut self, opt: &str) -> Result<(), OptionError> {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        let need = |what: &'static str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| OptionError::Missing(opt.to_string(), what))
        };
        let size = |what: &'static str| {
            need(what).and_then(|v| {
                parse_size(v).ok_or_else(|| OptionError::Invalid(opt.to_string(), what))
            })
        };
        match key {
            "store" => self.store = Some(need("a store URL")?.to_string()),
            "timeout" => {
                let secs = need("seconds")?
                    .parse::<u64>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| OptionError::Invalid(opt.into(), "seconds, at least 1"))?;
                self.timeout_secs = Some(secs);
            }
            "allow_other" => self.allow_other = true,
            "allow_root" => self.allow_root = true,
            "nonempty" => self.non_empty = true,
            "threads" => {
                let n = need("a thread count")?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| OptionError::Invalid(opt.into(), "a count from 1 to 256"))?;
                self.threads = Some(n);
            }
            "memory" => self.memory = Some(size("a size such as 512M")?),
            "cache_dir" => self.cache_dir = Some(PathBuf::from(need("a directory")?)),
            "cache_size" => {
                let v = need("a size such as 100G or 80%")?;
                self.cache_size = Some(CacheSize::parse(v).ok_or_else(|| {
                    OptionError::Invalid(opt.into(), "a size such as 100G or 80%")
                })?);
            }
            "fetch_budget" | "prefetch" => self.fetch_budget = Some(size("a size such as 1G")?),
            "passthrough" => {
                self.passthrough = Some(match need("on or off")? {
                    "on" => true,
                    "off" => false,
                    _ => return Err(OptionError::Invalid(opt.into(), "on or off")),
                })
            }
            "log" => self.log = Some(PathBuf::from(need("a file path")?)),
            "cache_url" => self.cache_url = Some(need("an http:// URL")?.to_string()),
            "follow" => {
                let every = humantime::parse_duration(need("a duration such as 30s")?)
                    .ok()
                    .filter(|d| *d >= std::time::Duration::from_secs(1))
                    .ok_or_else(|| {
                        OptionError::Invalid(
                            opt.into(),
                            "a duration of 1s or more, such as 30s or 5m",
                        )
                    })?;
                self.follow = Some(every);
            }
            k if IGNORED.contains(&k) || k.starts_with("x-") || k == "comment" => {}
            // Set by mount helpers, or meaningful only to them.
            "fsname" | "subtype" | "setuid" | "drop_privileges" | "context" | "fscontext"
            | "defcontext" | "rootcontext" | "uid" | "gid" | "umask" | "helper" => {}
            _ => return Err(OptionError::Unknown(opt.into())),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_are_parsed_and_mount8_options_ignored() {
        let o = MountOptions::parse(&[
            "ro,_netdev,nofail,allow_other,dev,suid",
            "store=s3://b/p,timeout=5,cache_size=10G,fetch_budget=512M,x-systemd.automount",
        ])
        .unwrap();
        assert_eq!(o.store.as_deref(), Some("s3://b/p"));
        assert_eq!(o.timeout_secs, Some(5));
        assert!(o.allow_other && !o.allow_root && !o.non_empty);
        assert!(MountOptions::parse(&["nonempty"]).unwrap().non_empty);
        assert_eq!(o.cache_size, Some(CacheSize::Bytes(10 << 30)));
        assert_eq!(o.fetch_budget, Some(512 << 20));
        assert_eq!(o.passthrough, None);
        let off = MountOptions::parse(&["passthrough=off"]).unwrap();
        assert_eq!(off.passthrough, Some(false));
        let follow = MountOptions::parse(&["ro,follow=2m"]).unwrap();
        assert_eq!(follow.follow, Some(std::time::Duration::from_secs(120)));
        let old = MountOptions::parse(&["prefetch=1G"]).unwrap();
        assert_eq!(old.fetch_budget, Some(1 << 30), "the option's first name");
    }

    #[test]
    fn bad_options_are_named() {
        for (bad, want) in [
            ("colour=red", "unknown mount option 'colour=red'"),
            ("timeout=0", "timeout=0"),
            ("timeout=soon", "timeout=soon"),
            (
                "cache_size=lots",
                "'cache_size=lots' is not valid: give a size such as 100G",
            ),
            ("cache_size=200%", "'cache_size=200%' is not valid"),
            ("memory=", "'memory=' needs a value (a size such as 512M)"),
            ("store=", "store="),
            ("passthrough=maybe", "passthrough=maybe"),
            ("follow=soon", "follow=soon"),
            ("follow=10ms", "follow=10ms"),
        ] {
            let e = MountOptions::parse(&[bad]).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
