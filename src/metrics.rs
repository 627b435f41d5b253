//! Prometheus metrics of the mount daemon, served on `--metrics-addr` when asked for.
//!
//! Every metric is named here. Recording costs nothing when no exporter is installed (every
//! command but a mount with `--metrics-addr`).

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;
use std::time::Duration;

/// Bytes returned to readers of the mount.
pub const READ_BYTES: &str = "datastore_read_bytes_total";
/// Reads answered, and reads that failed (EIO).
pub const READS: &str = "datastore_reads_total";
pub const READ_ERRORS: &str = "datastore_read_errors_total";
/// Disk cache lookups that found a valid entry, that did not, entries evicted, entries found
/// damaged, and the bytes the cache holds.
pub const CACHE_HITS: &str = "datastore_cache_hits_total";
pub const CACHE_MISSES: &str = "datastore_cache_misses_total";
pub const CACHE_EVICTIONS: &str = "datastore_cache_evictions_total";
pub const CACHE_DAMAGED: &str = "datastore_cache_damaged_total";
pub const CACHE_BYTES: &str = "datastore_cache_bytes";
/// Opens of files served by the kernel from a file entry of the disk cache (FUSE
/// passthrough), and opens read through the daemon while passthrough is on.
pub const PASSTHROUGH_OPENS: &str = "datastore_passthrough_opens_total";
pub const FALLBACK_OPENS: &str = "datastore_passthrough_fallbacks_total";
/// Files of a read order handed to the mount fetched ahead of its readers, and their bytes.
pub const ORDER_FILES: &str = "datastore_order_files_total";
pub const ORDER_BYTES: &str = "datastore_order_bytes_total";
/// Store requests by operation: latency, bytes received, failures.
pub const STORE_SECONDS: &str = "datastore_store_request_seconds";
pub const STORE_BYTES: &str = "datastore_store_bytes_total";
pub const STORE_ERRORS: &str = "datastore_store_errors_total";
/// Bytes of the fetch budget (reads and read-ahead in flight) in use.
pub const FETCH_IN_USE: &str = "datastore_fetch_bytes_in_use";
/// The version number the mount serves now, labelled with its dataset; switches done.
pub const LIVE_VERSION: &str = "datastore_live_version";
pub const SWITCHES: &str = "datastore_switches_total";
/// Bytes from the shared cache tier, its failures (each leaves it alone for a while), and
/// objects it answered with other bytes than their SHA-256 (fetched from the store instead).
pub const TIER_BYTES: &str = "datastore_tier_bytes_total";
pub const TIER_FAILURES: &str = "datastore_tier_failures_total";
pub const TIER_MISMATCHES: &str = "datastore_tier_mismatches_total";

/// Starts serving `/metrics` on `addr`. Must run inside the tokio runtime.
pub fn serve(addr: SocketAddr) -> Result<(), String> {
    let buckets = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(STORE_SECONDS.into()), &buckets)
        .and_then(|b| b.install())
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}

/// Records one store request.
pub fn store_request(op: &'static str, took: Duration, ok: bool) {
    metrics::histogram!(STORE_SECONDS, "op" => op).record(took.as_secs_f64());
    if !ok {
        metrics::counter!(STORE_ERRORS, "op" => op).increment(1);
    }
}

pub fn store_bytes(op: &'static str, n: u64) {
    metrics::counter!(STORE_BYTES, "op" => op).increment(n);
}
