//! The reliability suite: faults injected between the daemon and a real S3 server, crashes at
//! random points, hostile input, and load. It runs short in CI; `reliability/run --long` runs
//! it with more iterations and time and writes the table in doc/RELIABILITY.md.

#[path = "common/mod.rs"]
mod common;

#[path = "reliability/crashes.rs"]
mod crashes;
#[path = "reliability/faults.rs"]
mod faults;
#[path = "reliability/hostile.rs"]
mod hostile;
#[path = "reliability/load.rs"]
mod load;
