//! Sequential read of a 1 GiB file through the mount, against its limits:
//! - cold (empty disk cache) vs the raw parallel ranged-GET rate of the same S3 server;
//! - warm (from the disk cache, page cache dropped) vs the same file on local disk.
//!
//! Needs root (mounting, dropping the page cache) and s3s-fs, installed by `bench/run`:
//!
//!   cargo bench --bench seq_read
//!
//! Prints a table and the two ratios for bench/RESULTS.md.

mod common;

use datastore::store::{Store, StoreOptions};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const SIZE: usize = 1 << 30;

struct Mounted(PathBuf, PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new(&self.1).arg("umount").arg(&self.0).status();
    }
}

/// MB/s of reading `path` front to back; it must be the whole benchmark file.
fn read_rate(path: &Path) -> f64 {
    let (total, rate) = common::seq_rate(path);
    assert_eq!(total, SIZE as u64);
    rate
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = common::release_binary();
    // On disk, not tmpfs: the local baseline must be a real disk read.
    let work = tempfile::Builder::new()
        .prefix("datastore-bench-")
        .tempdir_in(root.join("target"))
        .unwrap();
    let data_dir = work.path().join("s3");
    std::fs::create_dir_all(data_dir.join("bench")).unwrap();
    let _server = common::start_s3s(&data_dir);
    let url = "s3://bench/ds";
    let src = work.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let file = src.join("big.bin");
    {
        use rand::RngCore;
        let mut data = vec![0u8; SIZE];
        rand::thread_rng().fill_bytes(&mut data);
        std::fs::write(&file, data).unwrap();
    }
    let ds = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.args(["--store", url, "-q"]).args(args);
        c
    };
    let t = Instant::now();
    let out = ds(&["push", src.to_str().unwrap(), "big"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let push_rate = SIZE as f64 / 1e6 / t.elapsed().as_secs_f64();

    // The limit: every chunk object fetched with parallel ranged GETs of 8 MiB.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let raw_rate = rt.block_on(async {
        let store = Store::open(url, &StoreOptions::default()).unwrap();
        let blobs = store.list("blobs/").await.unwrap();
        let mut ranges = vec![];
        for b in &blobs {
            let mut off = 0;
            while off < b.size {
                let end = (off + (8 << 20)).min(b.size);
                ranges.push((b.key.clone(), off..end));
                off = end;
            }
        }
        let start = Instant::now();
        let total: u64 = futures::stream::iter(ranges)
            .map(|(k, r)| {
                let store = store.clone();
                async move { store.get_range(&k, r).await.unwrap().len() as u64 }
            })
            .buffer_unordered(16)
            .fold(0, |a, n| async move { a + n })
            .await;
        total as f64 / 1e6 / start.elapsed().as_secs_f64()
    });

    let cache = work.path().join("cache");
    let mnt = work.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = || {
        let out = ds(&["mount", "big", mnt.to_str().unwrap(), "--cache-dir"])
            .arg(&cache)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mounted(mnt.clone(), bin.clone())
    };
    let cold = {
        let _m = mount();
        read_rate(&mnt.join("big.bin"))
    };
    let warm = {
        let _m = mount();
        common::drop_caches();
        read_rate(&mnt.join("big.bin"))
    };
    common::drop_caches();
    let local = read_rate(&file);

    println!("push of 1 GiB                   {push_rate:>8.0} MB/s");
    println!("raw parallel ranged GET (limit) {raw_rate:>8.0} MB/s");
    println!("datastore cold sequential read  {cold:>8.0} MB/s");
    println!("local disk read (page cache dropped) {local:>8.0} MB/s");
    println!("datastore warm read (page cache dropped) {warm:>8.0} MB/s");
    println!("cold / raw GET   = {:.2}", cold / raw_rate);
    println!("warm / local     = {:.2}", warm / local);
}
