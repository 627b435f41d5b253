//! Parallel uploads under a memory budget, with deduplication by content key.
//!
//! Each distinct key is uploaded at most once per push, and not at all if the store already has
//! it. The budget counts the bytes held by uploads in flight: when it is spent, the readers
//! wait, so a push of any size holds a bounded amount of data in memory.

use crate::store::{Store, StoreError};
use bytes::Bytes;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Byte and object counts of a push, readable while it runs.
#[derive(Default, Debug)]
pub struct UploadStats {
    pub uploaded_bytes: AtomicU64,
    pub uploaded_objects: AtomicU64,
}

pub struct Uploader {
    store: Store,
    budget: Arc<Semaphore>,
    budget_units: u32,
    claimed: Mutex<HashSet<String>>,
    tasks: Mutex<JoinSet<Result<(), StoreError>>>,
    failed: Mutex<Option<StoreError>>,
    pub stats: Arc<UploadStats>,
}

const UNIT: usize = 1 << 20;

impl Uploader {
    /// An uploader that holds at most `budget_bytes` in flight (at least one maximum chunk).
    pub fn new(store: Store, budget_bytes: u64, stats: Arc<UploadStats>) -> Uploader {
        let units = (budget_bytes as usize / UNIT).clamp(64, u32::MAX as usize >> 4) as u32;
        Uploader {
            store,
            budget: Arc::new(Semaphore::new(units as usize)),
            budget_units: units,
            claimed: Mutex::new(HashSet::new()),
            tasks: Mutex::new(JoinSet::new()),
            failed: Mutex::new(None),
            stats,
        }
    }

    /// Marks keys the store is known to hold (those of the parent version), so they are
    /// neither checked nor uploaded.
    pub fn assume_present(&self, keys: impl IntoIterator<Item = String>) {
        self.claimed.lock().expect("lock").extend(keys);
    }

    /// Stores `data` under `key` unless this push already did or the store already has it.
    /// Waits while the budget is spent.
    pub async fn upload(&self, key: String, data: Bytes) -> Result<(), StoreError> {
        self.check()?;
        if !self.claimed.lock().expect("lock").insert(key.clone()) {
            return Ok(());
        }
        let units = (data.len().div_ceil(UNIT) as u32).clamp(1, self.budget_units);
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(units)
            .await
            .expect("budget semaphore is never closed");
        let (store, stats) = (self.store.clone(), self.stats.clone());
        let mut tasks = self.tasks.lock().expect("lock");
        while let Some(done) = tasks.try_join_next() {
            self.record(done);
        }
        tasks.spawn(async move {
            let _permit = permit;
            if !store.exists(&key).await? {
                let len = data.len() as u64;
                store.put(&key, data).await?;
                stats.uploaded_bytes.fetch_add(len, Ordering::Relaxed);
                stats.uploaded_objects.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
        Ok(())
    }

    fn record(&self, done: Result<Result<(), StoreError>, tokio::task::JoinError>) {
        let err = match done {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => StoreError::Backend {
                store: self.store.url().to_string(),
                op: "PUT",
                key: String::new(),
                detail: e.to_string(),
            },
        };
        self.failed.lock().expect("lock").get_or_insert(err);
    }

    /// The first upload error so far, so readers stop early when the store fails.
    pub fn check(&self) -> Result<(), StoreError> {
        match &*self.failed.lock().expect("lock") {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Waits for every upload; the first error if any failed.
    pub async fn finish(&self) -> Result<(), StoreError> {
        let mut tasks = std::mem::take(&mut *self.tasks.lock().expect("lock"));
        while let Some(done) = tasks.join_next().await {
            self.record(done);
        }
        self.check()
    }
}
