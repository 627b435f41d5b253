//! datastore: immutable, content-addressed dataset versions in object storage.
//!
//! Dependencies point one way: `cli → ops/push → catalog → format → store`.

pub mod format;
pub mod store;
pub mod catalog;
pub mod push;
