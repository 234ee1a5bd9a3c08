//! The recent samples the evaluator reads: an in-memory window per series,
//! fed by the collector and the passive inputs, seeded from the store at
//! start. Evaluating 10,000 triggers must not touch the database.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::model::{Counter, Source};
use crate::store::{NodeRecord, NodeStatus, Sample, SampleValue, SeriesKey};

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

/// Default collection interval when neither the counter nor the project
/// sets one.
pub const DEFAULT_INTERVAL_MS: i64 = 10_000;

/// How many intervals `last()` looks back by default.
pub const LOOKBACK_INTERVALS: i64 = 3;

/// A counter's default lookback: 3 × its interval (counter, else project
/// default, else 10s); `None` for pushed values, alerts and traps, whose
/// last value holds until replaced.
pub fn lookback_ms(config: &Config, counter: &Counter) -> Option<i64> {
    if matches!(counter.source, Source::Push(_) | Source::Alertmanager(_) | Source::Trap(_)) {
        return None;
    }
    let ms = |d: &crate::model::Duration| i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX);
    let interval = counter
        .interval
        .as_ref()
        .map(ms)
        .or_else(|| config.project.spec.defaults.as_ref().and_then(|d| d.interval.as_ref()).map(ms))
        .unwrap_or(DEFAULT_INTERVAL_MS);
    Some(interval.saturating_mul(LOOKBACK_INTERVALS))
}

impl Window {
    /// A window for a config: every counter declared with its lookback, and
    /// every Target and Group as a host set (static hosts; a group's
    /// running nodes under their name and address).
    pub fn from_config(config: &Config, nodes: &[NodeRecord]) -> Window {
        let mut w = Window::new();
        for c in config.counters.values() {
            w.declare(&c.spec.name, lookback_ms(config, &c.spec));
        }
        w.set_hosts(config, nodes);
        w
    }

    /// Replaces the host sets (after nodes changed).
    pub fn set_hosts(&mut self, config: &Config, nodes: &[NodeRecord]) {
        let node_members = |group: &str| -> Vec<Vec<String>> {
            nodes
                .iter()
                .filter(|n| n.group == group && n.status == NodeStatus::Running)
                .map(|n| {
                    let mut names = vec![n.name.clone()];
                    if let Some(a) = &n.address {
                        names.push(a.clone());
                        names.push(crate::monitor::split_host_port(a).0.to_string());
                    }
                    names
                })
                .collect()
        };
        self.groups.clear();
        for g in config.groups.keys() {
            self.groups.insert(g.clone(), HostSet::new(node_members(g)));
        }
        for (name, t) in &config.targets {
            let members = match (&t.spec.hosts, &t.spec.group) {
                (Some(hosts), _) => hosts
                    .iter()
                    .map(|h| vec![h.clone(), crate::monitor::split_host_port(h).0.to_string()])
                    .collect(),
                (None, Some(g)) => node_members(g),
                (None, None) => Vec::new(),
            };
            self.groups.insert(name.clone(), HostSet::new(members));
        }
    }

    /// Names of the declared counters.
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
}
