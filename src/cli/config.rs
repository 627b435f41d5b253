//! Which store a command uses: `--store`, else `DATASTORE_STORE` (both read in `cli`), else
//! the `store` key of a config file, else a local directory under the user's data dir.
//!
//! Config files are `/etc/datastore/config.toml` and `<user config dir>/datastore/config.toml`;
//! a key in the user's file overrides the same key in the system file.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub store: Option<String>,
    pub timeout_secs: Option<u64>,
    /// The disk cache of mounts: directory and size (`200G` or `80%`).
    pub cache_dir: Option<std::path::PathBuf>,
    pub cache_size: Option<String>,
    /// A shared HTTP cache tier content is read through.
    pub cache_url: Option<String>,
}

impl Config {
    fn merge(self, over: Config) -> Config {
        Config {
            store: over.store.or(self.store),
            timeout_secs: over.timeout_secs.or(self.timeout_secs),
            cache_dir: over.cache_dir.or(self.cache_dir),
            cache_size: over.cache_size.or(self.cache_size),
            cache_url: over.cache_url.or(self.cache_url),
        }
    }
}

/// The config files read, lowest precedence first.
pub fn config_paths() -> Vec<PathBuf> {
    let mut v = vec![PathBuf::from("/etc/datastore/config.toml")];
    if let Some(dir) = dirs::config_dir() {
        v.push(dir.join("datastore/config.toml"));
    }
    v
}

/// Reads and merges the config files that exist.
pub fn load() -> Result<Config> {
    let mut cfg = Config::default();
    for path in config_paths() {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let file: Config = toml::from_str(&text).map_err(|e| {
            let msg = e.message().to_string();
            anyhow::anyhow!("invalid config file {}: {msg}", path.display())
        })?;
        cfg = cfg.merge(file);
    }
    Ok(cfg)
}

impl Config {
    /// The cache directory and size in effect, given what the command line said.
    pub fn cache(
        &self,
        dir: Option<std::path::PathBuf>,
        size: Option<crate::cache::CacheSize>,
    ) -> Result<(std::path::PathBuf, crate::cache::CacheSize)> {
        use crate::cache::{default_dir, CacheSize, DEFAULT_SIZE};
        let size = match (size, &self.cache_size) {
            (Some(s), _) => s,
            (None, Some(text)) => CacheSize::parse(text).with_context(|| {
                format!("invalid cache_size '{text}' in the config file: use a size such as 200G or 80%")
            })?,
            (None, None) => DEFAULT_SIZE,
        };
        let dir = dir
            .or_else(|| self.cache_dir.clone())
            .unwrap_or_else(default_dir);
        Ok((dir, size))
    }
}

/// The embedded default: a local store that needs no account and no setup.
pub fn default_store() -> Result<String> {
    let base = dirs::data_dir()
        .context("no data directory for this user; pass --store or set DATASTORE_STORE")?;
    Ok(base.join("datastore/store").display().to_string())
}
