//! Leases that keep `gc` and `push` from running over each other.
//!
//! A push may reuse a blob that no version references yet (left by an earlier, interrupted
//! push, or by a deleted version), so gc must never delete while a push runs. Each side writes
//! its lease first and looks for the other's second, so of any two that overlap at least one
//! sees the other: a push waits until no gc lease is fresh; a gc gives up when it sees a push,
//! and looks again before every batch of deletes. Leases are refreshed by a heartbeat; one not
//! refreshed for [`LEASE_TTL`] (its holder crashed) is ignored. Freshness is judged against the
//! store's own timestamp of our lease, so clocks that disagree between machines do not matter.

use crate::catalog::unix_now;
use crate::format::lease::{Detail, Lease as LeaseInfo};
use crate::store::{keys, Listed, Store, StoreError};
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// A lease not refreshed for this long belongs to a process that is gone.
pub const LEASE_TTL: Duration = Duration::from_secs(90);
/// How long the record of a failed push is kept for `datastore status`.
pub const FAILURES_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Records of failed pushes: `locks/failed-push-UUID`.
const FAILED: &str = "failed-push-";

/// What a lease says of its holder's progress, asked again at every heartbeat.
pub type DetailSource = Arc<dyn Fn() -> Detail + Send + Sync>;
const HEARTBEAT: Duration = Duration::from_secs(15);

/// What a lease protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Push,
    Gc,
}

impl Operation {
    fn prefix(self) -> &'static str {
        match self {
            Operation::Push => "push-",
            Operation::Gc => "gc-",
        }
    }
}

/// Another process's live lease, as shown to users.
#[derive(Clone, Debug)]
pub struct Holder {
    pub info: Option<LeaseInfo>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.info {
            Some(i) => write!(f, "{} by pid {} on {}", i.operation, i.pid, i.host),
            None => f.write_str("an unreadable lease"),
        }
    }
}

/// A held lease; refreshed in the background until [`Lease::release`] or [`Lease::fail`].
pub struct Lease {
    store: Store,
    key: String,
    info: LeaseInfo,
    detail: Option<DetailSource>,
    heartbeat: tokio::task::JoinHandle<()>,
    refresh: Refresh,
}

/// Writes a lease again, with its holder's detail as it is then.
#[derive(Clone)]
pub struct Refresh {
    store: Store,
    key: String,
    body: Arc<dyn Fn() -> Bytes + Send + Sync>,
}

impl Refresh {
    /// Writes the lease now; a failure is logged, and the next heartbeat tries again.
    pub async fn now(&self) {
        if let Err(e) = self.store.put(&self.key, (self.body)()).await {
            tracing::warn!("could not refresh lease {}: {e}", self.key);
        }
    }
}

impl Lease {
    /// Writes a lease for `op` and starts its heartbeat.
    pub async fn acquire(store: &Store, op: Operation) -> Result<Lease, StoreError> {
        Self::acquire_with(store, op, None).await
    }

    /// Writes a lease for `op` that also tells how its holder is doing (`detail`, asked at
    /// every heartbeat), and starts its heartbeat.
    pub async fn acquire_with(
        store: &Store,
        op: Operation,
        detail: Option<DetailSource>,
    ) -> Result<Lease, StoreError> {
        let key = format!("{}{}{}", keys::LOCKS, op.prefix(), uuid::Uuid::new_v4());
        let info = LeaseInfo {
            operation: match op {
                Operation::Push => "push".into(),
                Operation::Gc => "gc".into(),
            },
            host: crate::host::name(),
            pid: std::process::id(),
            started_unix: unix_now(),
        };
        let body = {
            let (info, detail) = (info.clone(), detail.clone());
            move || Bytes::from(info.encode(&detail.as_ref().map(|d| d()).unwrap_or_default()))
        };
        store.put(&key, body()).await?;
        let refresh = Refresh {
            store: store.clone(),
            key: key.clone(),
            body: Arc::new(body),
        };
        let beat = refresh.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                beat.now().await;
            }
        });
        Ok(Lease {
            store: store.clone(),
            key,
            info,
            detail,
            heartbeat,
            refresh,
        })
    }

    /// What writes the lease again between heartbeats, for news worth showing at once (a
    /// push's totals, known once its walk ends).
    pub fn refresher(&self) -> Refresh {
        self.refresh.clone()
    }

    /// The store's idea of now: the time it gave our lease when last refreshed. Ages of objects
    /// are judged against it, so a machine with a wrong clock cannot make young objects look old.
    pub async fn store_now(&self) -> Result<SystemTime, StoreError> {
        let listed = self.store.list(keys::LOCKS).await?;
        Ok(Self::own_time(&listed, &self.key))
    }

    fn own_time(listed: &[Listed], key: &str) -> SystemTime {
        listed
            .iter()
            .find(|l| l.key == key)
            .map_or_else(SystemTime::now, |l| l.modified)
    }

    /// Fresh leases of `op` held by others.
    pub async fn others(&self, op: Operation) -> Result<Vec<Holder>, StoreError> {
        let listed = self.store.list(keys::LOCKS).await?;
        let now = Self::own_time(&listed, &self.key);
        let prefix = format!("{}{}", keys::LOCKS, op.prefix());
        let mut out = Vec::new();
        for l in listed
            .iter()
            .filter(|l| l.key.starts_with(&prefix) && l.key != self.key)
        {
            if is_fresh(l, now) {
                let info = match self.store.get(&l.key).await {
                    Ok(b) => LeaseInfo::decode(&b).ok().map(|(info, _)| info),
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                };
                out.push(Holder { info });
            }
        }
        Ok(out)
    }

    /// Waits until no fresh lease of `op` remains, for at most `max_wait`; returns the holders
    /// still there when it gives up.
    pub async fn wait_for_none(
        &self,
        op: Operation,
        max_wait: Duration,
    ) -> Result<Vec<Holder>, StoreError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let holders = self.others(op).await?;
            if holders.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(holders);
            }
            tracing::info!("waiting for {} to finish", holders[0]);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops the heartbeat and deletes the lease.
    pub async fn release(self) {
        self.heartbeat.abort();
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!("could not delete lease {}: {e}", self.key);
        }
    }

    /// Releases the lease of an operation that failed, leaving a record of why for
    /// `datastore status` (kept [`FAILURES_KEPT`]; older records go as this one is written).
    /// Best effort: the store may be what failed.
    pub async fn fail(self, reason: String) {
        let mut detail = self.detail.as_ref().map(|d| d()).unwrap_or_default();
        detail.failure = Some(reason);
        detail.updated_unix = unix_now();
        let record = format!("{}{FAILED}{}", keys::LOCKS, uuid::Uuid::new_v4());
        let body = Bytes::from(self.info.encode(&detail));
        if let Err(e) = self.store.put(&record, body).await {
            tracing::debug!("could not record the failure in {record}: {e}");
        }
        if let Ok(listed) = self.store.list(keys::LOCKS).await {
            let now = Self::own_time(&listed, &self.key);
            let old = listed.iter().filter(|l| {
                l.key.starts_with(&format!("{}{FAILED}", keys::LOCKS))
                    && now
                        .duration_since(l.modified)
                        .is_ok_and(|age| age > FAILURES_KEPT)
            });
            for l in old {
                let _ = self.store.delete(&l.key).await;
            }
        }
        self.release().await;
    }
}

/// A push as `datastore status` shows it, from its lease or the record it left.
#[derive(Clone, Debug)]
pub struct Activity {
    pub state: State,
    pub lease: LeaseInfo,
    pub detail: Detail,
    /// When the store last heard of it.
    pub modified: SystemTime,
}

/// Where a push stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Running,
    /// Its lease is no longer refreshed: the process is gone (it runs here and is not
    /// running, or [`LEASE_TTL`] has passed), and nothing it did is visible.
    Abandoned,
    Failed,
}

/// Pushes running, abandoned and failed in the last [`FAILURES_KEPT`], newest first; read
/// only, so ages are judged by this machine's clock.
pub async fn activity(store: &Store) -> Result<Vec<Activity>, StoreError> {
    let here = crate::host::name();
    let now = SystemTime::now();
    let mut out = Vec::new();
    for l in store.list(keys::LOCKS).await? {
        let name = l.key.strip_prefix(keys::LOCKS).unwrap_or(&l.key);
        let failed = name.starts_with(FAILED);
        if !failed && !name.starts_with(Operation::Push.prefix()) {
            continue;
        }
        let (lease, detail) = match store.get(&l.key).await {
            Ok(b) => match LeaseInfo::decode(&b) {
                Ok((lease, detail)) => (lease, detail.unwrap_or_default()),
                Err(_) => continue,
            },
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        let gone_here = lease.host == here && !crate::host::process_alive(lease.pid);
        let state = if failed {
            State::Failed
        } else if gone_here || !is_fresh(&l, now) {
            State::Abandoned
        } else {
            State::Running
        };
        let age = now.duration_since(l.modified).unwrap_or_default();
        if state != State::Running && age > FAILURES_KEPT {
            continue;
        }
        out.push(Activity {
            state,
            lease,
            detail,
            modified: l.modified,
        });
    }
    out.sort_by_key(|a| std::cmp::Reverse(a.lease.started_unix));
    Ok(out)
}

fn is_fresh(l: &Listed, now: SystemTime) -> bool {
    match now.duration_since(l.modified) {
        Ok(age) => age < LEASE_TTL,
        Err(_) => true,
    }
}
