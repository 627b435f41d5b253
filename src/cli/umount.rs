use crate::mount::mountpoint;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;

/// Unmount a datastore mount (also one whose daemon was killed).
///
/// A relative mount point is taken under /datastores/, as for mount; a dataset's name finds
/// the one mount serving it. The daemon serving the mount exits once it is unmounted.
///
/// Examples:
///   datastore umount /datastores/imagenet
///   datastore umount imagenet --lazy
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The mount point, or the name of the dataset a mount serves.
    mountpoint: PathBuf,
    /// Detach now even if files are open there; the mount goes once they are closed.
    #[arg(short = 'l', long)]
    lazy: bool,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let point = mountpoint::find(&a.mountpoint)?;
    mountpoint::unmount(&point, a.lazy)?;
    Ok(ExitCode::SUCCESS)
}
