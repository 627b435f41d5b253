//! Manifest images in the disk cache: a version mounted once on a node mounts again without
//! fetching or decoding its manifest (see [`crate::format::manifest::image`]).
//!
//! An image is named by the SHA-256 of the manifest it was decoded from, which was checked
//! before decoding, and its own checksum is checked whenever it is opened: a damaged image is
//! dropped and the manifest fetched again, never used. Images share the quota and the LRU with
//! the other entries; one evicted while mounted stays readable (its mapping holds the pages).

use super::put::expected_size;
use super::{entry::Bad, file_entry, DiskCache, Kind};
use crate::format::manifest::image::{self, ImageFault};
use crate::format::{Manifest, Sha256};
use bytes::Bytes;
use std::path::Path;
use std::time::SystemTime;

impl DiskCache {
    /// The manifest whose SHA-256 is `h`, from its image, if there is one and it is whole.
    /// Blocking: a few milliseconds for a million entries (the checksum reads the file).
    pub fn image(&self, h: &Sha256) -> Option<Manifest> {
        let key = (Kind::Manifest, *h);
        let path = self.path(key);
        let opened = std::fs::File::open(&path)
            .map_err(ImageFault::from)
            .and_then(|f| image::open(&f));
        match opened {
            Ok(m) => {
                self.served(key, &path, Ok(Bytes::new()));
                Some(m)
            }
            Err(ImageFault::Io(e)) => {
                self.served(key, &path, Err(Bad::from(e)));
                None
            }
            // Another build's: replaced by this one's when the manifest has been decoded.
            Err(ImageFault::Foreign) => {
                self.remove(key);
                None
            }
            Err(ImageFault::Damaged(why)) => {
                self.served(key, &path, Err(Bad::Damaged(why)));
                None
            }
        }
    }

    /// Keeps an image of `m`, the verified, decoded manifest whose SHA-256 is `h`. Blocking;
    /// failures are logged as for other entries.
    pub fn put_image(&self, h: &Sha256, m: &Manifest) {
        let size = expected_size(image::len_bound(m));
        if size > self.quota {
            return;
        }
        self.store((Kind::Manifest, *h), size, |tmp, path| {
            let mut f = tempfile::Builder::new()
                .prefix(&format!("{}-", std::process::id()))
                .tempfile_in(tmp)?;
            image::write(m, f.as_file_mut())?;
            f.as_file().set_modified(SystemTime::now())?;
            let size = file_entry::allocated(&f.as_file().metadata()?);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            f.persist(path).map_err(|e| e.error)?;
            Ok(size)
        });
    }
}

/// Checks an image on disk, for `datastore cache verify`.
pub(super) fn check(path: &Path) -> Result<(), Bad> {
    let f = std::fs::File::open(path)?;
    match image::open(&f) {
        Ok(_) => Ok(()),
        Err(ImageFault::Io(e)) => Err(Bad::from(e)),
        Err(ImageFault::Foreign) => Err(Bad::Damaged("written by another build")),
        Err(ImageFault::Damaged(why)) => Err(Bad::Damaged(why)),
    }
}
