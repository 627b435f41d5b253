//! `diff`: which paths were added, removed or changed between two versions.
//!
//! A path is changed when its kind, content digest, symlink target or permission bits differ;
//! a modification time alone is not a change.

use crate::format::{Entry, Manifest};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

/// The differences, sorted by path.
pub fn diff(a: &Manifest, b: &Manifest) -> Vec<(Change, Vec<u8>)> {
    let index = |m: &Manifest| -> BTreeMap<Vec<u8>, usize> {
        m.walk(0).into_iter().skip(1).map(|(i, p)| (p, i)).collect()
    };
    let (ia, ib) = (index(a), index(b));
    let mut out = Vec::new();
    for (path, &i) in &ia {
        match ib.get(path) {
            None => out.push((Change::Removed, path.clone())),
            Some(&j) if !same(a, &a.entries[i], b, &b.entries[j]) => {
                out.push((Change::Changed, path.clone()))
            }
            Some(_) => {}
        }
    }
    for path in ib.keys() {
        if !ia.contains_key(path) {
            out.push((Change::Added, path.clone()));
        }
    }
    out.sort_by(|x, y| x.1.cmp(&y.1));
    out
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
        let got: Vec<(Change, String)> = diff(&a, &b)
            .into_iter()
            .map(|(c, p)| (c, String::from_utf8(p).unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                (Change::Changed, "edit".into()),
                (Change::Removed, "gone".into()),
                (Change::Added, "new".into())
            ]
        );
    }
}
