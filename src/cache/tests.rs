use super::put::expected_size;
use super::*;

fn wait_scanned(c: &DiskCache) {
    let start = std::time::Instant::now();
    while !c.scanned() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn chunk(i: u32, len: usize) -> (Sha256, Vec<u8>) {
    let mut data: Vec<u8> = (0..len).map(|j| (j as u32 ^ i) as u8).collect();
    data[..4].copy_from_slice(&i.to_le_bytes());
    (Sha256::of(&data), data)
}

#[test]
fn sizes_parse() {
    assert_eq!(CacheSize::parse("80%"), Some(CacheSize::Percent(80)));
    assert_eq!(CacheSize::parse("200G"), Some(CacheSize::Bytes(200 << 30)));
    assert_eq!(CacheSize::parse("101%"), None);
    assert_eq!(CacheSize::parse("lots"), None);
}

#[test]
fn entries_survive_a_restart_and_damage_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 20)).unwrap();
    wait_scanned(&c);
    let (h, data) = chunk(1, 1000);
    assert!(c.get(&h).is_none());
    c.put(&h, &data);
    assert_eq!(&c.get(&h).unwrap()[..], &data[..]);
    drop(c);

    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 20)).unwrap();
    wait_scanned(&c);
    assert_eq!(c.bytes(), DiskCache::usage(dir.path()).1);
    assert!(
        c.bytes() >= entry::size_on_disk(1000),
        "counted as allocated blocks"
    );
    assert_eq!(&c.get(&h).unwrap()[..], &data[..]);

    // Flip a byte on disk: the entry is dropped, not served.
    let path = c.path((Kind::Chunk, h));
    let mut raw = std::fs::read(&path).unwrap();
    let at = raw.len() - 1000 + 10;
    raw[at] ^= 1;
    std::fs::write(&path, raw).unwrap();
    assert!(c.get(&h).is_none());
    assert!(!path.exists());
    assert_eq!(c.bytes(), 0);
    assert_eq!(c.stats.snapshot().damaged, 1);
}

#[test]
fn quota_evicts_least_recently_used_to_the_low_watermark() {
    let dir = tempfile::tempdir().unwrap();
    // What one entry takes on disk: its blocks, whatever the filesystem's block size.
    let entry_size = entry::size_on_disk(10_000).div_ceil(4096) * 4096;
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(entry_size * 10)).unwrap();
    wait_scanned(&c);
    let chunks: Vec<_> = (0..30).map(|i| chunk(i, 10_000)).collect();
    for (i, (h, d)) in chunks.iter().enumerate() {
        c.put(h, d);
        // Keep the first one hot.
        if i > 0 {
            assert!(c.get(&chunks[0].0).is_some());
        }
        assert!(c.bytes() <= c.quota());
    }
    assert!(c.get(&chunks[0].0).is_some(), "the hot entry was evicted");
    assert!(c.get(&chunks[1].0).is_none(), "a cold entry survived");
    let on_disk: u64 = DiskCache::usage(dir.path()).1;
    assert_eq!(on_disk, c.bytes());
    assert!(c.stats.snapshot().evictions >= 20);
}

/// The bytes of entries of `dir` that were all there at one moment, the end of a listing:
/// those listed that are still there (the same file) once it has ended. (A listing alone is
/// no such moment: it may count an entry, then one written after the first was evicted.)
fn held_at_once(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let listed = entry_files(dir).unwrap_or_default();
    let still = |path: &Path, m: &std::fs::Metadata| {
        std::fs::metadata(path).is_ok_and(|now| now.ino() == m.ino())
    };
    listed
        .iter()
        .filter(|(_, path, m)| still(path, m))
        .map(|(_, _, m)| file_entry::allocated(m))
        .sum()
}

/// Room is made before an entry is written, so a directory listed at any moment, while
/// several threads write chunks and file entries, never holds more than the quota.
#[test]
fn the_directory_never_holds_more_than_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let entry_size = entry::size_on_disk(50_000).div_ceil(4096) * 4096;
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(entry_size * 6)).unwrap();
    wait_scanned(&c);
    let done = AtomicBool::new(false);
    let most = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut most = 0;
            while !done.load(Ordering::Acquire) {
                most = most.max(held_at_once(dir.path()));
            }
            most
        });
        let writers: Vec<_> = (0..4u32)
            .map(|t| {
                let c = &c;
                s.spawn(move || {
                    for i in 0..60 {
                        let (h, d) = chunk(t * 1000 + i, 50_000);
                        if i % 2 == 0 {
                            c.put(&h, &d);
                        } else {
                            c.put_file(&h, &d);
                        }
                    }
                })
            })
            .collect();
        writers.into_iter().for_each(|w| w.join().unwrap());
        done.store(true, Ordering::Release);
        watcher.join().unwrap()
    });
    assert!(
        most <= c.quota(),
        "{most} bytes on disk, quota {}",
        c.quota()
    );
    // (Counted once the writers are done: a watcher under churn may see few whole moments.)
    let (_, held) = DiskCache::usage(dir.path());
    assert!(
        held > c.quota() / 2 && held <= c.quota(),
        "the cache was not used: {held}"
    );
}

#[test]
fn a_restart_over_quota_evicts_and_stale_temporaries_go() {
    let dir = tempfile::tempdir().unwrap();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 20)).unwrap();
    wait_scanned(&c);
    for i in 0..20 {
        let (h, d) = chunk(i, 10_000);
        c.put(&h, &d);
    }
    drop(c);
    // A temporary file of a process that no longer exists.
    std::fs::write(dir.path().join("tmp/999999999-abc"), b"partial").unwrap();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(50_000)).unwrap();
    wait_scanned(&c);
    assert!(c.bytes() <= 50_000);
    assert_eq!(DiskCache::usage(dir.path()).1, c.bytes());
    assert!(!dir.path().join("tmp/999999999-abc").exists());
}

#[test]
fn the_scan_finds_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 40)).unwrap();
    wait_scanned(&c);
    for i in 0..20_000 {
        let (h, d) = chunk(i, 16);
        c.put(&h, &d);
    }
    drop(c);
    let start = std::time::Instant::now();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 40)).unwrap();
    wait_scanned(&c);
    // Figures are for bench/; this only prints the rate it saw.
    let rate = 20_000.0 / start.elapsed().as_secs_f64();
    println!("cache index rebuilt at {rate:.0} entries/s");
    assert_eq!(c.lock().lru.len(), 20_000);
}

#[test]
fn file_entries_are_served_whole_checked_at_open_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 30)).unwrap();
    wait_scanned(&c);
    let (h, data) = chunk(7, 5000);
    c.put_file(&h, &data);
    assert!(c.contains_kind(Kind::File, &h) && !c.contains_kind(Kind::Chunk, &h));
    assert_eq!(
        &c.get(&h).unwrap()[..],
        &data[..],
        "read back, SHA-256 checked"
    );
    let path = c.path((Kind::File, h));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        data,
        "the file's bytes alone"
    );
    let f = c
        .file(&h, data.len() as u64)
        .expect("opened for passthrough");
    assert!(c.file_intact(&h, data.len() as u64, &f));
    assert!(c.file(&h, 4999).is_none(), "the wrong size is damage");
    assert!(!path.exists());
    assert!(
        c.file_intact(&h, data.len() as u64, &f),
        "whole behind the open file"
    );
    // Changed behind the open file: its checks fail.
    use std::os::fd::AsRawFd;
    let behind = format!("/proc/self/fd/{}", f.as_raw_fd());
    let w = std::fs::File::options().write(true).open(behind).unwrap();
    w.set_len(10).unwrap();
    assert!(
        !c.file_intact(&h, data.len() as u64, &f),
        "an open file checked again"
    );

    // verify: every entry hashed; the damaged ones, of either kind, deleted.
    let (a, a_data) = chunk(8, 3000);
    let (b, b_data) = chunk(9, 3000);
    c.put(&a, &a_data);
    c.put_file(&b, &b_data);
    c.put_file(&h, &data);
    let mut raw = std::fs::read(c.path((Kind::File, b))).unwrap();
    raw[10] ^= 1;
    std::fs::write(c.path((Kind::File, b)), raw).unwrap();
    let (checked, damaged) = DiskCache::verify(dir.path()).unwrap();
    assert_eq!(checked, 3);
    assert_eq!(damaged, vec![c.path((Kind::File, b))]);
    assert!(c.path((Kind::Chunk, a)).exists() && c.path((Kind::File, h)).exists());
}

#[test]
fn parts_of_file_entries_are_served_checked_as_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 30)).unwrap();
    wait_scanned(&c);
    let (h, data) = chunk(11, 9000);
    let len = data.len() as u64;
    c.put_file(&h, &data);
    assert_eq!(
        &c.get_file_range(&h, len, 100..4200).unwrap()[..],
        &data[100..4200]
    );
    assert!(
        c.get_file_range(&h, len, 100..9001).is_none(),
        "past the end"
    );
    assert!(
        c.get_file_range(&h, 8999, 0..10).is_none(),
        "the wrong size is damage"
    );
    assert!(!c.contains_kind(Kind::File, &h), "and drops the entry");
    // Written over by something else: its mtime loses the seal, and no part is served.
    c.put_file(&h, &data);
    let path = c.path((Kind::File, h));
    let mut raw = data.clone();
    raw[5000] ^= 1;
    std::fs::write(&path, raw).unwrap();
    assert!(c.seals, "the test's filesystem keeps nanoseconds in mtimes");
    assert!(c.get_file_range(&h, len, 4096..8192).is_none());
    assert!(!path.exists(), "a changed entry is deleted");
}

#[test]
fn demoted_chunk_entries_are_evicted_first() {
    let dir = tempfile::tempdir().unwrap();
    let block = entry::size_on_disk(10_000).div_ceil(4096) * 4096;
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(block * 4)).unwrap();
    wait_scanned(&c);
    let chunks: Vec<_> = (0..4).map(|i| chunk(i, 10_000)).collect();
    for (h, d) in &chunks {
        c.put(h, d);
    }
    // The newest one, demoted (its bytes are in a file entry too), goes before the oldest.
    c.demote_chunk(&chunks[3].0);
    let (h, d) = chunk(99, 10_000);
    c.put(&h, &d);
    assert!(!c.contains(&chunks[3].0), "the demoted entry stayed");
    assert!(c.contains(&chunks[1].0));
}

/// Two caches on one directory (two processes, as far as the quota knows) keep one quota
/// together, each evicting what it knows, then what the other wrote.
#[test]
fn two_users_of_a_directory_keep_one_quota() {
    let dir = tempfile::tempdir().unwrap();
    let entry_size = entry::size_on_disk(10_000).div_ceil(4096) * 4096;
    let quota = entry_size * 10;
    let a = DiskCache::open(dir.path(), CacheSize::Bytes(quota)).unwrap();
    let b = DiskCache::open(dir.path(), CacheSize::Bytes(quota)).unwrap();
    wait_scanned(&a);
    wait_scanned(&b);
    for i in 0..20 {
        let (h, d) = chunk(i, 10_000);
        a.put(&h, &d);
        assert!(
            DiskCache::usage(dir.path()).1 <= quota,
            "after a's entry {i}"
        );
    }
    // b knows none of a's entries; its own writes still keep the quota, evicting a's.
    for i in 20..40 {
        let (h, d) = chunk(i, 10_000);
        b.put(&h, &d);
        assert!(
            DiskCache::usage(dir.path()).1 <= quota,
            "after b's entry {i}"
        );
    }
    assert!(b.get(&chunk(39, 10_000).0).is_some());
}

/// A claim left by a process killed while writing is dropped by the next process that opens
/// the cache alone; entries are counted by listing them.
#[test]
fn a_lost_claim_is_dropped_when_the_cache_is_next_opened_alone() {
    let dir = tempfile::tempdir().unwrap();
    {
        let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 20)).unwrap();
        wait_scanned(&c);
        let (h, d) = chunk(1, 10_000);
        c.put(&h, &d);
        // A claim never given back, as by a process killed mid-write.
        c.ledger.claim(1 << 30);
        assert!(c.ledger.used() > 1 << 30);
    }
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 20)).unwrap();
    wait_scanned(&c);
    assert_eq!(c.ledger.used(), DiskCache::usage(dir.path()).1);
    let (h, d) = chunk(2, 10_000);
    c.put(&h, &d);
    assert!(c.get(&h).is_some(), "the lost claim still filled the quota");
}

/// An entry that a listing for room learns from the disk between its rename and its writer counting
/// it is in the node's count once, not taken off again: the count never errs low (the long
/// soak's 24 MiB cache grew to 36 MiB when it did).
#[test]
fn an_entry_listed_before_its_writer_counts_it_stays_counted() {
    let dir = tempfile::tempdir().unwrap();
    let c = DiskCache::open(dir.path(), CacheSize::Bytes(1 << 20)).unwrap();
    wait_scanned(&c);
    let (h0, d0) = chunk(0, 10_000);
    c.put(&h0, &d0);
    let (h, d) = chunk(1, 10_000);
    let size = expected_size(entry::size_on_disk(d.len() as u64));
    let mtime = seal::at(&h, SystemTime::now());
    c.store((Kind::Chunk, h), size, |tmp, path| {
        let written = entry::write(tmp, path, &d, mtime)?;
        // A listing for room (which learns entries others wrote, without measuring), right
        // after the rename.
        c.relist(false);
        Ok(written)
    });
    let on_disk = DiskCache::usage(dir.path()).1;
    assert!(on_disk > 0);
    assert!(
        c.ledger.used() >= on_disk,
        "counted {} for {on_disk} on disk",
        c.ledger.used()
    );
}
