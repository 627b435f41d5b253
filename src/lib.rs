//! datastore: immutable, content-addressed dataset versions in object storage.
//!
//! Dependencies point one way: `cli → {mount, ops, push} → read → {cache, catalog} →
//! {manifest, format, store} → buffers`.

pub mod buffers;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod count;
pub mod format;
pub mod host;
pub mod io_cause;
pub mod manifest;
pub mod metrics;
pub mod mount;
pub mod ops;
pub mod push;
pub mod read;
pub mod size;
pub mod store;
