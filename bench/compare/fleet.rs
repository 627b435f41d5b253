//! Many nodes, one dataset: daemons that each stand for a node (their own disk cache) read
//! one version at once, from the store directly or through one nginx tier, running the
//! shipped config (1 MiB slices) or a variant that caches whole objects. A
//! counting proxy in front of the store gives the bytes the store served, tier or not.

#[path = "../../fuse-tests/common/nginx.rs"]
#[allow(dead_code)]
mod nginx;

use crate::measure::Figure;
use crate::report::Row;
use crate::systems::{Mount, Setup, System};
use crate::{push, setup, Plan, NODES};
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// For the tier's helper, which takes a port from its parent module.
fn free_port() -> u16 {
    crate::setup::free_port()
}

const SECRET: &str = "bench-tier-secret";

/// What stands between the nodes and the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    None,
    /// The shipped config: a miss fetches the 1 MiB slices it covers.
    Sliced,
    /// The shipped config without its slices: a miss fetches the whole object, and ranges
    /// are cut from it.
    Whole,
}

/// One run: what the store served and how long the nodes took.
pub struct Outcome {
    pub store_bytes: u64,
    pub read_bytes: u64,
    pub secs: f64,
}

impl Outcome {
    /// Bytes the nodes read, all together, per second.
    pub fn rate_mb(&self) -> f64 {
        self.read_bytes as f64 / 1e6 / self.secs
    }
}

/// The shipped config made to fetch and cache whole objects instead of slices.
fn whole(config: String) -> String {
    let out = config
        .replace("        slice 1m;\n", "")
        .replace("proxy_cache_key $uri$slice_range;", "proxy_cache_key $uri;")
        .replace("        proxy_set_header Range $slice_range;\n", "")
        .replace(
            "proxy_cache_valid 200 206 30d;",
            "proxy_cache_valid 200 30d;\n        proxy_force_ranges on;",
        );
    // Comments may speak of slices; no directive may use them.
    let mut directives = out.lines().filter(|l| !l.trim_start().starts_with('#'));
    assert!(
        !directives.any(|l| l.contains("slice")),
        "the shipped config changed"
    );
    out
}

/// `nodes` daemons mount `dataset` of the store behind `store_port` and each reads `files`
/// (paths in the version, with their sizes) in its own shuffled order, all at once.
pub fn run(
    s: &Setup,
    store_port: u16,
    dataset: &str,
    files: &[(PathBuf, u64)],
    nodes: usize,
    tier: Tier,
    limit: Duration,
) -> Result<Outcome, String> {
    let proxy = crate::proxy::Proxy::start(store_port, 1);
    let through = s.through(proxy.port);
    let nginx = match tier {
        Tier::None => None,
        Tier::Sliced => Some(nginx::Nginx::start(proxy.port, SECRET)),
        Tier::Whole => Some(nginx::Nginx::start_edited(proxy.port, SECRET, whole)),
    };
    let url = nginx.as_ref().map(|n| n.url());
    let mut env = vec![("DATASTORE_CACHE_SECRET", SECRET)];
    if let Some(u) = &url {
        env.push(("DATASTORE_CACHE_URL", u));
    }
    let dir = s.work.join(format!("fleet-{tier:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    let mounts = (0..nodes)
        .map(|i| {
            let (point, cache) = (dir.join(format!("mnt-{i}")), dir.join(format!("cache-{i}")));
            Mount::datastore(&through, dataset, &point, &cache, &[], &env)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let read: Result<Vec<u64>, String> = std::thread::scope(|scope| {
        let readers: Vec<_> = mounts
            .iter()
            .enumerate()
            .map(|(i, m)| scope.spawn(move || read_all(&m.point, files, i as u64, start + limit)))
            .collect();
        readers
            .into_iter()
            .map(|r| r.join().unwrap_or_else(|_| Err("a reader panicked".into())))
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    drop(mounts);
    drop(nginx);
    let read_bytes = read?.iter().sum();
    Ok(Outcome {
        store_bytes: proxy.counters().bytes_down.load(Ordering::Relaxed),
        read_bytes,
        secs,
    })
}

/// Reads every file once, in an order shuffled by `seed`, checking each one's size; the
/// bytes read.
fn read_all(
    root: &Path,
    files: &[(PathBuf, u64)],
    seed: u64,
    deadline: Instant,
) -> Result<u64, String> {
    let mut order: Vec<&(PathBuf, u64)> = files.iter().collect();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.gen_range(0..=i));
    }
    let mut bytes = 0;
    for (path, size) in order {
        if Instant::now() > deadline {
            return Err("over the time limit".into());
        }
        let data =
            std::fs::read(root.join(path)).map_err(|e| format!("{}: {e}", path.display()))?;
        if data.len() as u64 != *size {
            return Err(format!(
                "{}: {} bytes, not {size}",
                path.display(),
                data.len()
            ));
        }
        bytes += *size;
    }
    Ok(bytes)
}

/// The fleet group: [`NODES`] daemons read a version of large and small files all at once,
/// without a tier, through the shipped tier config (1 MiB slices) and through a variant that
/// caches whole objects; then a tenth of the small files, through each tier config. Returns the
/// rows and the store bytes ÷ version bytes through the shipped tier.
pub fn group(
    s: &Setup,
    server: &setup::Server,
    plan: &Plan,
    dir: &Path,
) -> (Vec<Row>, Option<f64>) {
    let (large, small) = plan.fleet;
    for i in 0..large {
        setup::random_file(
            &dir.join(format!("large/{i:02}.bin")),
            16 << 20,
            100 + i as u64,
        );
    }
    let small_files = setup::small_tree(&dir.join("small"), small, 3);
    push(s, dir, "fleet");
    let sized = |p: PathBuf| {
        let size = std::fs::metadata(dir.join(&p)).map_or(0, |m| m.len());
        (p, size)
    };
    let mut all: Vec<(PathBuf, u64)> = (0..large)
        .map(|i| sized(PathBuf::from(format!("large/{i:02}.bin"))))
        .collect();
    let small_sized: Vec<(PathBuf, u64)> = small_files
        .iter()
        .map(|p| sized(Path::new("small").join(p)))
        .collect();
    all.extend(small_sized.iter().cloned());
    // The same tenth of the small files on every node, each in its own order.
    let tenth: Vec<(PathBuf, u64)> = small_sized.iter().step_by(10).cloned().collect();
    let version_bytes: u64 = all.iter().map(|(_, n)| n).sum();
    let tenth_bytes: u64 = tenth.iter().map(|(_, n)| n).sum();
    let port: u16 = server
        .endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the server's port");
    let limit = plan.limit * 4;
    let run = |files: &[(PathBuf, u64)], tier| {
        setup::drop_caches();
        run(s, port, "fleet", files, NODES, tier, limit)
    };
    let tiers = [Tier::None, Tier::Sliced, Tier::Whole];
    let full: Vec<_> = tiers.iter().map(|&t| run(&all, t)).collect();
    let part: Vec<_> = tiers[1..].iter().map(|&t| run(&tenth, t)).collect();
    let figure = |r: &Result<Outcome, String>, f: &dyn Fn(&Outcome) -> f64| match r {
        Ok(o) => Figure::Done(f(o)),
        Err(e) => Figure::Failed(e.clone()),
    };
    let mb = version_bytes >> 20;
    let names = [
        "no tier",
        "one nginx tier, 1 MiB slices (shipped)",
        "one nginx tier, whole objects",
    ];
    let mut rows = Vec::new();
    for (r, name) in full.iter().zip(names) {
        let mut row = Row::new(
            format!(
                "9. {NODES} nodes read a {mb} MiB version at once, {name}: store bytes ÷ version"
            ),
            "×",
        );
        row.higher_is_better = false;
        row.set(
            System::Datastore,
            figure(r, &|o| o.store_bytes as f64 / version_bytes as f64),
        );
        rows.push(row);
    }
    for (r, name) in full.iter().zip(names) {
        let mut row = Row::new(
            format!("9. {NODES} nodes read a {mb} MiB version at once, {name}: all nodes' rate"),
            "MB/s",
        );
        row.set(System::Datastore, figure(r, &|o| o.rate_mb()));
        rows.push(row);
    }
    for (r, name) in part.iter().zip(&names[1..]) {
        let mut row = Row::new(
            format!("9. {NODES} nodes read a tenth of the small files, {name}: store bytes ÷ bytes read once"),
            "×",
        );
        row.higher_is_better = false;
        row.set(
            System::Datastore,
            figure(r, &|o| o.store_bytes as f64 / tenth_bytes as f64),
        );
        rows.push(row);
        let mut row = Row::new(
            format!("9. {NODES} nodes read a tenth of the small files, {name}: time"),
            "s",
        );
        row.higher_is_better = false;
        row.set(System::Datastore, figure(r, &|o| o.secs));
        rows.push(row);
    }
    let tier_ratio = full[1]
        .as_ref()
        .ok()
        .map(|o| o.store_bytes as f64 / version_bytes as f64);
    (rows, tier_ratio)
}
