//! `diff`: which paths were added, removed or changed between two versions.
//!
//! A path is changed when its kind, content digest, symlink target or permission bits differ;
//! a modification time alone is not a change. A directory that went (or came) is listed with
//! everything it held.

use crate::format::{Entry, EntryKind, Manifest};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// Calls `each` with every difference, in tree order: a directory before what it holds, names
/// in byte order within a directory. Both trees are walked side by side (children are sorted
/// in a manifest), one path buffer cut back and extended as the walk goes, so memory is in
/// proportion to the trees' depth, not to the sum of their paths.
pub fn diff(a: &Manifest, b: &Manifest, each: &mut dyn FnMut(Change, &[u8])) {
    use std::cmp::Ordering;
    // Directories being compared: the children of each side still to see, and the length of
    // the directory's path.
    let mut stack = vec![(a.children(0), b.children(0), 0usize)];
    let mut path = Vec::new();
    while let Some(top) = stack.last_mut() {
        let (na, nb) = (top.0.clone().next(), top.1.clone().next());
        let order = match (na, nb) {
            (None, None) => {
                stack.pop();
                continue;
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(i), Some(j)) => a.name(&a.entries[i]).cmp(b.name(&b.entries[j])),
        };
        let base = top.2;
        let (i, j) = match order {
            Ordering::Less => (top.0.next(), None),
            Ordering::Greater => (None, top.1.next()),
            Ordering::Equal => (top.0.next(), top.1.next()),
        };
        path.truncate(base);
        if base > 0 {
            path.push(b'/');
        }
        let name = match (i, j) {
            (Some(i), _) => a.name(&a.entries[i]),
            (_, Some(j)) => b.name(&b.entries[j]),
            (None, None) => unreachable!("one side has a next child"),
        };
        path.extend_from_slice(name);
        match (i, j) {
            (Some(i), None) => subtree(a, i, &path, Change::Removed, each),
            (None, Some(j)) => subtree(b, j, &path, Change::Added, each),
            (Some(i), Some(j)) => {
                let (ea, eb) = (&a.entries[i], &b.entries[j]);
                if !same(a, ea, b, eb) {
                    each(Change::Changed, &path);
                }
                let is_dir = |e: &Entry| matches!(e.kind, EntryKind::Dir { .. });
                match (is_dir(ea), is_dir(eb)) {
                    (true, true) => stack.push((a.children(i), b.children(j), path.len())),
                    (true, false) => below(a, i, &path, Change::Removed, each),
                    (false, true) => below(b, j, &path, Change::Added, each),
                    (false, false) => {}
                }
            }
            (None, None) => {}
        }
    }
}

/// `entry` at `at` and everything under it, all added or all removed.
fn subtree(m: &Manifest, entry: usize, at: &[u8], c: Change, each: &mut dyn FnMut(Change, &[u8])) {
    each(c, at);
    below(m, entry, at, c, each);
}

/// Everything under `entry` (at `at`), all added or all removed.
fn below(m: &Manifest, entry: usize, at: &[u8], c: Change, each: &mut dyn FnMut(Change, &[u8])) {
    let mut full = at.to_vec();
    let mut walk = m.walk(entry);
    walk.next_entry(); // `entry` itself
    while let Some((_, rel)) = walk.next_entry() {
        full.truncate(at.len());
        full.push(b'/');
        full.extend_from_slice(rel);
        each(c, &full);
    }
}

fn same(ma: &Manifest, a: &Entry, mb: &Manifest, b: &Entry) -> bool {
    a.mode == b.mode && crate::manifest::same_object(ma, a, mb, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::tests::build;

    #[test]
    fn added_removed_changed() {
        let a = build(&["keep", "gone", "d/x", "edit"]);
        let mut b = build(&["keep", "new", "d/x", "edit"]);
        let e = b.lookup(&["edit"]).unwrap();
        b.entries[e].mode = 0o600;
        let mut got: Vec<(Change, String)> = Vec::new();
        diff(&a, &b, &mut |c, p| {
            got.push((c, String::from_utf8(p.to_vec()).unwrap()))
        });
        assert_eq!(
            got,
            [
                (Change::Changed, "edit".into()),
                (Change::Removed, "gone".into()),
                (Change::Added, "new".into())
            ]
        );
    }

    #[test]
    fn directories_that_come_go_or_change_kind_bring_what_they_hold() {
        let a = build(&["d/x", "f", "gone/a/b", "k/z", "same/s"]);
        let b = build(&["d/x", "d/y", "f/q", "k", "same/s"]);
        let mut got: Vec<(Change, String)> = Vec::new();
        diff(&a, &b, &mut |c, p| {
            got.push((c, String::from_utf8(p.to_vec()).unwrap()))
        });
        use Change::*;
        let want: Vec<(Change, String)> = [
            (Added, "d/y"),
            (Changed, "f"),
            (Added, "f/q"),
            (Removed, "gone"),
            (Removed, "gone/a"),
            (Removed, "gone/a/b"),
            (Changed, "k"),
            (Removed, "k/z"),
        ]
        .into_iter()
        .map(|(c, p)| (c, p.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
