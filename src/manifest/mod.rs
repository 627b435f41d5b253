//! An opened version: finding entries by path and walking subtrees.
//!
//! The manifest's layout (children of a directory contiguous and sorted) makes a lookup a
//! binary search per path component, with nothing built at open time.

use crate::format::{Entry, EntryKind, Manifest};
use std::ops::Range;

impl Manifest {
    /// The entries directly inside directory `dir` (empty for a non-directory).
    pub fn children(&self, dir: usize) -> Range<usize> {
        match self.entries.get(dir).map(|e| &e.kind) {
            Some(EntryKind::Dir { children }) => children.range(),
            _ => 0..0,
        }
    }

    /// The child of `dir` called `name` (the same search validation walks symlinks with).
    pub fn child(&self, dir: usize, name: &[u8]) -> Option<usize> {
        self.child_named(dir, name)
    }

    /// The entry at `path` (components from the root), if there is one.
    pub fn lookup<S: AsRef<[u8]>>(&self, path: &[S]) -> Option<usize> {
        path.iter()
            .try_fold(0, |dir, c| self.child(dir, c.as_ref()))
    }

    /// The name of an entry (empty for the root).
    pub fn name(&self, e: &Entry) -> &[u8] {
        self.string(e.name)
    }

    /// The `/`-separated path of an entry from the root.
    pub fn path_of(&self, mut idx: usize) -> Vec<u8> {
        let mut parts = Vec::new();
        while idx != 0 {
            let e = &self.entries[idx];
            parts.push(self.name(e));
            idx = e.parent as usize;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// Every entry under `start` (itself first), depth first, each with its path relative to
    /// `start` (empty for `start` itself).
    pub fn walk(&self, start: usize) -> Vec<(usize, Vec<u8>)> {
        let mut out = Vec::new();
        let mut stack = vec![(start, Vec::new())];
        while let Some((idx, path)) = stack.pop() {
            for c in self.children(idx).rev() {
                let mut p = path.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(self.name(&self.entries[c]));
                stack.push((c, p));
            }
            out.push((idx, path));
        }
        out
    }
}

/// Whether entry `a` of `ma` and entry `b` of `mb` are one object, whatever their mode and
/// mtime: the same kind and, for a file, the same size and SHA-256, for a symlink the same
/// target (every directory is the same object as every other).
pub fn same_object(ma: &Manifest, a: &Entry, mb: &Manifest, b: &Entry) -> bool {
    match (&a.kind, &b.kind) {
        (EntryKind::Dir { .. }, EntryKind::Dir { .. }) => true,
        (
            EntryKind::File {
                sha256: x,
                size: sx,
                ..
            },
            EntryKind::File {
                sha256: y,
                size: sy,
                ..
            },
        ) => x == y && sx == sy,
        (EntryKind::Symlink { target: x }, EntryKind::Symlink { target: y }) => {
            ma.string(*x) == mb.string(*y)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::format::manifest::tests::build;

    #[test]
    fn lookup_and_walk() {
        let m = build(&["a/b/c.txt", "a/d.txt", "e/", "z"]);
        let c = m.lookup(&["a", "b", "c.txt"]).unwrap();
        assert_eq!(m.path_of(c), b"a/b/c.txt");
        assert_eq!(m.lookup::<&str>(&[]), Some(0));
        assert_eq!(m.lookup(&["a", "nope"]), None);
        assert_eq!(m.lookup(&["z", "x"]), None);
        let a = m.lookup(&["a"]).unwrap();
        let paths: Vec<String> = m
            .walk(a)
            .into_iter()
            .map(|(_, p)| String::from_utf8(p).unwrap())
            .collect();
        assert_eq!(paths, ["", "b", "b/c.txt", "d.txt"]);
        assert_eq!(m.walk(0).len(), m.entries.len());
    }
}
