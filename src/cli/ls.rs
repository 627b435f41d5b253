use super::output::{self, bytes, path, table, time};
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
    let Some(target) = a.target else {
        return datasets(ctx).await;
    };
    let t = parse_target(&target)?;
    if !t.version_given && t.path.is_empty() {
        return versions(ctx, &t.dataset).await;
    }
    let o = open(&ctx.catalog, &t).await?;
    let m = &o.manifest;
    let entries: Vec<(usize, Vec<u8>)> = match (&m.entries[o.entry].kind, a.recursive) {
        (EntryKind::Dir { .. }, true) => o.manifest.walk(o.entry).into_iter().skip(1).collect(),
        (EntryKind::Dir { .. }, false) => m
            .children(o.entry)
            .map(|c| (c, m.name(&m.entries[c]).to_vec()))
            .collect(),
        _ => vec![(o.entry, m.name(&m.entries[o.entry]).to_vec())],
    };
    if a.long {
        let rows: Vec<Vec<String>> = entries.iter().map(|(i, p)| long_row(m, *i, p)).collect();
        table(&rows);
    } else {
        for (i, p) in &entries {
            let slash = if matches!(m.entries[*i].kind, EntryKind::Dir { .. }) {
                "/"
            } else {
                ""
            };
            println!("{}{slash}", path(p));
        }
    }
    Ok(ExitCode::SUCCESS)
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
    Ok(name_damage(listing.damage))
}

async fn versions(ctx: &Ctx, name: &str) -> Result<ExitCode> {
    let listing = ctx.catalog.list_dataset(name).await?;
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
    Ok(name_damage(listing.damage))
}

/// Names on stderr, one line each, what a listing could not read, after what it could was
/// printed; the exit code tells scripts whether there was any (a damaged store fails `ls`,
/// though it shows everything else).
pub(super) fn name_damage(damage: Vec<CatalogError>) -> ExitCode {
    if damage.is_empty() {
        return ExitCode::SUCCESS;
    }
    for e in damage {
        eprintln!("datastore: {}", super::error_line(&e.into()));
    }
    ExitCode::FAILURE
}
