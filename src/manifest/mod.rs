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
    pub fn walk(&self, start: usize) -> Walk<'_> {
        Walk {
            m: self,
            stack: Vec::new(),
            path: Vec::new(),
            start: Some(start),
        }
    }
}

/// A walk of a subtree, depth first, children in order. One path buffer is cut back and
/// extended as the walk goes, and only the directories above the current entry are
/// remembered, so a walk takes memory in proportion to the tree's depth, however long its
/// paths: collecting every path instead costs the sum of their lengths, quadratic in depth.
pub struct Walk<'m> {
    m: &'m Manifest,
    /// For each directory above: its children still to visit, and the length of the path
    /// of that directory (where its children's names are appended).
    stack: Vec<(Range<usize>, usize)>,
    path: Vec<u8>,
    start: Option<usize>,
}

impl Walk<'_> {
    /// The next entry and its path relative to the start (valid until the next call).
    pub fn next_entry(&mut self) -> Option<(usize, &[u8])> {
        if let Some(start) = self.start.take() {
            self.stack.push((self.m.children(start), 0));
            return Some((start, &self.path));
        }
        loop {
            let (children, base) = self.stack.last_mut()?;
            let Some(c) = children.next() else {
                self.stack.pop();
                continue;
            };
            let base = *base;
            self.path.truncate(base);
            if base > 0 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(self.m.name(&self.m.entries[c]));
            self.stack.push((self.m.children(c), self.path.len()));
            return Some((c, &self.path));
        }
    }

    /// The entries alone, in walk order.
    pub fn indices(mut self) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some((i, _)) = self.next_entry() {
            out.push(i);
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
        let mut paths = Vec::new();
        let mut w = m.walk(a);
        while let Some((_, p)) = w.next_entry() {
            paths.push(String::from_utf8(p.to_vec()).unwrap());
        }
        assert_eq!(paths, ["", "b", "b/c.txt", "d.txt"]);
        assert_eq!(m.walk(0).indices().len(), m.entries.len());
    }
}
