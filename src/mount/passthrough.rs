//! FUSE passthrough: the kernel reads a file straight from its file entry in the disk cache,
//! so reads, `mmap` and the page cache are those of a local file, with no request reaching us.
//!
//! The read engine says whether a file has a local copy ([`Reader::local_file`]); this module
//! applies the kernel's rules for using it (Documentation/filesystems/fuse-passthrough.rst):
//! - it needs Linux 6.9 or later, `FUSE_PASSTHROUGH` accepted at init, and CAP_SYS_ADMIN in the
//!   daemon (registering a backing file is a privileged ioctl);
//! - an inode has one backing file at a time: every passthrough open of it shares one
//!   [`BackingId`], released with the last of them;
//! - an inode cannot be open through the page cache and by passthrough at once (the kernel
//!   answers ETXTBSY, which a reader would see as EIO), nor with direct I/O beside
//!   passthrough. So while an inode is open the cached way, later opens stay cached; while
//!   it is open by passthrough, later opens share its backing file. An entry evicted
//!   meanwhile is still whole behind that open file. One found changed on disk (its size or
//!   mtime seal broken, see `cache::seal`) fails new opens with EIO, never serving its bytes
//!   to them; the handles already open read on (the kernel offers no way to revoke a
//!   backing file), and once they close the next open reads through the daemon.

use crate::read::Reader;
use fuser::{BackingId, InitFlags, KernelConfig, ReplyOpen};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How the kernel reads one open file handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandleMode {
    /// Through the daemon and the page cache (`keep_cache`).
    Cached,
    /// From the backing file, by the kernel.
    Passthrough,
}

/// How an inode is open now.
enum InodeMode {
    Cached {
        opens: u32,
    },
    Passthrough {
        backing: Arc<BackingId>,
        /// The file entry the kernel reads, checked again at each open that shares it.
        file: std::fs::File,
        opens: u32,
    },
}

/// What [`Passthrough::open`] decided.
pub enum Opened {
    Cached,
    Passthrough(Arc<BackingId>),
    /// The inode's backing file was found changed: no new open may read it.
    Refused,
}

pub struct Passthrough {
    /// `Ok(stack depth)` if asked for, else why not.
    wanted: Result<u32, &'static str>,
    on: AtomicBool,
    /// By inode number: an inode number means one content in every version (see
    /// `renumber`), so the backing file of an inode kept across a switch stays right.
    inodes: Mutex<HashMap<u64, InodeMode>>,
}

/// CAP_SYS_ADMIN's bit in the capability sets of /proc/self/status.
const CAP_SYS_ADMIN: u32 = 21;
/// statfs's f_type of overlayfs.
const OVERLAYFS_MAGIC: i64 = 0x794c_7630;

/// The stack depth backing files in `dir` need: 1 on a plain filesystem, 2 when `dir` is
/// itself on overlayfs (a container's root), the most the kernel allows.
pub fn stack_depth(dir: &Path) -> u32 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return 1;
    };
    // SAFETY: c is a valid path; st is a plain struct the call fills in.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0 && st.f_type as i64 == OVERLAYFS_MAGIC {
        2
    } else {
        1
    }
}

/// Whether this process holds CAP_SYS_ADMIN in its effective set.
fn privileged() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

impl Passthrough {
    pub fn new(wanted: Result<u32, &'static str>) -> Passthrough {
        Passthrough {
            wanted,
            on: AtomicBool::new(false),
            inodes: Mutex::new(HashMap::new()),
        }
    }

    /// At FUSE init: asks the kernel for passthrough if it is wanted, offered and allowed,
    /// and logs the one line that says which.
    pub fn init(&self, config: &mut KernelConfig) {
        let why_not = match self.wanted {
            Err(why) => why,
            Ok(_) if !config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH) => {
                "the kernel does not offer it (Linux 6.9 or later has it)"
            }
            Ok(_) if !privileged() => "it needs CAP_SYS_ADMIN (mount as root)",
            Ok(depth) => {
                let asked = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
                    && config.set_max_stack_depth(depth).is_ok();
                if asked {
                    self.on.store(true, Ordering::Release);
                    tracing::info!(
                        "passthrough on: files whole in the disk cache are read by the kernel"
                    );
                    return;
                }
                "the kernel refused it"
            }
        };
        tracing::info!("passthrough off: {why_not}; every read goes through the daemon");
    }

    /// Decides how inode `ino`, entry `file` of `reader`'s version, is opened, registering
    /// its backing file with the kernel on its first passthrough open.
    pub fn open(&self, reader: &Reader, ino: u64, file: usize, reply: &ReplyOpen) -> Opened {
        // The first open of an inode finds its local file and registers it with the kernel
        // (an open, an fstat, an ioctl) without the lock: other inodes' opens and releases go
        // on meanwhile, where holding it made every request thread queue behind one that the
        // scheduler had preempted. If another open of this inode decided first, its decision
        // stands and this registration is dropped, after the lock is let go.
        let mut fresh = None;
        if self.on.load(Ordering::Acquire) && !self.lock().contains_key(&ino) {
            fresh = reader.local_file(file).map(|f| (reply.open_backing(&f), f));
        }
        let mut inodes = self.lock();
        // Off (or turned off after a refusal): inodes still open in some mode keep it.
        if !self.on.load(Ordering::Acquire) && !inodes.contains_key(&ino) {
            return Opened::Cached;
        }
        let opened = match inodes.get_mut(&ino) {
            Some(InodeMode::Cached { opens }) => {
                *opens += 1;
                Opened::Cached
            }
            Some(InodeMode::Passthrough {
                backing,
                file: local,
                opens,
            }) => {
                if reader.local_file_intact(file, local) {
                    *opens += 1;
                    Opened::Passthrough(backing.clone())
                } else {
                    Opened::Refused
                }
            }
            None => match fresh.take() {
                Some((Ok(id), local)) => {
                    let backing = Arc::new(id);
                    inodes.insert(
                        ino,
                        InodeMode::Passthrough {
                            backing: backing.clone(),
                            file: local,
                            opens: 1,
                        },
                    );
                    Opened::Passthrough(backing)
                }
                failed => {
                    if let Some((Err(e), _)) = failed {
                        // Nothing will make the next registration succeed: stop trying.
                        self.on.store(false, Ordering::Release);
                        tracing::warn!(
                            "passthrough off: the kernel refused a backing file ({e}); every \
                             read goes through the daemon"
                        );
                    }
                    inodes.insert(ino, InodeMode::Cached { opens: 1 });
                    Opened::Cached
                }
            },
        };
        drop(inodes);
        drop(fresh);
        if !matches!(opened, Opened::Refused) {
            reader.count_open(matches!(opened, Opened::Passthrough(_)));
        }
        opened
    }

    /// A handle of inode `ino` (entry `file`) opened in `mode` was released. A file read through the daemon may
    /// be whole in the cache now: it is offered for a file entry (only now, not at open, so
    /// that assembling it never competes with the reads of the open that fetches it).
    pub fn release(&self, reader: &Reader, ino: u64, file: usize, mode: HandleMode) {
        let mut inodes = self.lock();
        let last = match (inodes.get_mut(&ino), mode) {
            (Some(InodeMode::Cached { opens }), HandleMode::Cached)
            | (Some(InodeMode::Passthrough { opens, .. }), HandleMode::Passthrough) => {
                *opens -= 1;
                *opens == 0
            }
            _ => false,
        };
        // The last passthrough handle drops the backing file's registration (an ioctl and a
        // close), after the lock is let go.
        let gone = if last { inodes.remove(&ino) } else { None };
        drop(inodes);
        drop(gone);
        if mode != HandleMode::Passthrough && self.on.load(Ordering::Acquire) {
            reader.offer_local_file(file);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, InodeMode>> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Opened {
    pub fn mode(&self) -> HandleMode {
        match self {
            Opened::Passthrough(_) => HandleMode::Passthrough,
            Opened::Cached | Opened::Refused => HandleMode::Cached,
        }
    }
}
