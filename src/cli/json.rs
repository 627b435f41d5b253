//! The `--json` form of the commands' output, for scripts and the Python package: one JSON
//! document on stdout, with the fields doc/JSON.md names. Fields may be added; none is renamed
//! or removed. Under `--json` an error is one JSON line on stderr, with a `kind` a program can
//! branch on and the message people would read.
//!
//! Paths are strings: UTF-8 names as they are, other bytes (and control characters) escaped
//! as `\xNN` and a backslash doubled, as the text output shows them.

use super::output::path;
use crate::catalog::CatalogError;
use crate::format::{EntryKind, Manifest, VersionRef};
use crate::mount::MountError;
use crate::ops::get::GetError;
use crate::ops::OpenError;
use crate::push::PushError;
use crate::store::StoreError;
use serde_json::{json, Value};
use std::io::Write;

/// A committed version.
pub fn version(v: &VersionRef) -> Value {
    json!({
        "dataset": v.dataset,
        "version": v.version,
        "label": v.label(),
        "created_unix": v.created_unix,
        "files": v.files,
        "bytes": v.bytes,
        "parent": v.parent,
        "message": v.message,
        "manifest": v.manifest.to_hex(),
    })
}

/// Entry `i` of `m`, shown as `shown` (its name, or its path below a listed directory).
pub fn entry(m: &Manifest, i: usize, shown: &[u8]) -> Value {
    let e = &m.entries[i];
    let mut v = json!({
        "path": path(shown),
        "mode": e.mode,
        "mtime_unix": e.mtime.secs,
    });
    match &e.kind {
        EntryKind::Dir { .. } => v["type"] = "dir".into(),
        EntryKind::File { size, sha256, .. } => {
            v["type"] = "file".into();
            v["size"] = (*size).into();
            v["sha256"] = sha256.to_hex().into();
        }
        EntryKind::Symlink { target } => {
            v["type"] = "symlink".into();
            v["target"] = path(m.string(*target)).into();
        }
    }
    v
}

/// A JSON array written to stdout an element at a time, so that a listing of millions of
/// entries is never held whole.
pub struct Array {
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    first: bool,
}

impl Array {
    /// Starts the array, after `prefix` (the fields of an object the array is the last of,
    /// ending in `"name":`), if any.
    pub fn start(prefix: &str) -> Array {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let _ = write!(out, "{prefix}[");
        Array { out, first: true }
    }

    pub fn push(&mut self, v: &Value) {
        let sep = if self.first { "" } else { "," };
        self.first = false;
        let _ = write!(self.out, "{sep}{v}");
    }

    /// Ends the array, then writes `suffix` (the end of the object around it), and a newline.
    pub fn end(mut self, suffix: &str) {
        let _ = writeln!(self.out, "]{suffix}");
        let _ = self.out.flush();
    }
}

/// Prints one JSON document on stdout.
pub fn print(v: &Value) {
    println!("{v}");
}

/// An error as the one line `--json` puts on stderr.
pub fn error(e: &anyhow::Error) -> String {
    json!({ "error": { "kind": kind(e), "message": super::error_line(e) } }).to_string()
}

/// What kind of failure `e` is, for a program to branch on (the Python package raises a
/// class of exception for each). doc/JSON.md lists them.
pub fn kind(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if let Some(c) = cause.downcast_ref::<CatalogError>() {
            return catalog(c);
        }
        if let Some(o) = cause.downcast_ref::<OpenError>() {
            return open(o);
        }
        // Transparent wrappers leave what they wrap out of the chain: it is looked at here.
        if let Some(GetError::Open(o)) = cause.downcast_ref::<GetError>() {
            return open(o);
        }
        if let Some(MountError::Catalog(c)) = cause.downcast_ref::<MountError>() {
            return catalog(c);
        }
        if cause.is::<super::Interrupted>() {
            return "interrupted";
        }
        if let Some(p) = cause.downcast_ref::<PushError>() {
            return push(p);
        }
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return store(s);
        }
        if cause.is::<crate::format::name::NameError>() {
            return "bad_name";
        }
    }
    "error"
}

fn open(e: &OpenError) -> &'static str {
    match e {
        OpenError::Catalog(c) => catalog(c),
        OpenError::NoSuchPath(..) => "path_not_found",
    }
}

fn catalog(e: &CatalogError) -> &'static str {
    match e {
        CatalogError::Store(s) => store(s),
        CatalogError::Name(_) => "bad_name",
        CatalogError::UnknownDataset(_) => "dataset_not_found",
        CatalogError::UnknownVersion(..) | CatalogError::DeletedVersion(..) => "version_not_found",
        CatalogError::CommitContention(..) => "busy",
        CatalogError::NewerRef { .. } => "newer_format",
        _ => "damaged_store",
    }
}

fn store(e: &StoreError) -> &'static str {
    match e {
        StoreError::Absent(_) => "no_store",
        StoreError::BadUrl(..) | StoreError::Setting(_) => "bad_store_url",
        _ => "store",
    }
}

fn push(e: &PushError) -> &'static str {
    match e {
        PushError::Catalog(c) => catalog(c),
        PushError::Store(s) => store(s),
        PushError::Name(_) => "bad_name",
        PushError::AlreadyPushing { .. } | PushError::GcRunning(_) => "busy",
        _ => "bad_source",
    }
}
