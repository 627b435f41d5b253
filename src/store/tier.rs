//! A shared cache tier: an HTTP cache (a stock nginx, `deploy/nginx/datastore-cache.conf`) in
//! front of the store, so that many nodes reading one dataset make one store request per
//! object between them.
//!
//! Only content goes through it (chunks, packs and manifests, named by their SHA-256 and
//! never rewritten; never refs, which say what `@latest` is), so whatever the tier holds can
//! be cached forever, and a poisoned or damaged tier cannot make a reader get wrong bytes:
//! everything from it is verified like bytes from the store, and a mismatch is fetched from
//! the store directly, while the tier is told to fetch that object again
//! (`X-Datastore-Refresh`, as CVMFS sends `no-cache` to its proxies).
//!
//! The tier holds no credentials. Each request carries a presigned GET URL of the object,
//! made with the node's credentials: the daemon asks the tier for the URL's path and query,
//! the tier passes them to the store as they are and keys its cache on the path alone, so one
//! node's fetch serves every node after it. (RFC 9111 forbids a shared cache to reuse
//! responses to requests with an `Authorization` header, which is why the signature travels in
//! the query.) A secret header, `X-Datastore-Tier`, from `DATASTORE_CACHE_SECRET`, keeps
//! others from reading through the tier. A tier that fails or is slower than its timeout is
//! left alone for [`DOWN_FOR`], reads going to the store meanwhile.

use super::{Landing, Store};
use crate::format::Sha256;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a tier request may take before the store is asked instead (or the store's
/// timeout, if shorter).
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a tier that failed is left alone.
pub const DOWN_FOR: Duration = Duration::from_secs(30);
/// How long a presigned URL stays valid: the tier uses it at once, and caches by path.
const SIGNED_FOR: Duration = Duration::from_secs(15 * 60);
/// The header that carries the shared secret, and the one that asks for a fresh copy.
pub const SECRET_HEADER: &str = "X-Datastore-Tier";
pub const REFRESH_HEADER: &str = "X-Datastore-Refresh";

/// A bad tier setting.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("cache_url '{0}' is not an http:// or https:// URL (e.g. http://cache.internal:8080)")]
    BadUrl(String),
    #[error("cache_url: {0}")]
    Client(String),
}

/// The tier, and whether it is usable now.
#[derive(Debug)]
pub struct Tier {
    base: url::Url,
    secret: Option<String>,
    client: reqwest::Client,
    timeout: Duration,
    down_since: Mutex<Option<Instant>>,
}

impl Tier {
    /// The tier at `url` (`http://HOST:PORT[/PATH]`); requests fail over to the store after
    /// `timeout`.
    pub fn new(url: &str, secret: Option<String>, timeout: Duration) -> Result<Tier, TierError> {
        let base = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| TierError::BadUrl(url.to_string()))?;
        let client = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .build()
            .map_err(|e| TierError::Client(e.to_string()))?;
        Ok(Tier {
            base,
            secret,
            client,
            timeout,
            down_since: Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What went wrong with a request, in a few words.
    fn why(&self, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("no answer within {}s", self.timeout.as_secs_f64())
        } else if e.is_connect() {
            "cannot connect".into()
        } else {
            format!("the request failed ({})", crate::store::one_line(e))
        }
    }

    fn usable(&self) -> bool {
        let mut down = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        match *down {
            Some(t) if t.elapsed() < DOWN_FOR => false,
            Some(_) => {
                *down = None;
                true
            }
            None => true,
        }
    }

    fn failed(&self, why: &str) {
        let mut down = self.down_since.lock().unwrap_or_else(|e| e.into_inner());
        if down.is_none() {
            tracing::warn!(
                "cache tier {}: {why}; reading from the store for {}s",
                self.base,
                DOWN_FOR.as_secs()
            );
        }
        *down = Some(Instant::now());
        metrics::counter!(crate::metrics::TIER_FAILURES).increment(1);
    }

    /// Bytes of `key` of `store` (a range, or the whole object) through the tier, with their
    /// SHA-256 taken as they arrive, in a reused buffer, cut one byte past `most` (as the
    /// store's own GETs are: a tier that sends too much is never held whole); `None` when the
    /// tier cannot give them now (the caller reads the store). `refresh` asks the tier to
    /// fetch the object from the store again, replacing what it holds.
    pub async fn get(
        &self,
        store: &Store,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        most: usize,
        refresh: bool,
    ) -> Option<(Bytes, Sha256)> {
        if !self.usable() {
            return None;
        }
        let signed = store.signed_get(key, SIGNED_FOR).await?;
        let mut url = self.base.clone();
        let base_path = self.base.path().trim_end_matches('/');
        url.set_path(&format!("{base_path}{}", signed.path()));
        url.set_query(signed.query());
        let mut req = self.client.get(url).timeout(self.timeout);
        if let Some(s) = &self.secret {
            req = req.header(SECRET_HEADER, s);
        }
        if refresh {
            req = req.header(REFRESH_HEADER, "1");
        }
        if let Some(r) = &range {
            req = req.header(
                "Range",
                format!("bytes={}-{}", r.start, r.end.saturating_sub(1)),
            );
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.failed(&self.why(&e));
                return None;
            }
        };
        let status = resp.status();
        let expected = if range.is_some() { 206 } else { 200 };
        if status.as_u16() != expected {
            // An object the store lacks is the store's to report; anything else (a refused
            // secret, a store error, a range not honoured) is the tier's.
            if status.as_u16() != 404 {
                self.failed(&format!("answered {status} for {key}"));
            }
            return None;
        }
        let expected = resp.content_length().map_or(0, |n| n as usize);
        let mut landing = Landing::new(crate::buffers::shared(), most, expected);
        loop {
            match resp.chunk().await {
                Ok(Some(piece)) if landing.take(&piece) => {}
                Ok(_) => break,
                Err(e) => {
                    self.failed(&self.why(&e));
                    return None;
                }
            }
        }
        let (data, sha256) = landing.done();
        metrics::counter!(crate::metrics::TIER_BYTES).increment(data.len() as u64);
        Some((data, sha256))
    }

    /// The tier answered `key` with other bytes than the object's: counted, logged, and
    /// the tier asked, in the background, to fetch it from the store again.
    pub fn mismatched(self: &Arc<Self>, store: &Store, key: &str) {
        metrics::counter!(crate::metrics::TIER_MISMATCHES).increment(1);
        tracing::warn!(
            "{key}: the cache tier answered with bytes that do not match its SHA-256; \
             reading it from the store, and telling the tier to fetch it again"
        );
        let (tier, store, key) = (self.clone(), store.clone(), key.to_string());
        tokio::spawn(async move { tier.get(&store, &key, None, usize::MAX, true).await });
    }
}
