//! The fetch budget: one bound on the bytes every fetch of a daemon holds at once.
//!
//! Demand reads, read-ahead and small-file neighbour fetches all take their share before they
//! fetch (from the disk cache or the store) and give it back once the bytes are in hand. Demand
//! reads wait for it; read-ahead is skipped, never queued, when it is used up. So any number of
//! readers cannot push the daemon's fetching memory past it.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default: a sixteenth of the machine's memory, between 64 MiB and 1 GiB.
pub fn default_fetch_budget() -> u64 {
    // SAFETY: sysinfo fills the struct it is given.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    let total = if unsafe { libc::sysinfo(&mut si) } == 0 {
        si.totalram as u64 * si.mem_unit as u64
    } else {
        4 << 30
    };
    (total / 16).clamp(64 << 20, 1 << 30)
}

/// The bytes that may be in flight at once, as a semaphore of KiB.
pub struct FetchBudget {
    sem: Arc<Semaphore>,
    units: u32,
}

const UNIT: u64 = 1024;

impl FetchBudget {
    pub fn new(bytes: u64) -> FetchBudget {
        let units = (bytes / UNIT).clamp(1, (Semaphore::MAX_PERMITS as u64).min(u32::MAX as u64));
        FetchBudget {
            sem: Arc::new(Semaphore::new(units as usize)),
            units: units as u32,
        }
    }

    /// A fetch larger than the whole budget takes all of it rather than waiting forever.
    fn units(&self, bytes: u64) -> u32 {
        (bytes.div_ceil(UNIT).max(1)).min(self.units as u64) as u32
    }

    /// Waits for `bytes` of the budget; they are given back when the permit is dropped.
    pub async fn take(&self, bytes: u64) -> OwnedSemaphorePermit {
        self.sem
            .clone()
            .acquire_many_owned(self.units(bytes))
            .await
            .expect("the budget semaphore is never closed")
    }

    /// `bytes` of the budget if they are free now.
    pub fn try_take(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        self.sem
            .clone()
            .try_acquire_many_owned(self.units(bytes))
            .ok()
    }

    /// Bytes of the whole budget.
    pub fn total(&self) -> u64 {
        self.units as u64 * UNIT
    }

    /// Bytes taken now.
    pub fn in_use(&self) -> u64 {
        (self.units as u64 - self.sem.available_permits() as u64) * UNIT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn takes_are_bounded_and_given_back() {
        let b = FetchBudget::new(8 << 10);
        let a = b.take(5 << 10).await;
        assert_eq!(b.in_use(), 5 << 10);
        assert!(b.try_take(4 << 10).is_none(), "over the budget");
        // Larger than the whole budget: all of it, not a wait forever.
        drop(a);
        let all = b.take(1 << 30).await;
        assert_eq!(b.in_use(), 8 << 10);
        drop(all);
        assert_eq!(b.in_use(), 0);
    }
}
