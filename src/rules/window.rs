//! The recent samples the evaluator reads: an in-memory window per series,
//! fed by the collector and the passive inputs, seeded from the store at
//! start. Evaluating 10,000 triggers must not touch the database.
//!
//! Its inputs are plain values: the counters with their lookbacks
//! ([`Window::with_counters`]) and the host sets ([`Window::set_hosts`]);
//! the caller works them out from the config and the fleet.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::{Sample, SampleValue, SeriesKey};

/// One sample in the window.
#[derive(Debug, Clone, PartialEq)]
pub enum Point {
    /// A number.
    Value(f64),
    /// A failed collection (or a non-numeric pushed value), with its reason.
    Error(Arc<str>),
}

/// One series and its recent points, sorted by time.
#[derive(Debug, Clone)]
pub struct SeriesData {
    /// The series.
    pub key: SeriesKey,
    /// `(ts_ms, point)`, oldest first.
    pub points: Vec<(i64, Point)>,
}

impl SeriesData {
    /// The points with `from_ms < ts <= to_ms`.
    pub fn between(&self, from_ms: i64, to_ms: i64) -> &[(i64, Point)] {
        let lo = self.points.partition_point(|p| p.0 <= from_ms);
        let hi = self.points.partition_point(|p| p.0 <= to_ms);
        &self.points[lo..hi.max(lo)]
    }
}

/// What the evaluator knows about one counter.
#[derive(Debug, Clone, Default)]
pub struct CounterData {
    /// How far back `last()` looks by default; `None`: the last value holds
    /// until replaced (pushed values, alerts, traps).
    pub lookback_ms: Option<i64>,
    /// Its series.
    pub series: Vec<SeriesData>,
    /// Series indexes by host.
    by_host: HashMap<String, Vec<usize>>,
}

impl CounterData {
    /// The series of one host.
    pub fn host_series<'a>(&'a self, host: &str) -> impl Iterator<Item = &'a SeriesData> + 'a {
        self.by_host
            .get(host)
            .into_iter()
            .flat_map(move |list| list.iter().filter_map(move |i| self.series.get(*i)))
    }

    /// Every host with series, and its series indexes, in first-seen order
    /// of the hosts' first series.
    pub fn hosts(&self) -> impl Iterator<Item = (&str, &[usize])> {
        let mut list: Vec<(&str, &[usize])> = self.by_host.iter().map(|(h, v)| (h.as_str(), v.as_slice())).collect();
        list.sort_by_key(|(_, v)| v.first().copied().unwrap_or(usize::MAX));
        list.into_iter()
    }
}

/// A named set of hosts (a Target or a Group): the denominator of coverage.
#[derive(Debug, Clone, Default)]
pub struct HostSet {
    /// Number of members.
    pub members: usize,
    /// Every name a member's series may carry (node name, address,
    /// `host:port`) to the member's index.
    pub alias: HashMap<String, usize>,
}

impl HostSet {
    /// A set from members, each with the names its series may carry.
    pub fn new(members: Vec<Vec<String>>) -> HostSet {
        let mut alias = HashMap::new();
        for (i, names) in members.iter().enumerate() {
            for n in names {
                alias.entry(n.clone()).or_insert(i);
            }
        }
        HostSet { members: members.len(), alias }
    }
}

/// The recent samples of every counter, and the host sets.
#[derive(Debug, Clone, Default)]
pub struct Window {
    counters: HashMap<String, CounterData>,
    index: HashMap<SeriesKey, (String, usize)>,
    /// Targets and groups by name.
    pub groups: HashMap<String, HostSet>,
}

impl Window {
    /// An empty window.
    pub fn new() -> Window {
        Window::default()
    }

    /// Declares a counter (so expressions may name it before it has data).
    pub fn declare(&mut self, counter: &str, lookback_ms: Option<i64>) {
        self.counters.entry(counter.to_string()).or_default().lookback_ms = lookback_ms;
    }

    /// Whether a counter is declared.
    pub fn has_counter(&self, counter: &str) -> bool {
        self.counters.contains_key(counter)
    }

    /// A counter's data.
    pub fn counter(&self, counter: &str) -> Option<&CounterData> {
        self.counters.get(counter)
    }

    /// Adds a sample of a declared counter (samples of undeclared counters
    /// are ignored: no trigger can name them). Keeps points sorted; a second
    /// sample at the same instant replaces the first.
    pub fn insert(&mut self, sample: &Sample) {
        let point = match &sample.value {
            SampleValue::Value(v) => Point::Value(*v),
            SampleValue::Error(e) => Point::Error(Arc::from(e.as_str())),
        };
        self.insert_point(&sample.series, sample.ts_ms, point);
    }

    /// Adds a point to a series of a declared counter.
    pub fn insert_point(&mut self, key: &SeriesKey, ts_ms: i64, point: Point) {
        let Some(data) = self.counters.get_mut(&key.counter) else { return };
        let idx = match self.index.get(key) {
            Some((_, i)) => *i,
            None => {
                data.series.push(SeriesData { key: key.clone(), points: Vec::new() });
                let i = data.series.len() - 1;
                data.by_host.entry(key.host.clone()).or_default().push(i);
                self.index.insert(key.clone(), (key.counter.clone(), i));
                i
            }
        };
        let points = &mut data.series[idx].points;
        match points.last() {
            Some(last) if last.0 < ts_ms => points.push((ts_ms, point)),
            None => points.push((ts_ms, point)),
            _ => {
                let at = points.partition_point(|p| p.0 < ts_ms);
                if points.get(at).is_some_and(|p| p.0 == ts_ms) {
                    points[at].1 = point;
                } else {
                    points.insert(at, (ts_ms, point));
                }
            }
        }
    }

    /// Drops points older than `keep_ms` before `now_ms`, always keeping each
    /// series' newest point (a value that holds until replaced).
    pub fn prune(&mut self, now_ms: i64, keep_ms: i64) {
        let cutoff = now_ms.saturating_sub(keep_ms);
        for data in self.counters.values_mut() {
            for s in &mut data.series {
                let n = s.points.partition_point(|p| p.0 < cutoff).min(s.points.len().saturating_sub(1));
                if n > 0 {
                    s.points.drain(..n);
                }
            }
        }
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.counters.values().flat_map(|c| c.series.iter()).map(|s| s.points.len()).sum()
    }

    /// Whether no point is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Window {
    /// A window with these counters declared, each with its default
    /// lookback (`None`: the last value holds until replaced).
    pub fn with_counters<'a>(counters: impl IntoIterator<Item = (&'a str, Option<i64>)>) -> Window {
        let mut w = Window::new();
        for (name, lookback_ms) in counters {
            w.declare(name, lookback_ms);
        }
        w
    }

    /// Replaces the host sets (after nodes changed): each Target and Group
    /// by name, with its members, each as the names its series may carry.
    pub fn set_hosts(&mut self, sets: impl IntoIterator<Item = (String, Vec<Vec<String>>)>) {
        self.groups = sets.into_iter().map(|(name, members)| (name, HostSet::new(members))).collect();
    }

    /// The newest sample time at or before `now_ms` of any series of these
    /// counters (a trigger's inputs), if any.
    pub fn newest_at(&self, counters: &[String], now_ms: i64) -> Option<i64> {
        counters
            .iter()
            .filter_map(|c| self.counter(c))
            .flat_map(|c| c.series.iter())
            .filter_map(|s| s.points[..s.points.partition_point(|p| p.0 <= now_ms)].last().map(|p| p.0))
            .max()
    }

    /// The counters the window holds.
    pub fn counter_names(&self) -> impl Iterator<Item = &str> {
        self.counters.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_points_sorted_and_replaces_same_instant() {
        let mut w = Window::new();
        w.declare("cpu", Some(30_000));
        let k = SeriesKey::new("cpu", "h1");
        for (ts, v) in [(1000, 1.0), (3000, 3.0), (2000, 2.0), (3000, 4.0)] {
            w.insert(&Sample::value(k.clone(), ts, v));
        }
        w.insert(&Sample::value(SeriesKey::new("other", "h1"), 1, 1.0));
        let s = &w.counter("cpu").map(|c| c.series.clone()).unwrap_or_default()[0];
        let ts: Vec<i64> = s.points.iter().map(|p| p.0).collect();
        assert_eq!(ts, vec![1000, 2000, 3000]);
        assert_eq!(s.points[2].1, Point::Value(4.0));
        assert_eq!(s.between(1000, 3000).len(), 2);
        assert!(!w.has_counter("other"));
        w.prune(10_000, 1_000);
        assert_eq!(w.len(), 1, "the newest point stays");
    }

    #[test]
    fn counters_and_host_sets_are_plain_inputs() {
        let mut w = Window::with_counters([("cpu", Some(30_000)), ("queue", None)]);
        assert_eq!(w.counter("cpu").map(|c| c.lookback_ms), Some(Some(30_000)));
        assert_eq!(w.counter("queue").map(|c| c.lookback_ms), Some(None));
        let web = vec![vec!["web-01".to_string(), "127.0.0.1:18001".into(), "127.0.0.1".into()], vec!["web-02".to_string()]];
        w.set_hosts([("web".to_string(), web)]);
        let set = &w.groups["web"];
        assert_eq!((set.members, set.alias.get("127.0.0.1"), set.alias.get("web-02")), (2, Some(&0), Some(&1)));
        w.set_hosts([("db".to_string(), vec![])]);
        assert_eq!(w.groups.keys().collect::<Vec<_>>(), vec!["db"], "the sets are replaced");
    }
}
