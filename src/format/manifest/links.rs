//! Symlinks that would lead out of the tree.
//!
//! The kernel, not the daemon, follows a symlink of a mounted version: a target of
//! `../../etc/passwd`, or any absolute one, would send a training job's `open()` outside the
//! dataset, to whatever the node has there. Such links are refused when pushed and when a
//! manifest is opened. The check walks each target through the tree the way the kernel's
//! path walk would, expanding links on the way (a `..` after a link to a directory climbs from
//! where the link points, not from where it sits); a walk that stops at a missing name or a
//! loop goes nowhere, so it is safe.

use super::{EntryKind, Manifest};
use std::collections::VecDeque;

/// How many links one walk may expand before it counts as a loop, as in Linux (ELOOP).
const MAX_HOPS: usize = 40;
/// A bound on the whole check's work, so a hostile manifest cannot make a mount spin: far
/// beyond any real tree (a million links of a dozen components each).
const MAX_STEPS: u64 = 64 << 20;

/// Why a symlink is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LinkFault {
    Absolute,
    Escapes,
    TooComplex,
}

impl LinkFault {
    pub fn why(&self) -> &'static str {
        match self {
            LinkFault::Absolute => "an absolute target",
            LinkFault::Escapes => "climbs above the root",
            LinkFault::TooComplex => "too many links to check",
        }
    }
}

impl Manifest {
    /// The first symlink (by entry index) whose target leads outside the tree, and why.
    pub fn escaping_link(&self) -> Option<(usize, LinkFault)> {
        let mut steps = 0u64;
        for (i, e) in self.entries.iter().enumerate() {
            if let EntryKind::Symlink { target } = e.kind {
                if let Err(f) = self.walk_target(e.parent as usize, self.string(target), &mut steps)
                {
                    return Some((i, f));
                }
            }
        }
        None
    }

    /// The child of directory `dir` called `name` (children are sorted by name); `None` for a
    /// non-directory. `Manifest::child`, for everyone above this layer, is this search.
    pub(crate) fn child_named(&self, dir: usize, name: &[u8]) -> Option<usize> {
        let EntryKind::Dir { children } = self.entries[dir].kind else {
            return None;
        };
        let run = children.range();
        self.entries[run.clone()]
            .binary_search_by(|e| self.string(e.name).cmp(name))
            .ok()
            .map(|i| run.start + i)
    }

    /// The `/`-separated path of entry `i`, for messages.
    pub fn link_path(&self, mut i: usize) -> String {
        let mut parts = vec![];
        while i != 0 {
            parts.push(String::from_utf8_lossy(self.string(self.entries[i].name)).into_owned());
            i = self.entries[i].parent as usize;
        }
        parts.reverse();
        parts.join("/")
    }

    /// Walks `target` from directory `dir`; `Err` if the walk leaves the tree.
    fn walk_target(&self, dir: usize, target: &[u8], steps: &mut u64) -> Result<(), LinkFault> {
        if target.first() == Some(&b'/') {
            return Err(LinkFault::Absolute);
        }
        // The directories from the root down to where the walk is.
        let mut at = vec![dir];
        while let Some(&d) = at.last().filter(|&&d| d != 0) {
            at.push(self.entries[d].parent as usize);
            // Climbing to the root counts too: many links deep in a deep tree are work.
            *steps += 1;
        }
        if *steps > MAX_STEPS {
            return Err(LinkFault::TooComplex);
        }
        at.reverse();
        let mut todo: VecDeque<&[u8]> = target.split(|&b| b == b'/').collect();
        let mut hops = 0;
        while let Some(c) = todo.pop_front() {
            *steps += 1;
            if *steps > MAX_STEPS {
                return Err(LinkFault::TooComplex);
            }
            match c {
                b"" | b"." => {}
                b".." => {
                    if at.len() == 1 {
                        return Err(LinkFault::Escapes);
                    }
                    at.pop();
                }
                name => {
                    let here = *at.last().expect("the root is never popped");
                    // A missing name ends the kernel's walk with ENOENT.
                    let Some(child) = self.child_named(here, name) else {
                        return Ok(());
                    };
                    match self.entries[child].kind {
                        EntryKind::Dir { .. } => at.push(child),
                        // A file ends the walk: it is the target, or ENOTDIR.
                        EntryKind::File { .. } => return Ok(()),
                        EntryKind::Symlink { target } => {
                            hops += 1;
                            if hops > MAX_HOPS {
                                return Ok(());
                            }
                            let t = self.string(target);
                            if t.first() == Some(&b'/') {
                                return Err(LinkFault::Absolute);
                            }
                            for part in t.split(|&b| b == b'/').rev() {
                                todo.push_front(part);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
