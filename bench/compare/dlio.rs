//! MLPerf Storage's engine (DLIO, through `bench/dlio/run`) training over the data as each
//! system serves it over a shaped link, beside the same run from local disk: the figure users
//! compare storage for training by is its accelerator utilisation (AU), the share of a step
//! the simulated accelerator computes rather than waits for data.

use crate::measure::Figure;
use crate::report::Row;
use crate::setup;
use crate::systems::{Mount, Setup, System};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// bench/dlio/run.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/dlio/run")
}

/// The workload's files: DLIO's generator writes them to `data/train/` (and an empty
/// `data/valid/`), 96 npz files of 4 MiB, the same on every generation.
pub fn generate(data: &Path, scratch: &Path) {
    let ok = Command::new(script())
        .args(["generate", "--data"])
        .arg(data)
        .arg("--out")
        .arg(scratch)
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "bench/dlio/run generate failed");
}

/// One epoch, as DLIO reports it.
#[derive(Clone, Debug)]
pub struct Epoch {
    pub au_pct: f64,
    pub samples_per_s: f64,
}

/// Two epochs over `data` (a folder holding `train/`) with `compute` seconds a batch: the
/// first cold, the second over what the first left cached. A run that fails, or does not end
/// within `timeout`, is an error with the last line it wrote.
pub fn train(
    data: &Path,
    scratch: &Path,
    compute: f64,
    timeout: Duration,
) -> Result<[Epoch; 2], String> {
    let _ = std::fs::remove_dir_all(scratch);
    let out = Command::new(script())
        .args(["train", "--epochs", "2", "--data"])
        .arg(data)
        .arg("--out")
        .arg(scratch)
        .args(["--compute", &format!("{compute:.3}")])
        .args(["--timeout", &timeout.as_secs().to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let epochs: Vec<Epoch> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("epoch").is_some())
        .filter_map(|v| {
            Some(Epoch {
                au_pct: v["au_pct"].as_f64()?,
                samples_per_s: v["samples_per_s"].as_f64()?,
            })
        })
        .collect();
    match <[Epoch; 2]>::try_from(epochs) {
        Ok(e) if out.status.success() => Ok(e),
        // Its last line, without the scratch folder's path.
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr.lines().last().unwrap_or("DLIO wrote nothing");
            Err(last.split(" (log: ").next().unwrap_or(last).to_string())
        }
    }
}

/// Where the workload's data is: generated locally, pushed as dataset `dlio` and uploaded as
/// plain objects under `dlio/` beside it.
pub struct Workload<'a> {
    pub local: &'a Path,
    /// The plain objects' keys, one a file.
    pub keys: Vec<String>,
    /// The files' bytes.
    pub bytes: u64,
    /// Samples (files) a batch.
    pub batch: usize,
    pub limit: Duration,
}

/// The rows of one profile: DLIO's AU on the cold and the warm epoch, and its samples/s cold
/// (its limit: the link's best rate over these objects, in files/s), for local disk and each
/// system reading through `link` (the servers behind the link: the link's setup). `limit` is
/// that best raw rate in MB/s, which sets the compute time a batch: the data rate it asks
/// for is 0.8 of the limit, so that the link could keep the accelerator busy.
pub fn rows(w: &Workload, name: &str, link: &Setup, limit_mb: f64) -> Vec<Row> {
    let per_file = w.bytes as f64 / w.keys.len() as f64;
    let compute = w.batch as f64 * per_file / (0.8 * limit_mb * 1e6);
    let what = format!(
        "L. {name}: DLIO unet3d, {} files of {} MiB, {compute:.2} s compute a batch of {}",
        w.keys.len(),
        (per_file as u64) >> 20,
        w.batch
    );
    let mut cold = Row::new(format!("{what}, cold epoch, AU"), "%");
    let mut warm = Row::new(format!("{what}, warm epoch, AU"), "%");
    let mut rate = Row::new(format!("{what}, cold epoch"), "samples/s");
    rate.limit = Some(limit_mb * 1e6 / per_file);
    // Startup (TensorFlow's import) takes 10-20 s, and a slow system's cold epoch minutes.
    let timeout = (w.limit * 5).max(Duration::from_secs(180));
    let scratch = link.work.join("dlio-out");
    setup::drop_caches();
    eprintln!("==> DLIO: local disk");
    if let Ok([c, h]) = train(w.local, &scratch, compute, timeout) {
        (cold.local, warm.local, rate.local) =
            (Some(c.au_pct), Some(h.au_pct), Some(c.samples_per_s));
    }
    for system in System::ALL {
        eprintln!("==> DLIO: {}", system.name());
        let cache = link.work.join(format!("cache-dlio-{}", system.name()));
        let _ = std::fs::remove_dir_all(&cache);
        let result = Mount::new(link, system, "dlio", &cache)
            .and_then(|m| train(&m.dataset_root("dlio"), &scratch, compute, timeout));
        match result {
            Ok([c, h]) => {
                cold.set(system, Figure::Done(c.au_pct));
                warm.set(system, Figure::Done(h.au_pct));
                rate.set(system, Figure::Done(c.samples_per_s));
            }
            Err(e) => {
                for r in [&mut cold, &mut warm, &mut rate] {
                    r.set(system, Figure::Failed(e.clone()));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&cache);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    vec![cold, warm, rate]
}
