//! datastore: immutable, content-addressed dataset versions in object storage.
//!
//! Dependencies point one way: `cli → ops/push → catalog → format → store`.

pub mod cache;
pub mod catalog;
pub mod cli;
pub mod content;
pub mod format;
pub mod manifest;
pub mod metrics;
pub mod mount;
pub mod ops;
pub mod push;
pub mod store;
