//! The `stream` source: a long-running command whose every stdout line
//! yields samples (`vmstat 1`, a tracer, a script printing a counter).
//!
//! [`follow`] reads lines as they come and hands each one, as a raw event
//! plus the samples parsed from it, to a sink before reading the next: the
//! caller commits it (so a `kill -9` keeps every line read so far). A line
//! the parser refuses is a failure sample (the raw line is still kept). With
//! `rate: true` each line is a reading of a monotonic counter and the first
//! one only sets the baseline. This file runs `via: local` commands;
//! [`super::stream_ssh`] runs `via: ssh` ones, with the same [`LineParser`].

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use super::parse::RateTracker;
use crate::clock::Clock;
use crate::fleet::HostPort;
use super::{no_secrets, to_samples, CollectError, CounterSpec, Job, DEFAULT_INTERVAL, DEFAULT_TIMEOUT};
use crate::store::{Event, Sample};

/// Starts `command` with `sh -c` in its own process group, stdout piped.
///
/// The command dies with the process that started it: its shell gets
/// SIGKILL when the parent (a `trace` worker) dies, even by `kill -9`, so no
/// tracer outlives its worker. Call it from a thread that lives as long as
/// the command (the signal follows the thread that forked).
pub fn spawn(command: &str) -> Result<Child, CollectError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).process_group(0);
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: `prctl(2)` is one, and nothing is
    // allocated (an error is a raw OS error code).
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(|e| std::io::Error::from_raw_os_error(e as i32))
        });
    }
    cmd.spawn().map_err(|e| CollectError::Command { command: command.to_string(), detail: format!("cannot start: {e}") })
}

/// What one stream line gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// The raw line, as an event.
    pub event: Event,
    /// Samples parsed from it (a failure sample when the parser refuses it).
    pub samples: Vec<Sample>,
}

/// Turns lines into events and samples for one task.
pub struct LineParser {
    job: Job,
    source: String,
    rates: RateTracker,
    last_ts: i64,
}

impl LineParser {
    /// A parser for `counter` on `host`, events tagged `source`.
    pub fn new(counter: Arc<CounterSpec>, host: &str, source: &str) -> LineParser {
        LineParser {
            job: Job { counters: vec![counter], host: host.to_string(), address: HostPort { host: host.to_string(), port: None }, target: None, interval: DEFAULT_INTERVAL, timeout: DEFAULT_TIMEOUT, ssh: None, credentials: no_secrets() },
            source: source.to_string(),
            rates: RateTracker::new(),
            last_ts: i64::MIN,
        }
    }

    /// The timestamp of a line read at `now_ms`: a series holds one point
    /// per millisecond, so a line read within the same millisecond as the
    /// one before gets the next millisecond (a burst is shifted by at most
    /// its length in milliseconds, and every line is stored).
    pub fn stamp(&mut self, now_ms: i64) -> i64 {
        self.last_ts = now_ms.max(self.last_ts.saturating_add(1));
        self.last_ts
    }

    /// Parses one line read at `ts_ms`.
    pub fn line(&mut self, text: &str, ts_ms: i64) -> Line {
        let outcome = match self.job.counters.first() {
            Some(spec) => spec.parser.parse(text).map_err(CollectError::from),
            None => Err(CollectError::Config("no counter".into())),
        };
        let samples = to_samples(&self.job, ts_ms, vec![outcome], &mut self.rates);
        Line { event: Event { source: self.source.clone(), host: self.job.host.clone(), ts_ms, text: text.to_string() }, samples }
    }
}

/// Reads `stdout` line by line until it ends, handing every line to `sink`
/// (which must make it durable) before reading the next. Returns the number
/// of lines read, or the sink's first error. Timestamps: [`LineParser::stamp`].
pub fn follow<E>(stdout: impl Read, parser: &mut LineParser, clock: &dyn Clock, mut sink: impl FnMut(&Line) -> Result<(), E>) -> Result<u64, E> {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return Ok(n),
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        let ts = parser.stamp(clock.now_ms());
        let line = parser.line(text, ts);
        sink(&line)?;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Counter;
    use crate::store::SampleValue;

    #[derive(Debug)]
    struct Fixed(std::sync::atomic::AtomicI64);
    impl Clock for Fixed {
        fn now_ms(&self) -> i64 {
            self.0.fetch_add(1000, std::sync::atomic::Ordering::SeqCst)
        }
    }

    fn spec(rate: bool) -> Arc<CounterSpec> {
        let c: Counter = serde_json::from_value(serde_json::json!({"name": "s", "source": {"stream": {"command": "x", "via": "local"}}, "rate": rate})).unwrap();
        Arc::new(CounterSpec::compile(&c).unwrap())
    }

    #[derive(Debug)]
    struct Stopped;
    impl Clock for Stopped {
        fn now_ms(&self) -> i64 {
            5_000
        }
    }

    #[test]
    fn lines_read_in_one_millisecond_keep_distinct_timestamps() {
        let mut p = LineParser::new(spec(false), "local", "trace:t");
        let mut ts = Vec::new();
        let n = follow("1\n2\n3\n4\n".as_bytes(), &mut p, &Stopped, |l| {
            ts.push((l.event.ts_ms, l.samples.len()));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(n, 4);
        assert_eq!(ts, vec![(5_000, 1), (5_001, 1), (5_002, 1), (5_003, 1)]);
    }

    #[test]
    fn every_line_is_an_event_and_a_sample_or_failure() {
        let mut p = LineParser::new(spec(false), "local", "trace:t");
        let clock = Fixed(0.into());
        let mut got = Vec::new();
        let n = follow("1\nabc\n2.5".as_bytes(), &mut p, &clock, |l| {
            got.push(l.clone());
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(n, 3);
        assert_eq!(got.iter().map(|l| l.event.text.as_str()).collect::<Vec<_>>(), ["1", "abc", "2.5"]);
        assert_eq!(got[0].samples[0].value, SampleValue::Value(1.0));
        assert_eq!(got[1].samples[0].value, SampleValue::Error("not a number: `abc`".into()));
        assert_eq!(got[2].samples[0].value, SampleValue::Value(2.5));
        assert_eq!(got[2].event.ts_ms, 2000);
    }

    #[test]
    fn rate_streams_skip_the_baseline() {
        let mut p = LineParser::new(spec(true), "local", "trace:t");
        let clock = Fixed(0.into());
        let mut values = Vec::new();
        follow("100\n150\n250\n".as_bytes(), &mut p, &clock, |l| {
            values.extend(l.samples.iter().map(|s| s.value.clone()));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(values, vec![SampleValue::Value(50.0), SampleValue::Value(100.0)]);
    }

    #[test]
    fn a_failing_sink_stops_reading() {
        let mut p = LineParser::new(spec(false), "local", "trace:t");
        let clock = Fixed(0.into());
        let r = follow("1\n2\n".as_bytes(), &mut p, &clock, |_| Err("disk full"));
        assert_eq!(r, Err("disk full"));
    }
}
