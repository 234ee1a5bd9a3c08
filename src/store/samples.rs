//! The time-series part of the store seam: samples, series, range queries,
//! window aggregates, retention with rollups, and raw events (stream lines).
//!
//! A series is counter + host + labels; a sample is `(series, ts_ms, value |
//! error)`. A failed collection is a sample with an error and no value, so a
//! reader can tell "no data" from "low". The pure functions here
//! ([`aggregate`], [`bucketize`]) define what every backend must return; the
//! backends only fetch.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Result;

/// A series: counter + host + labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SeriesKey {
    /// The counter's name.
    pub counter: String,
    /// The target host (`local` for local sources).
    pub host: String,
    /// Extra labels (target, counter and parser labels), sorted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl SeriesKey {
    /// A series without labels.
    pub fn new(counter: &str, host: &str) -> SeriesKey {
        SeriesKey { counter: counter.into(), host: host.into(), labels: BTreeMap::new() }
    }

    /// `counter{host="h",k="v"}`, for people.
    pub fn display(&self) -> String {
        let mut s = format!("{}{{host=\"{}\"", self.counter, escape_label(&self.host));
        for (k, v) in &self.labels {
            s.push_str(&format!(",{k}=\"{}\"", escape_label(v)));
        }
        s.push('}');
        s
    }
}

/// A label value as Prometheus writes it: `\`, `"` and newlines escaped, so
/// a host named `a"b{}` cannot make an ambiguous series key.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// `(ts_ms, value)` points of one series, sorted by time.
pub type Points = Vec<(i64, f64)>;

/// What a collection gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleValue {
    /// A number.
    Value(f64),
    /// The collection failed; never stored as a number.
    Error(String),
}

/// One sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Its series.
    pub series: SeriesKey,
    /// Milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// Value or error.
    pub value: SampleValue,
}

impl Sample {
    /// A numeric sample.
    pub fn value(series: SeriesKey, ts_ms: i64, value: f64) -> Sample {
        Sample { series, ts_ms, value: SampleValue::Value(value) }
    }

    /// A failed collection.
    pub fn error(series: SeriesKey, ts_ms: i64, error: impl Into<String>) -> Sample {
        Sample { series, ts_ms, value: SampleValue::Error(error.into()) }
    }
}

/// Which series a query reads: one counter, optionally some hosts, optionally
/// labels that must match.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selector {
    /// The counter.
    pub counter: String,
    /// Only these hosts (`None`: every host). The caller resolves a group of
    /// hosts; the store knows no groups.
    pub hosts: Option<Vec<String>>,
    /// Labels every selected series must have with these values.
    pub labels: BTreeMap<String, String>,
}

impl Selector {
    /// Every series of `counter`.
    pub fn counter(counter: &str) -> Selector {
        Selector { counter: counter.into(), ..Selector::default() }
    }

    /// Restricts to one host.
    pub fn host(mut self, host: &str) -> Selector {
        self.hosts = Some(vec![host.into()]);
        self
    }

    /// Restricts to these hosts.
    pub fn hosts(mut self, hosts: &[&str]) -> Selector {
        self.hosts = Some(hosts.iter().map(|h| h.to_string()).collect());
        self
    }

    /// Whether `key` is selected.
    pub fn matches(&self, key: &SeriesKey) -> bool {
        key.counter == self.counter
            && self.hosts.as_ref().is_none_or(|hs| hs.contains(&key.host))
            && self.labels.iter().all(|(k, v)| key.labels.get(k) == Some(v))
    }
}

/// A window aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    /// Mean of the values.
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Number of values (failures not counted).
    Count,
    /// Sum of the values.
    Sum,
    /// Per-second increase of a monotonic counter over the window; a decrease
    /// counts as a reset (the value after it is the increase since the reset).
    Rate,
}

/// Retention: raw samples are kept for `raw`, then downsampled to
/// `rollup_step` buckets (min/max/sum/count) kept for `rollup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long raw samples (and failures, and events) are kept.
    pub raw: std::time::Duration,
    /// Width of a rollup bucket.
    pub rollup_step: std::time::Duration,
    /// How long rollups are kept.
    pub rollup: std::time::Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            raw: std::time::Duration::from_secs(15 * 86_400),
            rollup_step: std::time::Duration::from_secs(300),
            rollup: std::time::Duration::from_secs(400 * 86_400),
        }
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct MaintainReport {
    /// Head samples compressed into chunks.
    pub sealed: u64,
    /// Raw samples downsampled into rollups and deleted.
    pub rolled_up: u64,
    /// Rollup buckets deleted by retention.
    pub rollups_dropped: u64,
    /// Failures and events deleted by retention.
    pub dropped: u64,
}

/// Points of one series: `[epoch_ms, value | null]`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SeriesPoints {
    /// The series.
    pub series: SeriesKey,
    /// One point per step; `None` where there is no data.
    pub points: Vec<(i64, Option<f64>)>,
}

/// A range query.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeQuery {
    /// Which series.
    pub selector: Selector,
    /// First point (ms).
    pub from_ms: i64,
    /// End of the range, excluded: the range is `[from, to)`, so 24 h at a
    /// 1 m step is 1,440 points, and a sample at `to` is not counted.
    pub to_ms: i64,
    /// Distance between points (ms, > 0). Each point is the mean of the
    /// samples in `[t, t + step)`.
    pub step_ms: i64,
}

/// The latest sample of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latest {
    /// The series.
    pub series: SeriesKey,
    /// When.
    pub ts_ms: i64,
    /// Value or error.
    pub value: SampleValue,
}

/// The last value of a series and when it was taken, if any.
pub type LastValue = (SeriesKey, Option<(i64, f64)>);

/// A raw event (a stream's stdout line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Where it comes from (`trace:<task id>`, a counter name).
    pub source: String,
    /// The host.
    pub host: String,
    /// When it was read (ms).
    pub ts_ms: i64,
    /// The text.
    pub text: String,
}

/// The time-series store.
pub trait SampleStore {
    /// Appends samples durably (when this returns, a `kill -9` keeps them).
    fn append(&mut self, samples: &[Sample]) -> Result<()>;
    /// Appends raw events durably, with samples parsed from them, in one
    /// transaction.
    fn append_events(&mut self, events: &[Event], samples: &[Sample]) -> Result<()>;
    /// The series that match, sorted.
    fn series(&self, selector: &Selector) -> Result<Vec<SeriesKey>>;
    /// Points per step over a range, one entry per matching series.
    fn range(&self, query: &RangeQuery) -> Result<Vec<SeriesPoints>>;
    /// Numeric samples `(ts_ms, value)` of each matching series in
    /// `[from_ms, to_ms]`, raw only (not rollups), sorted by time.
    fn raw(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, Points)>>;
    /// Failures of each matching series in `[from_ms, to_ms]`.
    fn failures(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, i64, String)>>;
    /// The latest sample (value or failure) at or before `at_ms` of each
    /// matching series.
    fn latest(&self, selector: &Selector, at_ms: i64) -> Result<Vec<Latest>>;
    /// Events of `source` in `[from_ms, to_ms]`, oldest first, at most `limit`.
    fn events(&self, source: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Event>>;
    /// Seals heads into chunks, downsamples and drops by retention, as of `now_ms`.
    fn maintain(&mut self, now_ms: i64, retention: &Retention) -> Result<MaintainReport>;

    /// The last value of each matching series at or before `at_ms`, looking
    /// back at most ~24 days (failures skipped: use [`SampleStore::latest`]
    /// to see them).
    fn last_value(&self, selector: &Selector, at_ms: i64) -> Result<Vec<LastValue>> {
        let from = at_ms.saturating_sub(i64::from(i32::MAX));
        Ok(self
            .raw(selector, from, at_ms)?
            .into_iter()
            .map(|(k, pts)| (k, pts.last().copied()))
            .collect())
    }

    /// `agg` over `[from_ms, to_ms]` for each matching series (per host).
    fn aggregate(&self, selector: &Selector, agg: Agg, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, Option<f64>)>> {
        Ok(self
            .raw(selector, from_ms, to_ms)?
            .into_iter()
            .map(|(k, pts)| {
                let v = aggregate(agg, &pts);
                (k, v)
            })
            .collect())
    }

    /// `agg` over `[from_ms, to_ms]` across every matching series (a group of
    /// hosts): avg/min/max/count/sum over all their samples; rate is the sum
    /// of the per-series rates (the group's total per second).
    fn aggregate_across(&self, selector: &Selector, agg: Agg, from_ms: i64, to_ms: i64) -> Result<Option<f64>> {
        let series = self.raw(selector, from_ms, to_ms)?;
        Ok(aggregate_across(agg, series.iter().map(|(_, pts)| pts.as_slice())))
    }
}

/// One series' values and failures within a batch of samples, in the
/// order given.
pub type SeriesBatch<'a> = (Vec<(i64, f64)>, Vec<(i64, &'a str)>);

/// Splits a batch of samples by series (sorted by key), for backends that
/// write a series at a time.
pub fn by_series(samples: &[Sample]) -> BTreeMap<&SeriesKey, SeriesBatch<'_>> {
    let mut groups: BTreeMap<&SeriesKey, SeriesBatch<'_>> = BTreeMap::new();
    for s in samples {
        let g = groups.entry(&s.series).or_default();
        match &s.value {
            SampleValue::Value(v) => g.0.push((s.ts_ms, *v)),
            SampleValue::Error(e) => g.1.push((s.ts_ms, e.as_str())),
        }
    }
    groups
}

/// `agg` over one series' samples (sorted by time). `None` when there is
/// nothing to aggregate (and for a rate, fewer than two samples).
pub fn aggregate(agg: Agg, pts: &[(i64, f64)]) -> Option<f64> {
    if pts.is_empty() {
        return None;
    }
    let values = pts.iter().map(|p| p.1);
    Some(match agg {
        Agg::Avg => values.sum::<f64>() / pts.len() as f64,
        Agg::Min => values.fold(f64::INFINITY, f64::min),
        Agg::Max => values.fold(f64::NEG_INFINITY, f64::max),
        Agg::Count => pts.len() as f64,
        Agg::Sum => values.sum(),
        Agg::Rate => {
            let (first, last) = (pts[0], pts[pts.len() - 1]);
            if last.0 <= first.0 {
                return None;
            }
            let mut increase = 0.0;
            for w in pts.windows(2) {
                let d = w[1].1 - w[0].1;
                increase += if d >= 0.0 { d } else { w[1].1 };
            }
            increase * 1000.0 / (last.0 - first.0) as f64
        }
    })
}

/// `agg` across several series (see [`SampleStore::aggregate_across`]).
pub fn aggregate_across<'a>(agg: Agg, series: impl Iterator<Item = &'a [(i64, f64)]>) -> Option<f64> {
    match agg {
        Agg::Rate => series.filter_map(|pts| aggregate(Agg::Rate, pts)).fold(None, |acc, r| Some(acc.unwrap_or(0.0) + r)),
        _ => {
            let all: Vec<(i64, f64)> = series.flat_map(|pts| pts.iter().copied()).collect();
            aggregate(agg, &all)
        }
    }
}

/// Sum and count per step bucket, then the mean: points at `from`,
/// `from + step`, ... up to `to`; `None` where a bucket is empty. `raw` are
/// samples, `rolled` are rollup buckets `(ts, sum, count)` (disjoint from
/// the raw samples: a rollup replaces the raw samples it summarises).
pub fn bucketize(query: &RangeQuery, raw: &[(i64, f64)], rolled: &[(i64, f64, u64)]) -> Vec<(i64, Option<f64>)> {
    let step = query.step_ms.max(1);
    let n = if query.to_ms <= query.from_ms { 0 } else { ((query.to_ms - query.from_ms + step - 1) / step) as usize };
    let mut sums = vec![(0.0f64, 0u64); n];
    let mut add = |ts: i64, sum: f64, count: u64| {
        if ts < query.from_ms || ts >= query.to_ms {
            return;
        }
        let i = ((ts - query.from_ms) / step) as usize;
        if let Some(slot) = sums.get_mut(i) {
            slot.0 += sum;
            slot.1 += count;
        }
    };
    for &(ts, v) in raw {
        add(ts, v, 1);
    }
    for &(ts, sum, count) in rolled {
        add(ts, sum, count);
    }
    sums.into_iter()
        .enumerate()
        .map(|(i, (sum, count))| (query.from_ms + i as i64 * step, (count > 0).then(|| sum / count as f64)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_over_a_window() {
        let pts = [(0, 1.0), (10_000, 3.0), (20_000, 2.0)];
        assert_eq!(aggregate(Agg::Avg, &pts), Some(2.0));
        assert_eq!(aggregate(Agg::Min, &pts), Some(1.0));
        assert_eq!(aggregate(Agg::Max, &pts), Some(3.0));
        assert_eq!(aggregate(Agg::Count, &pts), Some(3.0));
        assert_eq!(aggregate(Agg::Sum, &pts), Some(6.0));
        assert_eq!(aggregate(Agg::Avg, &[]), None);
        assert_eq!(aggregate(Agg::Count, &[]), None);
    }

    #[test]
    fn rate_over_a_window_handles_resets() {
        assert_eq!(aggregate(Agg::Rate, &[(0, 100.0), (10_000, 150.0), (20_000, 300.0)]), Some(10.0));
        // reset at 20 s: 150 -> 30 counts as +30
        assert_eq!(aggregate(Agg::Rate, &[(0, 100.0), (10_000, 150.0), (20_000, 30.0)]), Some(4.0));
        assert_eq!(aggregate(Agg::Rate, &[(0, 100.0)]), None);
    }

    #[test]
    fn aggregates_across_hosts() {
        let a = [(0, 1.0), (10_000, 11.0)];
        let b = [(0, 3.0), (10_000, 23.0)];
        let both = || [a.as_slice(), b.as_slice()].into_iter();
        assert_eq!(aggregate_across(Agg::Avg, both()), Some(9.5));
        assert_eq!(aggregate_across(Agg::Max, both()), Some(23.0));
        assert_eq!(aggregate_across(Agg::Count, both()), Some(4.0));
        assert_eq!(aggregate_across(Agg::Rate, both()), Some(3.0));
        assert_eq!(aggregate_across(Agg::Rate, std::iter::empty()), None);
    }

    #[test]
    fn buckets_have_null_where_there_is_no_data() {
        let q = RangeQuery { selector: Selector::counter("c"), from_ms: 1000, to_ms: 6000, step_ms: 1000 };
        let raw = [(999, 7.0), (1000, 1.0), (1500, 3.0), (3999, 5.0), (5000, 9.0), (6000, 1.0)];
        assert_eq!(
            bucketize(&q, &raw, &[(2000, 10.0, 4)]),
            vec![(1000, Some(2.0)), (2000, Some(2.5)), (3000, Some(5.0)), (4000, None), (5000, Some(9.0))]
        );
        let empty = RangeQuery { to_ms: 1000, ..q };
        assert!(bucketize(&empty, &raw, &[]).is_empty());
    }

    #[test]
    fn ranges_are_half_open() {
        let day = RangeQuery { selector: Selector::counter("c"), from_ms: 0, to_ms: 86_400_000, step_ms: 60_000 };
        assert_eq!(bucketize(&day, &[], &[]).len(), 1_440);
        // A sample at `to` belongs to the next range; a partial last step still gets its point.
        let q = RangeQuery { selector: Selector::counter("c"), from_ms: 0, to_ms: 2_500, step_ms: 1_000 };
        assert_eq!(bucketize(&q, &[(2_000, 4.0), (2_500, 8.0)], &[]), vec![(0, None), (1_000, None), (2_000, Some(4.0))]);
    }

    #[test]
    fn selectors_match_counter_hosts_and_labels() {
        let mut k = SeriesKey::new("load", "h1");
        k.labels.insert("field".into(), "load1".into());
        assert!(Selector::counter("load").matches(&k));
        assert!(Selector::counter("load").hosts(&["h0", "h1"]).matches(&k));
        assert!(!Selector::counter("load").host("h2").matches(&k));
        assert!(!Selector::counter("mem").matches(&k));
        let mut s = Selector::counter("load");
        s.labels.insert("field".into(), "load5".into());
        assert!(!s.matches(&k));
        assert_eq!(k.display(), "load{host=\"h1\",field=\"load1\"}");
        let odd = SeriesKey::new("load", "a\"b{}\\\n");
        assert_eq!(odd.display(), r#"load{host="a\"b{}\\\n"}"#);
    }
}
