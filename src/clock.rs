//! The one clock seam: what time it is (ms since the Unix epoch) and how to
//! wait. The daemon, the trigger evaluator, the job workers, the receivers
//! and the collection scheduler take a [`SharedClock`] instead of reading
//! the wall clock, so tests can run them on paused tokio time.
//!
//! - [`SystemClock`]: the wall clock; waits on tokio's timer.
//! - [`TokioClock`]: tokio's (pausable) time from a chosen epoch instant;
//!   under `tokio::time::pause()` time moves only when every task waits, so
//!   a test of minutes of trigger timing runs in milliseconds.
//! - [`parse_time`]: an instant as people write it (`now-1h`, RFC 3339,
//!   epoch ms), for `scaler query` and the API's `?from=`/`?to=`.
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

/// Parses `now`, `now-DURATION`, RFC 3339 or epoch ms, relative to `now_ms`.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, String> {
    let t = text.trim();
    if t == "now" {
        return Ok(now_ms);
    }
    if let Some(rest) = t.strip_prefix("now-") {
        let d = humantime::parse_duration(rest).map_err(|e| format!("`{t}`: {e}"))?;
        return i64::try_from(d.as_millis()).ok().and_then(|ms| now_ms.checked_sub(ms)).ok_or_else(|| format!("`{t}` is too far back"));
    }
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("`{t}` is not a time: use `now`, `now-1h`, RFC 3339 or epoch milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("now", 5_000_000), Ok(5_000_000));
        assert_eq!(parse_time("now-1h", 5_000_000), Ok(1_400_000));
        assert_eq!(parse_time("1704067200000", 0), Ok(1_704_067_200_000));
        assert_eq!(parse_time("2024-01-01T00:00:00Z", 0), Ok(1_704_067_200_000));
        assert!(parse_time("yesterday", 0).is_err());
        assert!(parse_time("now-999999999999y", 0).is_err(), "no overflow");
    }

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
