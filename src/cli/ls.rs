use super::json;
use super::output::{self, bytes, line, path, table, time, widen};
use super::Ctx;
use crate::catalog::CatalogError;
use crate::format::name::parse_target;
use crate::format::{EntryKind, Manifest, VersionRef};
use crate::ops::open;
use anyhow::Result;
use std::process::ExitCode;

/// List datasets, the versions of a dataset, or the files of a version.
///
/// Examples:
///   datastore ls                       # datasets
///   datastore ls imagenet              # versions of imagenet
///   datastore ls imagenet@v3/train -l  # files in a directory of v3
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// NAME, NAME@VER or NAME[@VER]/PATH (VER: latest, vN or N).
    target: Option<String>,
    /// Long format: mode, size, modification time, SHA-256.
    #[arg(short, long)]
    long: bool,
    /// List subdirectories recursively.
    #[arg(short = 'R', long)]
    recursive: bool,
}

pub async fn run(ctx: &Ctx, a: Args) -> Result<ExitCode> {
    // -l and -R are for the files of a version: a listing of datasets or versions that
    // ignored them would look like an answer.
    let flags: Vec<&str> = [(a.long, "-l"), (a.recursive, "-R")]
        .into_iter()
        .filter_map(|(on, flag)| on.then_some(flag))
        .collect();
    let are = if flags.len() == 1 { "is" } else { "are" };
    let flags = flags.join(" ");
    let Some(target) = a.target else {
        if !flags.is_empty() {
            anyhow::bail!("`ls` lists datasets; {flags} {are} for the files of a version: `datastore ls NAME@latest {flags}`");
        }
        return datasets(ctx).await;
    };
    let t = parse_target(&target)?;
    if !t.version_given && t.path.is_empty() {
        if !flags.is_empty() {
            anyhow::bail!(
                "`ls {0}` lists the versions of {0}; {flags} {are} for the files of a version: `datastore ls {0}@latest {flags}`",
                t.dataset
            );
        }
        return versions(ctx, &t.dataset).await;
    }
    let o = open(&ctx.catalog, &t).await?;
    let m = &o.manifest;
    let is_dir = matches!(m.entries[o.entry].kind, EntryKind::Dir { .. });
    if is_dir && a.recursive {
        match ctx.json {
            true => recursive_json(m, o.entry),
            false => recursive(m, o.entry, a.long),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let entries: Vec<(usize, Vec<u8>)> = match (&m.entries[o.entry].kind, a.recursive) {
        (EntryKind::Dir { .. }, _) => m
            .children(o.entry)
            .map(|c| (c, m.name(&m.entries[c]).to_vec()))
            .collect(),
        _ => vec![(o.entry, m.name(&m.entries[o.entry]).to_vec())],
    };
    if ctx.json {
        let all: Vec<_> = entries.iter().map(|(i, p)| json::entry(m, *i, p)).collect();
        json::print(&all.into());
    } else if a.long {
        let rows: Vec<Vec<String>> = entries.iter().map(|(i, p)| long_row(m, *i, p)).collect();
        table(&rows);
    } else {
        for (i, p) in &entries {
            println!("{}", short_row(m, *i, p));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ls -R`: printed as the walk goes, never collected, so memory stays in proportion to the
/// tree's depth while the output (every full path) may be far larger. A long listing walks
/// twice: once to size the columns, once to print.
fn recursive(m: &Manifest, dir: usize, long: bool) {
    let each = |f: &mut dyn FnMut(usize, &[u8])| {
        let mut walk = m.walk(dir);
        walk.next_entry(); // the directory itself
        while let Some((i, p)) = walk.next_entry() {
            f(i, p);
        }
    };
    if long {
        let mut widths = Vec::new();
        each(&mut |i, p| widen(&mut widths, &long_row(m, i, p)));
        each(&mut |i, p| println!("{}", line(&long_row(m, i, p), &widths)));
    } else {
        each(&mut |i, p| println!("{}", short_row(m, i, p)));
    }
}

/// `ls -R --json`: one array, written as the walk goes.
fn recursive_json(m: &Manifest, dir: usize) {
    let mut out = json::Array::start("");
    let mut walk = m.walk(dir);
    walk.next_entry(); // the directory itself
    while let Some((i, p)) = walk.next_entry() {
        out.push(&json::entry(m, i, p));
    }
    out.end("");
}

/// A path, with `/` after a directory's.
fn short_row(m: &Manifest, i: usize, p: &[u8]) -> String {
    let slash = match m.entries[i].kind {
        EntryKind::Dir { .. } => "/",
        _ => "",
    };
    format!("{}{slash}", path(p))
}

fn long_row(m: &Manifest, i: usize, p: &[u8]) -> Vec<String> {
    let e = &m.entries[i];
    let (kind, size, extra) = match &e.kind {
        EntryKind::Dir { .. } => ('d', String::from("-"), String::new()),
        EntryKind::File { size, sha256, .. } => {
            ('-', size.to_string(), sha256.to_hex()[..16].to_string())
        }
        EntryKind::Symlink { target } => {
            ('l', "-".into(), format!("-> {}", path(m.string(*target))))
        }
    };
    vec![
        format!("{kind}{}", mode_string(e.mode)),
        size,
        time(e.mtime.secs),
        path(p),
        extra,
    ]
}

fn mode_string(mode: u32) -> String {
    let mut s = String::new();
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

async fn datasets(ctx: &Ctx) -> Result<ExitCode> {
    let listing = ctx.catalog.list(None).await?;
    let mut rows = vec![vec![
        "NAME".into(),
        "LATEST".into(),
        "VERSIONS".into(),
        "FILES".into(),
        "SIZE".into(),
        "UPDATED".into(),
    ]];
    // Each dataset's versions come newest first, so the first of a run is its latest.
    let live: Vec<&VersionRef> = listing.committed().collect();
    if ctx.json {
        let all: Vec<_> = live
            .chunk_by(|a, b| a.dataset == b.dataset)
            .map(|versions| {
                let latest = versions[0];
                serde_json::json!({
                    "dataset": latest.dataset,
                    "latest": latest.version,
                    "versions": versions.len(),
                    "files": latest.files,
                    "bytes": latest.bytes,
                    "updated_unix": latest.created_unix,
                })
            })
            .collect();
        json::print(&all.into());
        return Ok(name_damage(ctx, listing.damage));
    }
    for versions in live.chunk_by(|a, b| a.dataset == b.dataset) {
        let latest = versions[0];
        rows.push(vec![
            latest.dataset.clone(),
            format!("v{}", latest.version),
            versions.len().to_string(),
            latest.files.to_string(),
            bytes(latest.bytes),
            time(latest.created_unix),
        ]);
    }
    // An empty store prints nothing on stdout, so scripts can test for it; people are told.
    if rows.len() > 1 {
        table(&rows);
    } else if !ctx.quiet && listing.damage.is_empty() {
        eprintln!("no datasets in {}", ctx.catalog.store().url());
    }
    Ok(name_damage(ctx, listing.damage))
}

async fn versions(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let listing = ctx.catalog.list_dataset(name).await?;
    if ctx.json {
        let all: Vec<_> = listing.committed().map(json::version).collect();
        json::print(&all.into());
        return Ok(name_damage(ctx, listing.damage));
    }
    let rows: Vec<Vec<String>> = listing
        .committed()
        .map(|v| {
            vec![
                v.label(),
                time(v.created_unix),
                output::count(v.files, "file"),
                bytes(v.bytes),
                output::path(v.message.as_bytes()),
            ]
        })
        .collect();
    table(&rows);
    Ok(name_damage(ctx, listing.damage))
}

/// Names on stderr, one line each, what a listing could not read, after what it could was
/// printed; the exit code tells scripts whether there was any (a damaged store fails `ls`,
/// though it shows everything else).
pub(super) fn name_damage(ctx: &Ctx, damage: Vec<CatalogError>) -> ExitCode {
    if damage.is_empty() {
        return ExitCode::SUCCESS;
    }
    for e in damage {
        eprintln!("{}", super::error_report(&e.into(), ctx.json));
    }
    ExitCode::FAILURE
}
