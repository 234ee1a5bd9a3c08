//! The one clock seam: what time it is (ms since the Unix epoch) and how to
//! wait. The daemon, the trigger evaluator, the job workers, the receivers
//! and the collection scheduler take a [`SharedClock`] instead of reading
//! the wall clock, so tests can run them on paused tokio time.
//!
//! - [`SystemClock`]: the wall clock; waits on tokio's timer.
//! - [`TokioClock`]: tokio's (pausable) time from a chosen epoch instant;
//!   under `tokio::time::pause()` time moves only when every task waits, so
//!   a test of minutes of trigger timing runs in milliseconds.
//!
//! Must not depend on any other module of the crate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// A future that finishes after a wait.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Where time comes from.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;

    /// Waits `d`.
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }

    /// Waits until [`Clock::now_ms`] reaches `t` (at once if it has).
    fn sleep_until_ms(&self, t: i64) -> Sleep {
        let wait = u64::try_from(t.saturating_sub(self.now_ms())).unwrap_or(0);
        self.sleep(Duration::from_millis(wait))
    }
}

/// A clock shared by the tasks of one process.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// The wall clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// tokio's time, from a chosen epoch instant: `base_ms` at `start`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// Epoch ms at `start`.
    pub base_ms: i64,
    /// The tokio instant that corresponds to `base_ms`.
    pub start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `base_ms` now (call inside a runtime).
    pub fn starting_at(base_ms: i64) -> TokioClock {
        TokioClock { base_ms, start: tokio::time::Instant::now() }
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_moves_with_paused_time() {
        let c = TokioClock::starting_at(1_000_000);
        assert_eq!(c.now_ms(), 1_000_000);
        c.sleep(Duration::from_secs(90)).await;
        assert_eq!(c.now_ms(), 1_090_000);
        c.sleep_until_ms(1_100_000).await;
        assert_eq!(c.now_ms(), 1_100_000);
        // a past instant does not wait
        c.sleep_until_ms(0).await;
        assert_eq!(c.now_ms(), 1_100_000);
    }

    #[test]
    fn the_system_clock_is_near_chrono() {
        let d = (SystemClock.now_ms() - chrono::Utc::now().timestamp_millis()).abs();
        assert!(d < 1000, "{d}");
    }
}
