//! Which store a command uses: --store, else DATASTORE_STORE, else a config file, else the
//! embedded local store under the user's data directory.

mod common;

use common::{Env, Kind};
use std::ffi::OsStr;
use std::path::Path;

fn has_refs(store: &Path, name: &str) -> bool {
    store.join("refs").join(name).is_dir()
}

#[test]
fn store_is_chosen_by_flag_then_environment_then_config_then_default() {
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"x").unwrap();
    let (flag, var, conf) = (env.dir("flag"), env.dir("var"), env.dir("conf"));
    let config_dir = env.dir("config/datastore");
    std::fs::write(
        config_dir.join("config.toml"),
        format!("store = \"{}\"\n", conf.display()),
    )
    .unwrap();
    let push = |name: &str, store_flag: Option<&Path>, store_var: Option<&Path>| {
        let mut args = vec![OsStr::new("push"), src.as_os_str(), OsStr::new(name)];
        if let Some(f) = store_flag {
            args.extend([OsStr::new("--store"), f.as_os_str()]);
        }
        let mut c = env.command(args);
        c.env_remove("DATASTORE_STORE");
        if let Some(v) = store_var {
            c.env("DATASTORE_STORE", v);
        }
        let out = common::wait(c.spawn().unwrap(), std::time::Duration::from_secs(60)).unwrap();
        assert!(out.status.success(), "{}", out.stderr);
    };
    push("by-flag", Some(&flag), Some(&var));
    push("by-var", None, Some(&var));
    push("by-config", None, None);
    assert!(has_refs(&flag, "by-flag") && !has_refs(&var, "by-flag"));
    assert!(has_refs(&var, "by-var") && !has_refs(&conf, "by-var"));
    assert!(has_refs(&conf, "by-config"));

    // Without a config file: the local store under the data directory.
    std::fs::remove_file(config_dir.join("config.toml")).unwrap();
    push("by-default", None, None);
    let default = env.scratch.path().join("data/datastore/store");
    assert!(has_refs(&default, "by-default"));
}

#[test]
fn a_broken_config_file_is_named() {
    let env = Env::new(Kind::Local);
    let config_dir = env.dir("config/datastore");
    std::fs::write(config_dir.join("config.toml"), "store = [unclosed\n").unwrap();
    let line = env.fails(["ls"], "config.toml");
    assert!(line.contains(&config_dir.display().to_string()), "{line}");
    std::fs::write(config_dir.join("config.toml"), "stroe = \"typo\"\n").unwrap();
    env.fails(["ls"], "stroe");
}

/// A store directory of another user, a file given as a store, and a store that cannot be
/// created are each one line naming the directory, and a push that fails on them leaves
/// nothing behind (not even an empty store).
#[test]
fn unusable_store_directories_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new(Kind::Local);
    let src = env.dir("src");
    std::fs::write(src.join("a"), b"a").unwrap();
    env.push(&src, "ds");
    let store = env.scratch.path().join("store");
    assert!(store.is_dir(), "the local store of this harness lives here");
    std::fs::set_permissions(env.scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = |args: &[&OsStr]| {
        let mut c = env.command(args);
        common::as_nobody(&mut c);
        common::wait(c.spawn().unwrap(), std::time::Duration::from_secs(60)).unwrap()
    };
    let out = as_nobody(&[OsStr::new("push"), src.as_os_str(), OsStr::new("other")]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let line = out.stderr.trim();
    assert!(!line.contains('\n'), "one line: {line}");
    assert_eq!(
        line,
        format!(
            "datastore: {}: no permission to write to the store directory {}; check its owner \
             and mode, or run as a user who may",
            store.display(),
            store.display()
        )
    );
    // A plain file as the store, and a store path through a file.
    let file = src.join("a");
    fn flag(p: &Path) -> [&OsStr; 2] {
        [OsStr::new("--store"), p.as_os_str()]
    }
    let mut ls = vec![OsStr::new("ls")];
    ls.extend(flag(&file));
    env.fails(&ls, "it is a file, not a directory; fix the store URL");
    let under = file.join("store");
    let mut push = vec![OsStr::new("push"), src.as_os_str(), OsStr::new("ds")];
    push.extend(flag(&under));
    let line = env.fails(
        &push,
        "as a store: a part of the path is a file, not a directory",
    );
    assert!(line.contains(&under.display().to_string()), "{line}");
    // A push refused for its arguments creates no store.
    let fresh = env.scratch.path().join("fresh-store");
    let missing = env.scratch.path().join("no-such-source");
    let mut push = vec![OsStr::new("push"), missing.as_os_str(), OsStr::new("ds")];
    push.extend(flag(&fresh));
    env.fails(&push, "does not exist");
    let mut push = vec![OsStr::new("push"), src.as_os_str(), OsStr::new("Bad Name")];
    push.extend(flag(&fresh));
    env.fails(&push, "Bad Name");
    assert!(
        !fresh.exists(),
        "a refused push created {}",
        fresh.display()
    );
}
