use crate::format::name::parse_target;
use crate::mount::{control, mountpoint};
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Move a live mount to another version of its dataset, without unmounting.
///
/// Files open when it switches go on reading the version they were opened in until they are
/// closed; every lookup, listing and open after it sees the new version. A version that
/// cannot be opened (deleted, damaged, store unreachable) leaves the mount as it was. Only
/// the user who mounted it, or root, may switch a mount. A relative mount point is taken
/// under /datastores/, as for mount. `-o follow=DURATION` makes a mount of NAME@latest do this
/// by itself whenever a new version is pushed.
///
/// Examples:
///   datastore switch /datastores/imagenet imagenet@v4
///   datastore switch imagenet imagenet@latest
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The mount point, or the name of the dataset a mount serves.
    mountpoint: PathBuf,
    /// NAME@VER: the version to serve (VER: latest, vN or N).
    target: String,
}

pub fn run(a: Args, quiet: bool) -> Result<ExitCode> {
    let target = parse_target(&a.target)?;
    if !target.path.is_empty() {
        anyhow::bail!(
            "switch takes NAME@VER, not a path inside it ('{}')",
            a.target
        );
    }
    let point = mountpoint::find(&a.mountpoint)?;
    let done = control::switch(&point, &a.target).map_err(|e| match e {
        control::ControlError::Refused(why) => {
            anyhow::anyhow!("cannot switch {}: {why}", point.display())
        }
        e => e.into(),
    })?;
    if !quiet {
        println!("{}: {done}", point.display());
    }
    Ok(ExitCode::SUCCESS)
}
