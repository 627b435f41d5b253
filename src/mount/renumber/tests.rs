use super::*;
use crate::format::manifest::tests::build;
use crate::format::Sha256;

fn numbered(m: &Manifest) -> Inodes {
    Inodes::Identity {
        entries: m.entries.len(),
    }
}

fn at(m: &Manifest, path: &str) -> usize {
    if path.is_empty() {
        return 0;
    }
    let parts: Vec<&str> = path.split('/').collect();
    m.lookup(&parts).unwrap_or_else(|| panic!("{path} missing"))
}

fn entry(parent: u64, name: &str) -> Invalidation {
    Invalidation::Entry {
        parent,
        name: name.as_bytes().to_vec(),
    }
}

#[test]
fn an_unchanged_version_keeps_every_number_and_invalidates_nothing() {
    let m = build(&["a/x", "a/y", "b/", "l->t", "top"]);
    let mut next = numbered(&m).next_free();
    let (inodes, forget) = renumber(&m, &numbered(&m), &m, &mut next);
    assert!(forget.is_empty(), "{forget:?}");
    for i in 0..m.entries.len() {
        assert_eq!(inodes.ino(i), i as u64 + 1);
        assert_eq!(inodes.entry(i as u64 + 1), Some(i));
    }
    assert_eq!(next, m.entries.len() as u64 + 1, "no number handed out");
}

#[test]
fn changed_names_get_new_numbers_and_are_forgotten_in_the_directory_that_stays() {
    let old = build(&["a/x", "a/y", "b/", "keep", "l->t", "same"]);
    let mut new = build(&["a/x", "a/z", "b", "keep", "l->u", "n/deep", "same"]);
    let keep = at(&new, "keep");
    if let EntryKind::File { sha256, .. } = &mut new.entries[keep].kind {
        *sha256 = Sha256::of(b"other content");
    }
    let before = numbered(&old);
    let first_free = before.next_free();
    let mut next = first_free;
    let (inodes, forget) = renumber(&old, &before, &new, &mut next);
    let ino_old = |p: &str| before.ino(at(&old, p));
    let ino_new = |p: &str| inodes.ino(at(&new, p));
    for kept in ["a", "a/x", "same"] {
        assert_eq!(ino_new(kept), ino_old(kept), "{kept} keeps its number");
    }
    assert_eq!(ino_new(""), 1, "the root is always 1");
    for fresh in ["a/z", "b", "keep", "l", "n", "n/deep"] {
        assert!(ino_new(fresh) >= first_free, "{fresh} gets a new number");
    }
    let mut all: Vec<u64> = (0..new.entries.len()).map(|i| inodes.ino(i)).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), new.entries.len(), "numbers are distinct");
    for i in 0..new.entries.len() {
        assert_eq!(inodes.entry(inodes.ino(i)), Some(i));
    }
    assert_eq!(inodes.entry(ino_old("a/y")), None, "a/y is gone");
    let a = ino_old("a");
    let mut want = vec![
        entry(1, "b"),
        entry(1, "keep"),
        entry(1, "l"),
        entry(1, "n"),
        Invalidation::Inode {
            ino: 1,
            pages: true,
        },
        entry(a, "y"),
        entry(a, "z"),
        Invalidation::Inode {
            ino: a,
            pages: true,
        },
    ];
    let mut got = forget.clone();
    want.sort_by_key(|x| format!("{x:?}"));
    got.sort_by_key(|x| format!("{x:?}"));
    assert_eq!(got, want);
    assert_eq!(next, first_free + 6);
}

#[test]
fn new_attributes_of_the_same_content_drop_only_the_attributes() {
    let old = build(&["d/f"]);
    let mut new = old.clone();
    let f = at(&new, "d/f");
    new.entries[f].mode = 0o600;
    let before = numbered(&old);
    let mut next = before.next_free();
    let (inodes, forget) = renumber(&old, &before, &new, &mut next);
    assert_eq!(inodes.ino(f), before.ino(f));
    assert_eq!(
        forget,
        vec![Invalidation::Inode {
            ino: before.ino(f),
            pages: false
        }]
    );
}

#[test]
fn numbers_given_by_one_switch_carry_into_the_next() {
    let v1 = build(&["a", "b"]);
    let v2 = build(&["a", "c"]);
    let n1 = numbered(&v1);
    let mut next = n1.next_free();
    let (n2, _) = renumber(&v1, &n1, &v2, &mut next);
    let (n3, forget) = renumber(&v2, &n2, &v1, &mut next);
    assert_eq!(n3.ino(at(&v1, "a")), n1.ino(at(&v1, "a")));
    let b = n3.ino(at(&v1, "b"));
    assert!(b != n1.ino(at(&v1, "b")), "a name that came back is new");
    assert!(b != n2.ino(at(&v2, "c")));
    assert!(forget.contains(&entry(1, "b")) && forget.contains(&entry(1, "c")));
    assert_eq!(n3.next_free(), next);
}
