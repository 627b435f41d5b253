//! Inode numbers across a switch of versions, and what the kernel must forget.
//!
//! The first version mounted numbers its entries by index (inode = index + 1, no table). A
//! switch numbers the new version against the live one, walking both trees side by side from
//! the root: an entry keeps the number it had when it has the same path and kind and, for a
//! file, the same size and SHA-256, for a link the same target. A number thus always means
//! one content, and the kernel may keep the pages it cached for it across the switch; only
//! its attributes are dropped if its mode or mtime changed. Every other entry gets a number
//! never given out before in this mount, so no inode the kernel still holds (an open file,
//! a process's working directory) can come to mean other content.
//!
//! What the kernel cached of the old version and is wrong for the new one is listed as
//! [`Invalidation`]s: each name that went, came (the kernel may hold a negative entry for it)
//! or now means another inode, in the directory that keeps its number (the kernel drops what
//! it knew below a forgotten name itself); and each kept inode whose attributes changed, or,
//! for a directory, whose listing changed.

use crate::format::{EntryKind, Manifest};
use crate::manifest::same_object;

/// Inode numbers of one version's entries.
pub enum Inodes {
    /// Inode = entry index + 1: the first version of a mount.
    Identity { entries: usize },
    /// Numbers given by a switch, by entry, and the entries sorted by number.
    Table {
        of_entry: Vec<u64>,
        by_ino: Vec<(u64, u32)>,
    },
}

impl Inodes {
    pub fn ino(&self, entry: usize) -> u64 {
        match self {
            Inodes::Identity { .. } => entry as u64 + 1,
            Inodes::Table { of_entry, .. } => of_entry[entry],
        }
    }

    /// The entry of inode `ino` in this version, if it has it.
    pub fn entry(&self, ino: u64) -> Option<usize> {
        match self {
            Inodes::Identity { entries } => {
                let i = ino.checked_sub(1)? as usize;
                (i < *entries).then_some(i)
            }
            Inodes::Table { by_ino, .. } => {
                let at = by_ino.binary_search_by_key(&ino, |&(n, _)| n).ok()?;
                Some(by_ino[at].1 as usize)
            }
        }
    }

    /// The lowest number above every number these inodes use.
    pub fn next_free(&self) -> u64 {
        match self {
            Inodes::Identity { entries } => *entries as u64 + 1,
            Inodes::Table { by_ino, .. } => by_ino.last().map_or(2, |&(n, _)| n + 1),
        }
    }
}

/// Something the kernel cached of the old version that the new one contradicts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Name `name` in directory `parent`: the kernel forgets it, positive or negative, and
    /// everything it knew below it.
    Entry { parent: u64, name: Vec<u8> },
    /// Inode `ino`'s attributes, and its pages (a directory's cached listing) if `pages`.
    Inode { ino: u64, pages: bool },
}

/// Numbers `new`'s entries against `old`'s (numbered by `old_inodes`), handing out fresh
/// numbers from `next`; returns them and what the kernel must forget.
pub fn renumber(
    old: &Manifest,
    old_inodes: &Inodes,
    new: &Manifest,
    next: &mut u64,
) -> (Inodes, Vec<Invalidation>) {
    let mut of_entry = vec![0u64; new.entries.len()];
    let mut forget = Vec::new();
    of_entry[0] = 1;
    let mut dirs = vec![(0usize, 0usize)];
    while let Some((od, nd)) = dirs.pop() {
        let ino = of_entry[nd];
        let mut listing_changed = false;
        let (mut a, mut b) = (old.children(od).peekable(), new.children(nd).peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(&x), Some(&y)) => old.name(&old.entries[x]).cmp(new.name(&new.entries[y])),
            };
            let name = match order {
                std::cmp::Ordering::Less => a.next().map(|x| old.name(&old.entries[x])),
                std::cmp::Ordering::Greater => b.next().map(|y| new.name(&new.entries[y])),
                std::cmp::Ordering::Equal => {
                    let (x, y) = (a.next().unwrap_or(0), b.next().unwrap_or(0));
                    let (ex, ey) = (&old.entries[x], &new.entries[y]);
                    if same_object(old, ex, new, ey) {
                        let kept = old_inodes.ino(x);
                        of_entry[y] = kept;
                        if ex.mode != ey.mode || ex.mtime != ey.mtime {
                            forget.push(Invalidation::Inode {
                                ino: kept,
                                pages: false,
                            });
                        }
                        if matches!(ey.kind, EntryKind::Dir { .. }) {
                            dirs.push((x, y));
                        }
                        None
                    } else {
                        Some(new.name(ey))
                    }
                }
            };
            if let Some(name) = name {
                listing_changed = true;
                forget.push(Invalidation::Entry {
                    parent: ino,
                    name: name.to_vec(),
                });
            }
        }
        let attrs_changed = {
            let (ex, ey) = (&old.entries[od], &new.entries[nd]);
            ex.mode != ey.mode || ex.mtime != ey.mtime
        };
        if listing_changed || (attrs_changed && nd == 0) {
            forget.push(Invalidation::Inode {
                ino,
                pages: listing_changed,
            });
        }
    }
    for n in of_entry.iter_mut().filter(|n| **n == 0) {
        *n = *next;
        *next += 1;
    }
    let mut by_ino: Vec<(u64, u32)> = of_entry
        .iter()
        .enumerate()
        .map(|(i, &n)| (n, i as u32))
        .collect();
    by_ino.sort_unstable();
    (Inodes::Table { of_entry, by_ino }, forget)
}

#[cfg(test)]
mod tests;
