//! Taking one figure: fio for sequential and random reads, a reader process for the small
//! files, `find` for the metadata walk, and raw GETs and PUTs for the limits. Every reader
//! runs in a child process with a time limit, so a system that stalls costs the run that
//! limit, is reported as such, and cannot hang it.

use datastore::store::Store;
use futures::StreamExt;
use rand::{Rng, SeedableRng};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long past its own time limit a reader may take before it is killed as stalled.
const GRACE: Duration = Duration::from_secs(10);

/// A measured rate, or what stopped it.
#[derive(Clone, Debug)]
pub enum Figure {
    /// The workload finished.
    Done(f64),
    /// The time limit ended it: the rate over what it got through.
    Partial(f64),
    Failed(String),
}

impl Figure {
    pub fn done(&self) -> bool {
        matches!(self, Figure::Done(_))
    }

    pub fn value(&self) -> Option<f64> {
        match self {
            Figure::Done(v) | Figure::Partial(v) => Some(*v),
            Figure::Failed(_) => None,
        }
    }
}

/// What a child process left: its stdout, and how it ended.
struct Run {
    stdout: String,
    /// `None`: killed at the time limit.
    status: Option<std::process::ExitStatus>,
    stderr: String,
}

impl Run {
    /// The stdout of a run that finished well, else why not.
    fn finished(self) -> Result<String, String> {
        match self.status {
            None => Err("stalled: a read did not return within the time limit".into()),
            Some(s) if !s.success() => {
                Err(format!("{s}: {}", self.stderr.lines().last().unwrap_or("")))
            }
            Some(_) => Ok(self.stdout),
        }
    }
}

/// Runs `cmd` to its end or for `limit` at most (then kills it by PID), keeping what it
/// printed either way.
fn run_limited(cmd: &mut Command, limit: Duration) -> Result<Run, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ok(Run {
        stdout: stdout.join().unwrap_or_default(),
        status,
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// One fio job's read figures.
pub struct Fio {
    pub bytes: u64,
    pub mb_s: f64,
    pub iops: f64,
}

/// Sequential read of `file` in 1 MiB reads, at most `limit`: MB/s.
pub fn seq_read(file: &Path, limit: Duration) -> Figure {
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    match fio(file, &["--rw=read", "--bs=1M", "--numjobs=1"], limit) {
        Ok(f) if f.bytes >= size => Figure::Done(f.mb_s),
        Ok(f) => Figure::Partial(f.mb_s),
        Err(e) => Figure::Failed(e),
    }
}

/// `files` read sequentially at once, one reader each, at most `limit`: their bytes ÷ the
/// time until the last is done, MB/s.
pub fn seq_read_all(files: &[PathBuf], limit: Duration) -> Figure {
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    let start = Instant::now();
    let each: Vec<Figure> = std::thread::scope(|scope| {
        let readers: Vec<_> = files
            .iter()
            .map(|f| scope.spawn(move || seq_read(f, limit)))
            .collect();
        readers
            .into_iter()
            .map(|r| {
                r.join()
                    .unwrap_or_else(|_| Figure::Failed("a reader panicked".into()))
            })
            .collect()
    });
    let rate = bytes as f64 / 1e6 / start.elapsed().as_secs_f64();
    match each.iter().find(|f| !f.done()) {
        Some(Figure::Failed(e)) => Figure::Failed(e.clone()),
        Some(_) => Figure::Partial(rate),
        None => Figure::Done(rate),
    }
}

/// Random 4 KiB reads of `file` by 4 jobs for `secs`: IOPS.
pub fn rand_read(file: &Path, secs: u64) -> Figure {
    let args = [
        "--rw=randread",
        "--bs=4k",
        "--numjobs=4",
        "--time_based",
        "--norandommap",
        "--randrepeat=0",
    ];
    match fio(file, &args, Duration::from_secs(secs)) {
        Ok(f) => Figure::Done(f.iops),
        Err(e) => Figure::Failed(e),
    }
}

fn fio(file: &Path, args: &[&str], limit: Duration) -> Result<Fio, String> {
    let mut cmd = Command::new("fio");
    cmd.args([
        "--name=bench",
        "--readonly",
        "--ioengine=psync",
        "--invalidate=0",
    ])
    .arg(format!("--filename={}", file.display()))
    .arg(format!("--runtime={}", limit.as_secs().max(1)))
    .args(["--group_reporting", "--output-format=json"])
    .args(args);
    let out = run_limited(&mut cmd, limit + GRACE)?.finished()?;
    let json = out.find('{').map(|i| &out[i..]).unwrap_or("");
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("fio output: {e}"))?;
    let read = &v["jobs"][0]["read"];
    Ok(Fio {
        bytes: read["io_bytes"].as_u64().unwrap_or(0),
        mb_s: read["bw_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        iops: read["iops"].as_f64().unwrap_or(0.0),
    })
}

/// `readers` processes' worth of threads reading every file under `root` once, in a shuffled
/// order: files/s and MB/s. Runs in a child process of this benchmark (`--worker small`).
pub fn small_files(
    root: &Path,
    files: &[PathBuf],
    readers: usize,
    limit: Duration,
) -> (Figure, Figure) {
    let list = std::env::temp_dir().join(format!("datastore-bench-{}.list", std::process::id()));
    let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    if let Err(e) = std::fs::write(&list, text) {
        return (Figure::Failed(e.to_string()), Figure::Failed(e.to_string()));
    }
    let mut cmd = Command::new(std::env::current_exe().expect("this benchmark's path"));
    cmd.args(["--worker", "small"])
        .arg(root)
        .arg(&list)
        .arg(readers.to_string())
        .arg(limit.as_secs().to_string());
    let r = run_limited(&mut cmd, limit + GRACE);
    let _ = std::fs::remove_file(&list);
    let parsed = r.and_then(Run::finished).and_then(|o| {
        let f: Vec<f64> = o
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        match f.as_slice() {
            [n, bytes, secs] => Ok((*n, *bytes, *secs)),
            _ => Err(format!("reader printed {o:?}")),
        }
    });
    match parsed {
        Ok((n, bytes, secs)) => {
            let done = n as usize >= files.len();
            let fig = |v: f64| {
                if done {
                    Figure::Done(v)
                } else {
                    Figure::Partial(v)
                }
            };
            (fig(n / secs), fig(bytes / 1e6 / secs))
        }
        Err(e) => (Figure::Failed(e.clone()), Figure::Failed(e)),
    }
}

/// The child side of [`small_files`]: `ROOT LIST READERS SECS`; prints `files bytes secs`.
/// The order the small-file readers take `files` in: shuffled, the same in every run.
pub fn epoch_order(mut files: Vec<String>) -> Vec<String> {
    let mut rng = rand::rngs::SmallRng::seed_from_u64(42);
    for i in (1..files.len()).rev() {
        files.swap(i, rng.gen_range(0..=i));
    }
    files
}

pub fn small_files_worker(args: &[String]) {
    let [root, list, readers, secs] = args else {
        panic!("usage: --worker small ROOT LIST READERS SECS");
    };
    let root = Path::new(root);
    let order = epoch_order(
        std::fs::read_to_string(list)
            .expect("the file list")
            .lines()
            .map(String::from)
            .collect(),
    );
    let readers: usize = readers.parse().expect("readers");
    let deadline = Duration::from_secs(secs.parse().expect("seconds"));
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (files, bytes) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..readers)
            .map(|_| {
                s.spawn(|| {
                    let (mut n, mut b) = (0u64, 0u64);
                    while start.elapsed() < deadline {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(f) = order.get(i) else { break };
                        let data =
                            std::fs::read(root.join(f)).unwrap_or_else(|e| panic!("read {f}: {e}"));
                        n += 1;
                        b += data.len() as u64;
                    }
                    (n, b)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a reader"))
            .fold((0, 0), |a, x| (a.0 + x.0, a.1 + x.1))
    });
    println!("{files} {bytes} {}", start.elapsed().as_secs_f64());
}

/// `find` with a stat of every entry under `root`: entries/s (and the entries seen).
pub fn walk(root: &Path, expected: u64, limit: Duration) -> (Figure, u64) {
    let mut cmd = Command::new("find");
    cmd.arg(root).args(["-printf", "%s %m\n"]);
    let start = Instant::now();
    let run = match run_limited(&mut cmd, limit) {
        Ok(r) => r,
        Err(e) => return (Figure::Failed(e), 0),
    };
    let secs = start.elapsed().as_secs_f64();
    let n = run.stdout.lines().count() as u64;
    let rate = n as f64 / secs;
    if run.status.is_none() || n < expected {
        (Figure::Partial(rate), n)
    } else {
        (Figure::Done(rate), n)
    }
}

/// The limit for reading: `key` fetched with 16 parallel ranged GETs of 8 MiB, MB/s.
pub async fn raw_get(store: &Store, key: &str, size: u64) -> f64 {
    raw_get_at(store, key, size, 16).await
}

/// `key` fetched with `at_once` parallel ranged GETs, MB/s: of 8 MiB, or smaller for a
/// small object, so that there are at least 128 to keep going (never under 1 MiB).
pub async fn raw_get_at(store: &Store, key: &str, size: u64, at_once: usize) -> f64 {
    let part = (size / 128).clamp(1 << 20, 8 << 20);
    let ranges: Vec<_> = (0..size)
        .step_by(part as usize)
        .map(|o| o..(o + part).min(size))
        .collect();
    let start = Instant::now();
    let n: u64 = futures::stream::iter(ranges)
        .map(|r| {
            let s = store.clone();
            async move { s.get_range(key, r).await.expect("raw GET").len() as u64 }
        })
        .buffer_unordered(at_once)
        .fold(0, |a, n| async move { a + n })
        .await;
    n as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// The limit for small files: every object fetched whole, 32 at a time, files/s and MB/s.
pub async fn raw_get_objects(store: &Store, keys: &[String]) -> (f64, f64) {
    raw_get_objects_at(store, keys, 32).await
}

/// Every object fetched whole, `at_once` at a time, files/s and MB/s.
pub async fn raw_get_objects_at(store: &Store, keys: &[String], at_once: usize) -> (f64, f64) {
    let start = Instant::now();
    let bytes: u64 = futures::stream::iter(keys)
        .map(|k| {
            let s = store.clone();
            async move { s.get(k).await.expect("raw GET").len() as u64 }
        })
        .buffer_unordered(at_once)
        .fold(0, |a, n| async move { a + n })
        .await;
    let secs = start.elapsed().as_secs_f64();
    (keys.len() as f64 / secs, bytes as f64 / 1e6 / secs)
}

/// The limit for pushing: `data` uploaded as 8 MiB objects with 16 parallel PUTs, MB/s.
pub async fn raw_put(store: &Store, data: bytes::Bytes) -> f64 {
    let parts: Vec<_> = (0..data.len()).step_by(8 << 20).collect();
    let start = Instant::now();
    futures::stream::iter(parts)
        .map(|o| {
            let s = store.clone();
            let part = data.slice(o..(o + (8 << 20)).min(data.len()));
            async move { s.put(&format!("raw-put/{o}"), part).await.expect("raw PUT") }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    data.len() as f64 / 1e6 / start.elapsed().as_secs_f64()
}

/// Uploads local files as objects (key, path), 16 at a time.
pub async fn upload(store: &Store, files: Vec<(String, PathBuf)>) {
    futures::stream::iter(files)
        .map(|(key, path)| {
            let s = store.clone();
            async move {
                let data = tokio::fs::read(&path).await.expect("read a file to upload");
                s.put(&key, data.into())
                    .await
                    .expect("upload a plain object")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}
