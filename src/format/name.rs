//! Dataset names and the `NAME[@VER][/PATH]` syntax every command takes.

use std::fmt;

/// The longest dataset name accepted.
pub const MAX_DATASET_NAME: usize = 128;

/// Which version of a dataset a command means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSel {
    Latest,
    Number(u64),
}

impl fmt::Display for VersionSel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSel::Latest => f.write_str("latest"),
            VersionSel::Number(n) => write!(f, "v{n}"),
        }
    }
}

/// A parsed `NAME[@VER][/PATH]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub dataset: String,
    pub version: VersionSel,
    /// Whether `@VER` was written (some commands treat a bare NAME differently).
    pub version_given: bool,
    /// Path components inside the version; empty for the root.
    pub path: Vec<String>,
}

impl Target {
    /// The path inside the version, `/`-joined, for messages.
    pub fn path_display(&self) -> String {
        format!("/{}", self.path.join("/"))
    }
}

/// A name or target that cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid dataset name '{0}': use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128 characters)")]
    Dataset(String),
    #[error("invalid version '{0}': use 'latest', 'vN' or 'N' (for example imagenet@v3)")]
    Version(String),
    #[error("invalid path '{0}' in '{1}': '..' is not allowed; give a path inside the dataset")]
    Path(String, String),
    #[error("no dataset name in '{0}': give NAME[@VER][/PATH], for example imagenet@v3")]
    NoDataset(String),
}

/// Checks a dataset name against `[a-z0-9][a-z0-9._-]*`.
pub fn check_dataset_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_DATASET_NAME
        && name.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase()
                || b.is_ascii_digit()
                || (i > 0 && matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::Dataset(name.escape_debug().to_string()))
    }
}

/// Parses `latest`, `vN` or `N`.
pub fn parse_version(s: &str) -> Result<VersionSel, NameError> {
    if s == "latest" {
        return Ok(VersionSel::Latest);
    }
    let digits = s.strip_prefix('v').unwrap_or(s);
    match digits.parse::<u64>() {
        Ok(n) if n > 0 && !digits.starts_with('+') => Ok(VersionSel::Number(n)),
        _ => Err(NameError::Version(s.to_string())),
    }
}

/// Parses `NAME[@VER][/PATH]`.
pub fn parse_target(s: &str) -> Result<Target, NameError> {
    let (head, path) = match s.find('/') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let (name, version, version_given) = match head.split_once('@') {
        Some((n, v)) => (n, parse_version(v)?, true),
        None => (head, VersionSel::Latest, false),
    };
    if name.is_empty() {
        return Err(NameError::NoDataset(s.to_string()));
    }
    check_dataset_name(name)?;
    let mut components = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(NameError::Path(path.to_string(), s.to_string())),
            c => components.push(c.to_string()),
        }
    }
    Ok(Target {
        dataset: name.to_string(),
        version,
        version_given,
        path: components,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_names() {
        for ok in ["imagenet", "a", "0", "coco-2017_v1.2"] {
            assert!(check_dataset_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Imagenet",
            "-x",
            ".x",
            "a/b",
            "a b",
            "a\0b",
            "..",
            "é",
            &"a".repeat(129),
        ] {
            assert!(check_dataset_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn targets() {
        let t = parse_target("imagenet@v3/train/a.jpg").unwrap();
        assert_eq!(t.dataset, "imagenet");
        assert_eq!(t.version, VersionSel::Number(3));
        assert_eq!(t.path, ["train", "a.jpg"]);
        assert!(t.version_given);
        let t = parse_target("imagenet").unwrap();
        assert_eq!((t.version, t.version_given), (VersionSel::Latest, false));
        assert!(t.path.is_empty());
        assert_eq!(parse_target("x@7").unwrap().version, VersionSel::Number(7));
        assert_eq!(parse_target("x@latest/").unwrap().path.len(), 0);
        assert_eq!(parse_target("x/./a//b").unwrap().path, ["a", "b"]);
        assert!(matches!(parse_target("x/../etc"), Err(NameError::Path(..))));
        for bad in ["x@v0", "x@vv1", "x@", "x@-1", "x@+1", "x@v1.5"] {
            assert!(
                matches!(parse_target(bad), Err(NameError::Version(_))),
                "{bad}"
            );
        }
        assert!(matches!(parse_target("X@v1"), Err(NameError::Dataset(_))));
        for nameless in ["@v1", "", "/a", "@v1/a"] {
            assert!(
                matches!(parse_target(nameless), Err(NameError::NoDataset(_))),
                "{nameless}"
            );
        }
    }
}
