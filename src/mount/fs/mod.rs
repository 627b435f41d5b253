//! The FUSE filesystem: a read-only view of the version a mount serves.
//!
//! Every metadata operation is answered from the manifest in memory (an array access or a
//! binary search); nothing but `read` touches the store. Versions are immutable, so every
//! reply from the live version carries a TTL of a year (names, attributes and negative
//! lookups alike) and files open with `keep_cache`: the kernel caches what it has seen until a
//! switch to another version tells it what to forget ([`super::versions`]). Open files and
//! directory listings hold the version they were opened in.
//!
//! Reads are dispatched to the async runtime and answered from there, so the FUSE threads are
//! never blocked on the network and many readers progress at once.

mod ioctl;

use super::control;
use super::entries::{self, kind, listing, reply_xattr, xattr, xattr_names};
use super::errno;
use super::passthrough::{HandleMode, Opened, Passthrough};
use super::trace::Trace;
use super::versions::{Mounted, Serving, Versions};
use crate::format::EntryKind;
use crate::read::OpenFile;
use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Background requests (read-ahead, async reads) the kernel keeps in flight. Each is up to
/// 1 MiB once the mount's read-ahead is raised (`kernel::READ_AHEAD`), and each may hold a
/// reply of its own (read from a cache entry, or put together across chunks) outside the
/// budgets: 32 bound those to 32 MiB. 64 of them (the value for 128 KiB requests) took 64
/// readers' peak RSS from 102-113 MiB to 159-207; a cold 1 GiB read ran as fast with 32
/// (321-332 MB/s against 302-322, three reads each).
const MAX_BACKGROUND: u16 = 32;

/// What the filesystem serves.
pub struct DatastoreFs {
    versions: Arc<Versions>,
    /// Each open file and directory, by handle, with the version it was opened in.
    handles: Mutex<HashMap<u64, Handle>>,
    passthrough: Passthrough,
    next_handle: AtomicU64,
    trace: Option<Trace>,
    /// Read orders being received (see [`control`]).
    orders: control::Orders,
    rt: tokio::runtime::Handle,
    uid: u32,
    gid: u32,
}

/// An open file or directory. It holds its version: a file reads, and a directory lists,
/// the version it was opened in until it is closed, whatever switches happen meanwhile.
enum Handle {
    File {
        version: Arc<Mounted>,
        open: Arc<OpenFile>,
        mode: HandleMode,
    },
    Dir(Arc<Mounted>),
}

impl DatastoreFs {
    /// `passthrough` is the backing files' stack depth if passthrough is wanted, else why not.
    pub fn new(
        versions: Arc<Versions>,
        passthrough: Result<u32, &'static str>,
        rt: tokio::runtime::Handle,
    ) -> DatastoreFs {
        DatastoreFs {
            versions,
            handles: Mutex::new(HashMap::new()),
            passthrough: Passthrough::new(passthrough),
            next_handle: AtomicU64::new(1),
            trace: None,
            orders: control::Orders::default(),
            rt,
            // SAFETY: these calls cannot fail.
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
        }
    }

    /// Records the path of every file opened, once, in the order of first opening.
    pub fn record_trace(&mut self, file: std::fs::File) -> std::io::Result<()> {
        self.trace = Some(Trace::new(file, &self.versions.live().label)?);
        Ok(())
    }

    /// The version that answers for `ino`, and its entry there.
    fn entry(&self, ino: INodeNo) -> Result<(Serving<'_>, usize), Errno> {
        self.versions.of(ino.0).ok_or(errno::STALE)
    }

    fn lock_handles(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Handle>> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.lock_handles().insert(fh, h);
        fh
    }

    /// The version a listing of directory `ino` comes from at `offset`: a listing begun
    /// before a switch ends in the version it began in, so that it never mixes two; one
    /// begun (or rewound) after lists the live version.
    fn listing_version(
        &self,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
    ) -> Result<(Serving<'_>, usize), Errno> {
        let began = match self.lock_handles().get(&fh.0) {
            Some(Handle::Dir(v)) if offset > 0 => Some(v.clone()),
            _ => None,
        };
        if let Some(v) = began.filter(|v| !self.versions.is_live(v)) {
            let i = v.entry(ino.0).ok_or(errno::STALE)?;
            return Ok((Serving::Old(v), i));
        }
        self.entry(ino)
    }

    fn attr(&self, v: &Mounted, i: usize) -> FileAttr {
        entries::attr(v, i, self.uid, self.gid)
    }
}

impl Filesystem for DatastoreFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_PARALLEL_DIROPS;
        // Capabilities the kernel lacks are simply not used.
        let _ = config.add_capabilities(wanted & config.capabilities());
        // Read-ahead is not asked for here: the kernel offers its default and takes no more
        // (see `kernel::widen_read_ahead`, which raises it once the mount is up).
        // Read-ahead and async reads of many readers queue in the kernel as background
        // requests; fuser's default of 16 in flight starved a daemon that answers them from the
        // network in parallel when they came in 128 KiB (Mountpoint-S3 raises it the same way).
        let _ = config.set_max_background(MAX_BACKGROUND);
        let _ = config.set_congestion_threshold(MAX_BACKGROUND * 3 / 4);
        self.passthrough.init(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (v, p) = match self.entry(parent) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        if !matches!(v.manifest.entries[p].kind, EntryKind::Dir { .. }) {
            return reply.error(errno::NOT_A_DIRECTORY);
        }
        match v.manifest.child(p, name.as_bytes()) {
            Some(c) => reply.entry(&v.ttl(), &self.attr(&v, c), Generation(0)),
            // Inode 0 with a TTL is a negative entry: the kernel remembers the name is absent
            // (until a switch brings it).
            None => {
                let mut none = self.attr(&v, 0);
                none.ino = INodeNo(0);
                reply.entry(&v.ttl(), &none, Generation(0));
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.entry(ino) {
            Ok((v, i)) => reply.attr(&v.ttl(), &self.attr(&v, i)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.entry(ino) {
            Ok((v, i)) => match v.manifest.entries[i].kind {
                EntryKind::Symlink { target } => reply.data(v.manifest.string(target)),
                _ => reply.error(errno::INVALID),
            },
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(errno::READ_ONLY);
        }
        let (v, i) = match self.entry(ino) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        if matches!(v.manifest.entries[i].kind, EntryKind::Dir { .. }) {
            return reply.error(errno::IS_A_DIRECTORY);
        }
        if let Some(t) = &self.trace {
            t.record(&v, i);
        }
        let opened = self.passthrough.open(&v.reader, ino.0, i, &reply);
        if let Opened::Refused = opened {
            let path = String::from_utf8_lossy(&v.manifest.path_of(i)).into_owned();
            tracing::error!(
                "open {}/{path}: its cache file changed on disk while open; refused \
                 until every open handle of it is closed",
                v.label
            );
            return reply.error(errno::of_content_damaged());
        }
        let fh = self.new_handle(Handle::File {
            version: v.arc(),
            open: Arc::new(v.reader.open(i)),
            mode: opened.mode(),
        });
        match opened {
            Opened::Passthrough(backing) => {
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &backing)
            }
            _ => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
        }
    }

    /// Nothing is buffered, so a close(2) has nothing to flush. ENOSYS makes the kernel stop
    /// sending FLUSH for the rest of the mount: no round trip per close. (fuser's default
    /// answers the same but logs a warning in every mount's log.)
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(errno::NOT_NEEDED);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let released = self.lock_handles().remove(&fh.0);
        reply.ok();
        if let Some(Handle::File {
            version,
            open,
            mode,
        }) = released
        {
            self.passthrough
                .release(&version.reader, ino.0, open.file(), mode);
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        // The version it listed may be freed now.
        let released = self.lock_handles().remove(&fh.0);
        reply.ok();
        drop(released);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let found = match self.lock_handles().get(&fh.0) {
            Some(Handle::File { version, open, .. }) => Some((version.clone(), open.clone())),
            _ => None,
        };
        let Some((version, open)) = found else {
            return reply.error(errno::BAD_HANDLE);
        };
        let i = open.file();
        if version.entry(ino.0) != Some(i) {
            return reply.error(errno::BAD_HANDLE);
        }
        let read = version.reader.read(&open, offset, size);
        self.rt.spawn(async move {
            match read.await {
                Ok(data) => {
                    metrics::counter!(crate::metrics::READS).increment(1);
                    metrics::counter!(crate::metrics::READ_BYTES).increment(data.len() as u64);
                    reply.data(&data)
                }
                Err(e) => {
                    let path = String::from_utf8_lossy(&version.manifest.path_of(i)).into_owned();
                    tracing::error!("read {}/{path} at {offset}+{size}: {e}", version.label);
                    metrics::counter!(crate::metrics::READ_ERRORS).increment(1);
                    reply.error(errno::of_content(&e));
                }
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let (v, i) = match self.entry(ino) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        if !matches!(v.manifest.entries[i].kind, EntryKind::Dir { .. }) {
            return reply.error(errno::NOT_A_DIRECTORY);
        }
        let fh = self.new_handle(Handle::Dir(v.arc()));
        reply.opened(FileHandle(fh), FopenFlags::FOPEN_CACHE_DIR);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (v, dir) = match self.listing_version(ino, fh, offset) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        let listing = match listing(&v, dir) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        for (n, (i, name)) in listing.into_iter().enumerate().skip(offset as usize) {
            let full = reply.add(
                INodeNo(v.ino(i)),
                n as u64 + 1,
                kind(&v, i),
                OsStr::from_bytes(name),
            );
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (v, dir) = match self.listing_version(ino, fh, offset) {
            Ok(found) => found,
            Err(e) => return reply.error(e),
        };
        let listing = match listing(&v, dir) {
            Ok(l) => l,
            Err(e) => return reply.error(e),
        };
        let ttl = v.ttl();
        for (n, (i, name)) in listing.into_iter().enumerate().skip(offset as usize) {
            let full = reply.add(
                INodeNo(v.ino(i)),
                n as u64 + 1,
                OsStr::from_bytes(name),
                &ttl,
                &self.attr(&v, i),
                Generation(0),
            );
            if full {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bsize = 4096u32;
        let v = self.versions.live();
        reply.statfs(
            v.total_bytes.div_ceil(bsize as u64),
            0,
            0,
            v.manifest.entries.len() as u64,
            0,
            bsize,
            255,
            bsize,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.entry(ino) {
            Ok((v, i)) => match xattr(&v, i, name.as_bytes()) {
                Some(value) => reply_xattr(reply, size, &value),
                None => reply.error(errno::NO_ATTRIBUTE),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.entry(ino) {
            Ok((v, i)) => reply_xattr(reply, size, &xattr_names(&v, i)),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.entry(ino) {
            Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(errno::READ_ONLY),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    /// No ioctl means anything here (programs probe files with TCGETS to see whether they are
    /// terminals): ENOTTY, the answer of a plain file, without fuser's warning in the log.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        if cmd == control::SWITCH && ino == INodeNo::ROOT && out_size as usize >= control::BUFFER {
            return self.switch(req, in_data, reply);
        }
        if cmd == control::ORDER && ino == INodeNo::ROOT && out_size as usize >= control::PIECE {
            return self.order(req, in_data, reply);
        }
        reply.error(errno::NOT_A_TERMINAL);
    }

    // Everything below would change the version: EROFS, always. (The kernel also refuses
    // most of these itself, because the mount is read-only.)

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn mkdir(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno::READ_ONLY);
    }

    fn rmdir(&self, _req: &Request, _parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno::READ_ONLY);
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn rename(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(errno::READ_ONLY);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(errno::READ_ONLY);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(errno::READ_ONLY);
    }
}
