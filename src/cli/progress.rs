//! Progress bars for long commands: shown on a terminal, hidden with --quiet or in scripts.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a bar can say so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The total is not known yet: a bar would be full at 0 B/0 B.
    Counting,
    /// Under way, too early for an estimate worth showing (the first moments' rate says
    /// weeks).
    Early,
    Estimating,
}

impl Phase {
    fn of(done: u64, total: u64) -> Phase {
        match total {
            0 => Phase::Counting,
            t if done.saturating_mul(20) < t => Phase::Early,
            _ => Phase::Estimating,
        }
    }
}

fn style(phase: Phase) -> ProgressStyle {
    let template = match phase {
        Phase::Counting => "{msg} {spinner} counting…",
        Phase::Early => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        Phase::Estimating => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    };
    ProgressStyle::with_template(template)
        .expect("valid template")
        .progress_chars("=> ")
}

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
        bar.set_style(style(Phase::Counting));
        bar.set_message(what);
        bar.enable_steady_tick(Duration::from_millis(100));
        let b = bar.clone();
        let ticker = tokio::spawn(async move {
            let mut shown = Phase::Counting;
            loop {
                let (done, total) = source();
                let phase = Phase::of(done, total);
                if phase != shown {
                    b.set_style(style(phase));
                    shown = phase;
                }
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

#[cfg(test)]
mod tests {
    use super::Phase;

    #[test]
    fn a_bar_shows_what_it_knows() {
        assert_eq!(Phase::of(0, 0), Phase::Counting, "no empty full bar");
        assert_eq!(Phase::of(0, 1000), Phase::Early);
        assert_eq!(
            Phase::of(49, 1000),
            Phase::Early,
            "no estimate from the first moments"
        );
        assert_eq!(Phase::of(50, 1000), Phase::Estimating);
        assert_eq!(Phase::of(1000, 1000), Phase::Estimating);
    }
}
