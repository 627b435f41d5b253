//! Local file errors in words for people: what `std::io::Error` says, without the
//! "(os error N)" that means nothing to them, nor the temporary paths some crates append.

use std::fmt;
use std::io::ErrorKind;

/// Displays why a local file operation failed, in lower case, to follow "cannot …: ".
pub struct Cause<'a>(pub &'a std::io::Error);

impl fmt::Display for Cause<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        let words = match e.kind() {
            ErrorKind::NotFound => "no such file or directory",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::NotADirectory => "a part of the path is a file, not a directory",
            ErrorKind::IsADirectory => "it is a directory",
            ErrorKind::AlreadyExists => "it already exists",
            ErrorKind::StorageFull => "no space left on the device",
            ErrorKind::QuotaExceeded => "disk quota exceeded",
            ErrorKind::ReadOnlyFilesystem => "the filesystem is read-only",
            ErrorKind::InvalidFilename => "the name is too long",
            _ => return f.write_str(&plain(e)),
        };
        f.write_str(words)
    }
}

/// The system's text for an error, without its number.
fn plain(e: &std::io::Error) -> String {
    let text = match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    };
    match text.find(" (os error") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
    .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::Cause;

    #[test]
    fn no_numbers_and_no_temporary_paths() {
        let e = std::fs::File::create("/nonexistent-dir/x").unwrap_err();
        assert_eq!(Cause(&e).to_string(), "no such file or directory");
        let wrapped = tempfile::Builder::new()
            .tempfile_in("/nonexistent-dir")
            .unwrap_err();
        assert_eq!(Cause(&wrapped).to_string(), "no such file or directory");
        let busy = std::io::Error::from_raw_os_error(libc::EBUSY);
        assert_eq!(Cause(&busy).to_string(), "device or resource busy");
    }
}
