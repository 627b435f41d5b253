//! Progress bars for long commands: shown on a terminal, hidden with --quiet or in scripts.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A byte-count bar that follows two counters until dropped.
pub struct Bar {
    bar: ProgressBar,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Bar {
    pub fn follow(
        quiet: bool,
        what: &'static str,
        source: Arc<dyn Fn() -> (u64, u64) + Send + Sync>,
    ) -> Bar {
        if quiet || !std::io::stderr().is_terminal() {
            return Bar {
                bar: ProgressBar::hidden(),
                ticker: None,
            };
        }
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what);
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                let (done, total) = source();
                b.set_length(total);
                b.set_position(done);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Bar {
            bar,
            ticker: Some(ticker),
        }
    }

    /// Reads a (done, total) pair of counters.
    pub fn counters(done: &AtomicU64, total: &AtomicU64) -> (u64, u64) {
        (done.load(Ordering::Relaxed), total.load(Ordering::Relaxed))
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
