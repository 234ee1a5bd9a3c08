//! Collection: the [`Collector`] seam, the sources behind it, the parsers and
//! the scheduler that runs every counter at its interval.
//!
//! ```text
//! config::Config -> plan::jobs (counter x host) -> scheduler (interval, jitter,
//!   timeout, bounded concurrency) -> Collector::collect -> parse -> samples -> sink (store)
//! ```
//!
//! Must not depend on: rules, triggers, the CLI.

pub mod parse;
