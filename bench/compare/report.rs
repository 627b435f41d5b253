//! The results: a markdown table with ratios, the targets met or missed, bench/RESULTS.md
//! (between its markers, so the hand-written notes around the table stay) and
//! bench/results.json for the plot.

use crate::measure::Figure;
use crate::systems::System;
use std::fmt::Write;
use std::path::Path;

/// One workload's figures.
#[derive(Clone)]
pub struct Row {
    pub workload: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// The raw object-store rate, where one bounds the workload.
    pub limit: Option<f64>,
    /// The same work on local disk (or tmpfs).
    pub local: Option<f64>,
    /// Each of [`System::ALL`]'s figures, in its order; `None` where not measured.
    pub systems: [Option<Figure>; System::ALL.len()],
}

impl Row {
    pub fn new(workload: impl Into<String>, unit: &'static str) -> Row {
        Row {
            workload: workload.into(),
            unit,
            higher_is_better: true,
            limit: None,
            local: None,
            systems: Default::default(),
        }
    }

    pub fn get(&self, s: System) -> Option<f64> {
        self.systems[s as usize].as_ref()?.value()
    }

    pub fn set(&mut self, s: System, f: Figure) {
        self.systems[s as usize] = Some(f);
    }

    fn ratio(&self, other: Option<f64>) -> Option<f64> {
        let (d, o) = (self.get(System::Datastore)?, other?);
        (o > 0.0).then(|| d / o)
    }
}

/// A goal from the benchmark milestone, checked against this run.
pub struct Target {
    pub what: &'static str,
    pub measured: Option<f64>,
    pub at_least: Option<f64>,
    pub at_most: Option<f64>,
}

impl Target {
    pub fn met(&self) -> bool {
        self.measured.is_some_and(|m| {
            self.at_least.is_none_or(|t| m >= t) && self.at_most.is_none_or(|t| m <= t)
        })
    }
}

fn num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(f: &Option<Figure>) -> String {
    match f {
        None => "–".into(),
        Some(Figure::Done(v)) => num(*v),
        Some(Figure::Partial(v)) => format!("{} ⏱", num(*v)),
        Some(Figure::Failed(_)) => "failed".into(),
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "–".into())
}

/// The table, the targets and the footnotes, in markdown.
pub fn markdown(rows: &[Row], targets: &[Target], limit_secs: u64) -> String {
    let mut s = String::new();
    // datastore first, then each peer; the ratios are datastore's to each.
    let peers = [System::Mountpoint, System::S3fs, System::Rclone];
    s.push_str("| workload | unit | limit (raw GET/PUT) | local | datastore |");
    for p in peers {
        let _ = write!(s, " {} |", p.name());
    }
    s.push_str(" ds/limit | ds/local |");
    for p in peers {
        let _ = write!(s, " ds/{} |", p.name());
    }
    s.push('\n');
    s.push_str(&"|---".repeat(7 + 2 * peers.len()));
    s.push_str("|\n");
    let mut failures = Vec::new();
    for r in rows {
        let _ = write!(
            s,
            "| {} | {}{} | {} | {} | {} |",
            r.workload,
            r.unit,
            if r.higher_is_better {
                ""
            } else {
                " (lower is better)"
            },
            opt(r.limit),
            opt(r.local),
            cell(&r.systems[System::Datastore as usize]),
        );
        for p in peers {
            let _ = write!(s, " {} |", cell(&r.systems[p as usize]));
        }
        let _ = write!(
            s,
            " {} | {} |",
            opt(r.ratio(r.limit)),
            opt(r.ratio(r.local))
        );
        for p in peers {
            let _ = write!(s, " {} |", opt(r.ratio(r.get(p))));
        }
        s.push('\n');
        for (sys, f) in System::ALL.iter().zip(&r.systems) {
            if let Some(Figure::Failed(e)) = f {
                let line = format!("{} / {}: {e}", r.workload, sys.name());
                if !failures.contains(&line) {
                    failures.push(line);
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "\n⏱ stopped at the {limit_secs} s limit of a workload: the rate over what it got through."
    );
    for f in failures {
        let _ = writeln!(s, "- failed: {f}");
    }
    if targets.is_empty() {
        return s;
    }
    s.push_str("\n| target | measured | met |\n|---|---|---|\n");
    for t in targets {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            t.what,
            opt(t.measured),
            if t.met() { "yes" } else { "**no**" }
        );
    }
    s
}

/// The figures as JSON, for bench/plot.py.
pub fn json(rows: &[Row]) -> serde_json::Value {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let mut row = serde_json::json!({
                "workload": r.workload,
                "unit": r.unit,
                "higher_is_better": r.higher_is_better,
                "limit": r.limit,
                "local": r.local,
            });
            for s in System::ALL {
                row[s.name()] = serde_json::json!(r.get(s));
            }
            row
        })
        .collect();
    serde_json::json!({ "rows": rows })
}

const BEGIN: &str = "<!-- bench:begin (written by bench/run) -->";
const END: &str = "<!-- bench:end -->";

/// Replaces the generated part of `path` (between the markers) with `body`, keeping the rest.
pub fn write_results(path: &Path, body: &str) -> std::io::Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{body}{END}");
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &old[..b], &old[e + END.len()..]),
        _ => format!("# Benchmark results\n\n{block}\n"),
    };
    std::fs::write(path, new)
}

/// Cores, memory, the disk under `dir`, the kernel and the tools' versions, in one paragraph.
pub fn machine(dir: &Path) -> String {
    let sh = |c: &str| {
        std::process::Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let mem = sh("awk '/MemTotal/ {printf \"%.0f GiB\", $2/1048576}' /proc/meminfo");
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    let disk = sh(&format!(
        "df -h --output=source,fstype,size {} | tail -1",
        dir.display()
    ));
    format!(
        "{} cores ({}), {mem} RAM, disk {disk}, Linux {}; {}, {}, {}, {}, s3s-fs 0.14.1",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu.trim(),
        sh("uname -r"),
        sh("s3fs --version 2>&1 | head -1 | grep -o 'V[0-9.]*' | sed 's/^V/s3fs /'"),
        sh("rclone version 2>&1 | head -1"),
        sh("fio --version"),
        sh(&format!(
            "{}/bench/.tools/bin/mount-s3 --version 2>&1 | head -1",
            env!("CARGO_MANIFEST_DIR")
        )),
    )
}
