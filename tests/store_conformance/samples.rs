//! The time-series side (`SampleStore`): appends, failures, range queries
//! with nulls, window aggregates per host and across hosts, retention with
//! rollups, events, persistence across connections.

use std::time::Duration;

use scaler::store::{Agg, Event, RangeQuery, Retention, Sample, SampleValue, SeriesKey, Selector};

use super::Harness;

pub(crate) const T0: i64 = 1_704_067_200_000;
pub(crate) const S: i64 = 10_000;

fn key(counter: &str, host: &str) -> SeriesKey {
    SeriesKey::new(counter, host)
}

/// Two days of `mem` on `h1` every 10 s (`i % 60`: every 10-minute mean is
/// 29.5), a failure and an event at the start, and the retention of one
/// raw day that [`retention_downsamples_old_data_into_rollups_and_drops_the_oldest`]
/// applies.
pub(crate) fn two_days_of_samples(st: &mut dyn scaler::store::Backend) -> Retention {
    let k = key("mem", "h1");
    let samples: Vec<Sample> = (0..17_280i64).map(|i| Sample::value(k.clone(), T0 + i * S, (i % 60) as f64)).collect();
    st.append(&samples).unwrap();
    st.append(&[Sample::error(k.clone(), T0, "refused")]).unwrap();
    st.append_events(&[Event { source: "trace:x".into(), host: "h1".into(), ts_ms: T0, text: "old".into() }], &[]).unwrap();
    Retention { raw: Duration::from_secs(86_400), rollup_step: Duration::from_secs(600), rollup: Duration::from_secs(3 * 86_400) }
}

pub(super) fn appended_samples_and_failures_come_back_exactly<H: Harness>() {
    let h = H::new();
    let mut st = h.connect();
    let k = key("load", "h1");
    st.append(&[Sample::value(k.clone(), T0, 0.5), Sample::error(k.clone(), T0 + S, "timed out after 10s"), Sample::value(k.clone(), T0 + 2 * S, 1.5)])
        .unwrap();
    let raw = st.raw(&Selector::counter("load"), T0, T0 + 3 * S).unwrap();
    assert_eq!(raw, vec![(k.clone(), vec![(T0, 0.5), (T0 + 2 * S, 1.5)])], "a failure is never a number");
    assert_eq!(st.failures(&Selector::counter("load"), T0, T0 + 3 * S).unwrap(), vec![(k.clone(), T0 + S, "timed out after 10s".to_string())]);
    let latest = st.latest(&Selector::counter("load"), T0 + S).unwrap();
    assert_eq!(latest[0].value, SampleValue::Error("timed out after 10s".into()));
    assert_eq!(st.latest(&Selector::counter("load"), T0 + 5 * S).unwrap()[0].value, SampleValue::Value(1.5));
    assert_eq!(st.last_value(&Selector::counter("load"), T0 + 5 * S).unwrap(), vec![(k.clone(), Some((T0 + 2 * S, 1.5)))]);
    drop(st);
    // another connection (another process) sees the same
    let st = h.connect();
    assert_eq!(st.raw(&Selector::counter("load"), T0, T0 + 3 * S).unwrap()[0].1.len(), 2);
}

pub(super) fn range_queries_step_and_put_null_where_there_is_no_data<H: Harness>() {
    let h = H::new();
    let mut st = h.connect();
    let k = key("cpu", "h1");
    let samples: Vec<Sample> = [(0, 10.0), (1, 20.0), (2, 30.0), (5, 60.0)].iter().map(|(i, v)| Sample::value(k.clone(), T0 + i * S, *v)).collect();
    st.append(&samples).unwrap();
    let q = RangeQuery { selector: Selector::counter("cpu"), from_ms: T0, to_ms: T0 + 6 * S, step_ms: 2 * S };
    let got = st.range(&q).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].points, vec![(T0, Some(15.0)), (T0 + 2 * S, Some(30.0)), (T0 + 4 * S, Some(60.0))]);
    let q = RangeQuery { selector: Selector::counter("cpu"), from_ms: T0 + 3 * S, to_ms: T0 + 5 * S, step_ms: S };
    assert_eq!(st.range(&q).unwrap()[0].points, vec![(T0 + 3 * S, None), (T0 + 4 * S, None)]);
    assert!(st.range(&RangeQuery { selector: Selector::counter("nope"), ..q }).unwrap().is_empty());
    // Half-open: the sample at `to` (T0 + 5 s) is not in [T0 + 4 s, T0 + 5 s).
    let q = RangeQuery { selector: Selector::counter("cpu"), from_ms: T0 + 4 * S, to_ms: T0 + 5 * S, step_ms: S };
    assert_eq!(st.range(&q).unwrap()[0].points, vec![(T0 + 4 * S, None)]);
}

pub(super) fn aggregates_per_host_and_across_a_group_of_hosts<H: Harness>() {
    let h = H::new();
    let mut st = h.connect();
    let mut samples = Vec::new();
    for (h, base) in [("a", 1.0), ("b", 3.0), ("c", 100.0)] {
        for i in 0..3i64 {
            samples.push(Sample::value(key("load", h), T0 + i * S, base + i as f64));
        }
    }
    st.append(&samples).unwrap();
    let per_host = st.aggregate(&Selector::counter("load").hosts(&["a", "b"]), Agg::Avg, T0, T0 + 2 * S).unwrap();
    assert_eq!(per_host, vec![(key("load", "a"), Some(2.0)), (key("load", "b"), Some(4.0))]);
    let sel = Selector::counter("load").hosts(&["a", "b"]);
    assert_eq!(st.aggregate_across(&sel, Agg::Avg, T0, T0 + 2 * S).unwrap(), Some(3.0));
    assert_eq!(st.aggregate_across(&sel, Agg::Max, T0, T0 + 2 * S).unwrap(), Some(5.0));
    assert_eq!(st.aggregate_across(&sel, Agg::Min, T0 + S, T0 + 2 * S).unwrap(), Some(2.0));
    assert_eq!(st.aggregate_across(&sel, Agg::Count, T0, T0 + 2 * S).unwrap(), Some(6.0));
    assert_eq!(st.aggregate_across(&sel, Agg::Rate, T0, T0 + 2 * S).unwrap(), Some(0.2));
    assert_eq!(st.aggregate_across(&Selector::counter("load").host("zz"), Agg::Avg, T0, T0 + 2 * S).unwrap(), None);
}

pub(super) fn retention_downsamples_old_data_into_rollups_and_drops_the_oldest<H: Harness>() {
    let h = H::new();
    let mut st = h.connect();
    let retention = two_days_of_samples(st.as_mut());
    let now = T0 + 2 * 86_400_000;
    let report = st.maintain(now, &retention).unwrap();
    // at most the first day (8640 samples) is past the cutoff; how much of
    // it a pass rolls up is the backend's choice (SQLite: whole chunks,
    // see `store_sqlite`), but at least the first hour
    assert!((360..=8640).contains(&report.rolled_up), "{report:?}");
    assert_eq!(report.dropped, 2, "the old failure and event");
    // raw data of the first day is gone; a query still sees its 10-minute means
    let q = RangeQuery { selector: Selector::counter("mem"), from_ms: T0, to_ms: T0 + 2_400_000, step_ms: 600_000 };
    assert_eq!(st.range(&q).unwrap()[0].points, vec![(T0, Some(29.5)), (T0 + 600_000, Some(29.5)), (T0 + 1_200_000, Some(29.5)), (T0 + 1_800_000, Some(29.5))]);
    assert!(st.raw(&Selector::counter("mem"), T0, T0 + 3_600_000).unwrap()[0].1.is_empty());
    // the whole two days still average the same
    let q = RangeQuery { selector: Selector::counter("mem"), from_ms: T0, to_ms: T0 + 2 * 86_400_000, step_ms: 2 * 86_400_000 };
    assert_eq!(st.range(&q).unwrap()[0].points, vec![(T0, Some(29.5))]);
    // later, rollups past their retention go too
    let report = st.maintain(now + 3 * 86_400_000, &retention).unwrap();
    assert!(report.rollups_dropped > 0);
    let q = RangeQuery { selector: Selector::counter("mem"), from_ms: T0, to_ms: T0 + 86_400_000, step_ms: 86_400_000 };
    assert_eq!(st.range(&q).unwrap()[0].points, vec![(T0, None)]);
}

pub(super) fn series_are_told_apart_by_labels<H: Harness>() {
    let h = H::new();
    let mut st = h.connect();
    let mut a = key("load", "h1");
    a.labels.insert("field".into(), "load1".into());
    let mut b = key("load", "h1");
    b.labels.insert("field".into(), "load5".into());
    st.append(&[Sample::value(a.clone(), T0, 1.0), Sample::value(b.clone(), T0, 5.0)]).unwrap();
    assert_eq!(st.series(&Selector::counter("load")).unwrap(), vec![a.clone(), b.clone()]);
    let mut sel = Selector::counter("load");
    sel.labels.insert("field".into(), "load5".into());
    assert_eq!(st.raw(&sel, T0, T0).unwrap(), vec![(b, vec![(T0, 5.0)])]);
}

pub(super) fn events_are_kept_in_order_per_source<H: Harness>() {
    let h = H::new();
    let mut st = h.connect();
    let ev = |ts: i64, text: &str| Event { source: "trace:abc".into(), host: "local".into(), ts_ms: ts, text: text.into() };
    st.append_events(&[ev(T0, "one"), ev(T0, "two"), ev(T0 + 1, "three")], &[Sample::value(key("x", "local"), T0, 1.0)]).unwrap();
    let got: Vec<String> = st.events("trace:abc", T0, T0 + 10, 100).unwrap().into_iter().map(|e| e.text).collect();
    assert_eq!(got, vec!["one", "two", "three"]);
    assert_eq!(st.events("trace:abc", T0, T0 + 10, 2).unwrap().len(), 2);
    assert!(st.events("trace:other", T0, T0 + 10, 100).unwrap().is_empty());
}

pub(super) fn a_sample_at_an_instant_already_stored_replaces_it<H: Harness>() {
    let h = H::new();
    let mut st = h.connect();
    let k = key("load", "h1");
    // within one batch, the later one wins; so does a later batch
    st.append(&[Sample::value(k.clone(), T0, 1.0), Sample::value(k.clone(), T0 + S, 2.0), Sample::value(k.clone(), T0, 3.0)]).unwrap();
    st.append(&[Sample::value(k.clone(), T0 + S, 4.0), Sample::error(k.clone(), T0, "first"), Sample::error(k.clone(), T0, "second")]).unwrap();
    assert_eq!(st.raw(&Selector::counter("load"), T0, T0 + S).unwrap(), vec![(k.clone(), vec![(T0, 3.0), (T0 + S, 4.0)])]);
    assert_eq!(st.failures(&Selector::counter("load"), T0, T0 + S).unwrap(), vec![(k, T0, "second".to_string())]);
}
