//! The shared cache tier: eight daemons ("nodes", each with its own disk cache) reading one
//! version on moto S3 through one real nginx running the shipped config. The store serves
//! each object about once between them; a tier that stops or lies costs time, never bytes.

mod common;

use common::nginx::Nginx;
use common::tree::random_files;
use common::{Env, Moto};
use std::path::Path;
use std::time::{Duration, Instant};

const SECRET: &str = "tier-test-secret";

/// A dataset of large files (several chunks each) and small ones (packed).
fn dataset(env: &Env) -> std::path::PathBuf {
    let src = env.dir("src");
    random_files(&src, 7, 4, 3 << 20);
    for i in 0..40 {
        std::fs::write(
            src.join(format!("small-{i:02}.txt")),
            format!("small file {i}"),
        )
        .unwrap();
    }
    env.push(&src, "ds");
    src
}

/// A node: its own disk cache, the store on moto, reading through `tier`.
fn node(moto: &Moto, env: &Env, tier: &Nginx) -> Env {
    let mut n = env.via(moto.port);
    n.set_var("DATASTORE_CACHE_URL", &tier.url());
    n.set_var("DATASTORE_CACHE_SECRET", SECRET);
    n
}

fn read_all(src: &Path, point: &Path) {
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let name = e.file_name();
        let got = std::fs::read(point.join(&name)).unwrap();
        assert!(got == std::fs::read(e.path()).unwrap(), "{name:?} differs");
    }
}

#[test]
fn eight_nodes_read_one_version_with_one_store_fetch_per_slice() {
    let moto = Moto::start();
    let env = moto.env();
    let src = dataset(&env);
    let tier = Nginx::start(moto.port, SECRET);
    let nodes: Vec<Env> = (0..8).map(|_| node(&moto, &env, &tier)).collect();
    let mounts: Vec<_> = nodes.iter().map(|n| n.mount("ds", &[])).collect();
    std::thread::scope(|s| {
        for m in &mounts {
            let src = &src;
            s.spawn(move || read_all(src, &m.point));
        }
    });
    // `get` on a ninth node goes through the tier too.
    let ninth = node(&moto, &env, &tier);
    let dest = ninth.dir("copy");
    ninth.ok(["get", "ds", dest.join("ds").to_str().unwrap()]);
    common::tree::assert_same(&src, &dest.join("ds"));
    let objects = env.objects(&["blobs/", "packs/", "manifests/"]);
    assert!(objects.len() >= 5, "{objects:?}");
    // The tier fetches objects in 1 MiB slices: one GET per slice, once for all the nodes.
    let slices = |size: u64| size.div_ceil(1 << 20).max(1) as usize;
    let (mut total, mut want) = (0, 0);
    for (k, size) in &objects {
        let name = k.rsplit('/').next().unwrap();
        let n = moto.gets(name);
        assert!(
            n <= 2 * slices(*size),
            "{k} ({size} bytes) fetched {n} times from the store for 9 nodes"
        );
        total += n;
        want += slices(*size);
    }
    assert!(
        total <= want + want / 4,
        "{total} store GETs for {} objects of {want} slices",
        objects.len()
    );
    let manifests = moto.gets("/manifests/");
    assert!(
        manifests <= 2,
        "the manifest was fetched {manifests} times from the store"
    );
    for m in &mounts {
        assert!(m.log().contains("through the cache tier"), "{}", m.log());
    }
}

#[test]
fn a_tier_that_stops_mid_read_costs_time_not_bytes() {
    let moto = Moto::start();
    let env = moto.env();
    let src = dataset(&env);
    let mut tier = Nginx::start(moto.port, SECRET);
    let n = node(&moto, &env, &tier);
    let m = n.mount("ds", &[]);
    assert_eq!(
        std::fs::read(m.point.join("f000.bin")).unwrap(),
        std::fs::read(src.join("f000.bin")).unwrap()
    );
    tier.stop();
    let started = Instant::now();
    read_all(&src, &m.point);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "reads waited {:?} on a stopped tier",
        started.elapsed()
    );
    assert!(m.log().contains("reading from the store"), "{}", m.log());
    let bad = n.mount_point("bad");
    n.fails(
        [
            "mount",
            "ds",
            bad.to_str().unwrap(),
            "-o",
            "cache_url=ftp://tier",
        ],
        "cache_url 'ftp://tier' is not an http:// or https:// URL",
    );
    // A node whose requests the tier refuses (no secret) reads from the store, right.
    let other = Nginx::start(moto.port, SECRET);
    let mut stranger = env.via(moto.port);
    stranger.set_var("DATASTORE_CACHE_URL", &other.url());
    let s = stranger.mount("ds", &[]);
    read_all(&src, &s.point);
    assert!(s.log().contains("403"), "{}", s.log());
}

#[test]
fn a_tier_that_answers_other_bytes_is_caught_and_refetched_from_the_store() {
    let moto = Moto::start();
    let env = moto.env();
    let src = dataset(&env);
    let tier = Nginx::start(moto.port, SECRET);
    {
        let first = node(&moto, &env, &tier);
        let m = first.mount("ds", &[]);
        read_all(&src, &m.point);
    }
    // Damage the body of one cached object in the tier's cache (its last bytes).
    let damaged = tier
        .cached()
        .into_iter()
        .find(|p| {
            let text = std::fs::read(p).unwrap();
            text.windows(6).any(|w| w == b"blobs/")
        })
        .expect("a cached blob");
    let mut bytes = std::fs::read(&damaged).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();

    let port = common::free_port();
    let addr = format!("127.0.0.1:{port}");
    let second = node(&moto, &env, &tier);
    let m = second.mount_with("ds", &[], &["--metrics-addr", &addr]);
    read_all(&src, &m.point);
    assert!(
        m.log()
            .contains("the cache tier answered with bytes that do not match"),
        "{}",
        m.log()
    );
    let body = common::http_get(port, "/metrics");
    let mismatches: f64 = body
        .lines()
        .filter(|l| l.starts_with("datastore_tier_mismatches_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(mismatches >= 1.0, "{body}");
}
