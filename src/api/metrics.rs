//! `/metrics`: the daemon's own counters ([`Metrics`], atomics bumped where
//! the work happens) and the Prometheus text exposition format 0.0.4
//! ([`Exposition`], written by hand: `# HELP`, `# TYPE`, one line per
//! sample, label values escaped).
//!
//! What a scrape shows comes from two places: the counters of this process
//! (samples stored, collection errors, evaluations, fires, HTTP answers,
//! since it started) and the state store at scrape time (trigger states,
//! jobs by status, nodes, the latest value of every series), so a number
//! read from the store is the same one `scaler status` shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::store::{Sample, SampleValue, SeriesKey};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters of one daemon process, shared by the tasks that do the work
/// and read by `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    samples_stored: AtomicU64,
    sample_write_failures: AtomicU64,
    collection_errors: Mutex<BTreeMap<String, u64>>,
    evaluations: AtomicU64,
    evaluation_save_failures: AtomicU64,
    fires: Mutex<BTreeMap<String, u64>>,
    http_responses: Mutex<BTreeMap<u16, u64>>,
    http_requests: Mutex<BTreeMap<(String, &'static str), u64>>,
    collection_seconds: Mutex<BTreeMap<String, Histogram>>,
    actions: Mutex<BTreeMap<&'static str, u64>>,
    apply_seconds: Mutex<Histogram>,
    applies: Mutex<BTreeMap<&'static str, u64>>,
}

/// Upper bounds (seconds) of the duration histograms' buckets.
pub const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A duration histogram: counts per bucket of [`BUCKETS`] (not cumulative),
/// the total and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    /// Records one observation (seconds).
    pub fn observe(&mut self, secs: f64) {
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }
}

fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K, by: u64) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    *m.entry(key).or_insert(0) += by;
}

fn read<K: Ord + Clone>(map: &Mutex<BTreeMap<K, u64>>) -> BTreeMap<K, u64> {
    map.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Metrics {
    /// A batch of samples was stored: counts them, and the failed
    /// collections among them per counter.
    pub fn stored(&self, samples: &[Sample]) {
        self.samples_stored.fetch_add(samples.len() as u64, Ordering::Relaxed);
        for s in samples.iter().filter(|s| matches!(s.value, SampleValue::Error(_))) {
            bump(&self.collection_errors, s.series.counter.clone(), 1);
        }
    }

    /// A batch of `n` samples could not be stored.
    pub fn write_failed(&self, n: usize) {
        self.sample_write_failures.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One evaluation tick ran; `saved` tells whether its states and jobs
    /// reached the store.
    pub fn evaluated(&self, saved: bool) {
        self.evaluations.fetch_add(1, Ordering::Relaxed);
        if !saved {
            self.evaluation_save_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A trigger fired (its job is saved).
    pub fn fired(&self, trigger: &str) {
        bump(&self.fires, trigger.to_string(), 1);
    }

    /// An HTTP answer with this status was sent.
    pub fn answered(&self, status: u16) {
        bump(&self.http_responses, status, 1);
    }

    /// A request to `route` (the matched path template, `unmatched` for
    /// none) was answered with `status`.
    pub fn served(&self, route: &str, status: u16) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        bump(&self.http_requests, (route.to_string(), class), 1);
        self.answered(status);
    }

    /// One collection of `counter` took `secs` (timed-out ones are not
    /// observed: they count as collection errors).
    pub fn collected(&self, counter: &str, secs: f64) {
        let mut m = self.collection_seconds.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(counter.to_string()).or_default().observe(secs);
    }

    /// A job's action ran; `ok` tells whether it succeeded.
    pub fn action_ran(&self, ok: bool) {
        bump(&self.actions, if ok { "ok" } else { "failed" }, 1);
    }

    /// The reconciler planned and applied (`result`: `ok`, `refused`,
    /// `failed`) in `secs`.
    pub fn applied(&self, result: &'static str, secs: f64) {
        self.apply_seconds.lock().unwrap_or_else(|p| p.into_inner()).observe(secs);
        bump(&self.applies, result, 1);
    }

    /// Samples stored since start.
    pub fn samples_stored(&self) -> u64 {
        self.samples_stored.load(Ordering::Relaxed)
    }
}

/// What a scrape reads from the store (and the config), beside the counters.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// `scaler` version and the config revision running.
    pub version: &'static str,
    /// The config revision.
    pub revision: String,
    /// Start of the daemon (ms).
    pub started_ms: i64,
    /// Now (ms).
    pub now_ms: i64,
    /// Every configured counter (so its error count shows as 0).
    pub counters: Vec<String>,
    /// Every configured trigger with its state word (`inactive`, ...).
    pub triggers: Vec<(String, &'static str)>,
    /// Jobs by status, every status present.
    pub jobs: BTreeMap<String, u64>,
    /// Recorded nodes by (group, status).
    pub nodes: BTreeMap<(String, String), u64>,
    /// The latest sample of every series: when, and its value (`None`: the
    /// latest collection failed).
    pub latest: Vec<LatestSample>,
    /// Push webhook deliveries by result (empty: no webhook).
    pub webhooks: BTreeMap<String, u64>,
    /// Failed fetches of the git source (`None`: a directory source).
    pub fetch_failures: Option<u64>,
}

/// The latest sample of a series: when (ms), and its value (`None`: the
/// collection failed).
pub type LatestSample = (SeriesKey, i64, Option<f64>);

/// Label names and values, as written.
type NamedLabels = Vec<(String, String)>;

/// The state words a trigger can be in, for `scaler_trigger_state`.
pub const STATES: [&str; 6] = ["inactive", "pending", "firing", "cooldown", "nodata", "error"];

/// The whole exposition: the counters of `m` and what `s` read.
pub fn render(m: &Metrics, s: &Scrape) -> String {
    let mut e = Exposition::default();
    e.family("scaler_build_info", "gauge", "Always 1; the labels tell the version and the config revision running.", [(
        vec![("version", s.version.to_string()), ("revision", s.revision.clone())],
        1.0,
    )]);
    e.family("scaler_start_time_seconds", "gauge", "When the daemon started (seconds since the epoch).", scalar(s.started_ms as f64 / 1000.0));
    e.family("scaler_uptime_seconds", "gauge", "Seconds since the daemon started.", scalar((s.now_ms - s.started_ms).max(0) as f64 / 1000.0));
    e.family("scaler_samples_stored_total", "counter", "Samples (values and failed collections) this process stored.", scalar(m.samples_stored() as f64));
    e.family("scaler_sample_write_failures_total", "counter", "Samples this process could not store.", scalar(m.sample_write_failures.load(Ordering::Relaxed) as f64));
    let mut errors = read(&m.collection_errors);
    for c in &s.counters {
        errors.entry(c.clone()).or_insert(0);
    }
    e.family(
        "scaler_collection_errors_total",
        "counter",
        "Failed collections stored, per counter.",
        errors.into_iter().map(|(c, n)| (vec![("counter", c)], n as f64)),
    );
    e.family("scaler_trigger_evaluations_total", "counter", "Evaluation ticks run (every trigger is evaluated on each).", scalar(m.evaluations.load(Ordering::Relaxed) as f64));
    e.family("scaler_trigger_evaluation_save_failures_total", "counter", "Evaluation ticks whose states could not be saved.", scalar(m.evaluation_save_failures.load(Ordering::Relaxed) as f64));
    let mut fires = read(&m.fires);
    for (t, _) in &s.triggers {
        fires.entry(t.clone()).or_insert(0);
    }
    e.family("scaler_trigger_fires_total", "counter", "Fires saved with their job, per trigger.", fires.into_iter().map(|(t, n)| (vec![("trigger", t)], n as f64)));
    e.family(
        "scaler_trigger_state",
        "gauge",
        "1 for the state each trigger is in (as saved in the state store), 0 for the others.",
        s.triggers.iter().flat_map(|(t, now)| {
            STATES.iter().map(move |st| (vec![("trigger", t.clone()), ("state", st.to_string())], if st == now { 1.0 } else { 0.0 }))
        }),
    );
    e.family("scaler_jobs", "gauge", "Jobs in the state store, per status.", s.jobs.iter().map(|(st, n)| (vec![("status", st.clone())], *n as f64)));
    e.family(
        "scaler_nodes",
        "gauge",
        "Recorded nodes, per group and status.",
        s.nodes.iter().map(|((g, st), n)| (vec![("group", g.clone()), ("status", st.clone())], *n as f64)),
    );
    e.family(
        "scaler_http_responses_total",
        "counter",
        "HTTP answers of the daemon's listener, per status code.",
        read(&m.http_responses).into_iter().map(|(code, n)| (vec![("code", code.to_string())], n as f64)),
    );
    e.family(
        "scaler_http_requests_total",
        "counter",
        "HTTP requests answered, per route (the matched path template, `unmatched` for none) and status class.",
        read(&m.http_requests).into_iter().map(|((route, class), n)| (vec![("route", route), ("class", class.to_string())], n as f64)),
    );
    let mut collections = m.collection_seconds.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for c in &s.counters {
        collections.entry(c.clone()).or_default();
    }
    e.histogram(
        "scaler_collection_duration_seconds",
        "How long collections took, per counter (a collection that timed out counts as an error, not here).",
        collections.iter().map(|(c, h)| (vec![("counter", c.clone())], h)),
    );
    let mut actions = read(&m.actions);
    for r in ["ok", "failed"] {
        actions.entry(r).or_insert(0);
    }
    e.family(
        "scaler_actions_total",
        "counter",
        "Trigger actions the job workers of this process ran, per result (a failed one is retried until the job is dead).",
        actions.into_iter().map(|(r, n)| (vec![("result", r.to_string())], n as f64)),
    );
    let apply = m.apply_seconds.lock().unwrap_or_else(|p| p.into_inner()).clone();
    e.histogram("scaler_apply_duration_seconds", "How long the reconciler took to plan and apply a change of desired counts.", [(Labels::new(), &apply)]);
    let mut applies = read(&m.applies);
    for r in ["ok", "refused", "failed"] {
        applies.entry(r).or_insert(0);
    }
    e.family(
        "scaler_applies_total",
        "counter",
        "Reconciler runs (plan and apply of a change of desired counts), per result.",
        applies.into_iter().map(|(r, n)| (vec![("result", r.to_string())], n as f64)),
    );
    e.family(
        "scaler_leader",
        "gauge",
        "1 when this daemon plans, applies and evaluates triggers. This build runs one daemon per state store, which is always the leader.",
        scalar(1.0),
    );
    if !s.webhooks.is_empty() {
        e.family(
        "scaler_webhook_deliveries_total",
        "counter",
        "Push webhook deliveries (`POST /hooks/git`), per result: queued, ignored, duplicate, unauthorized, malformed, too_large.",
        s.webhooks.iter().map(|(r, n)| (vec![("result", r.clone())], *n as f64)),
        );
    }
    if let Some(n) = s.fetch_failures {
        e.family("scaler_source_fetch_failures_total", "counter", "Failed fetches of the git config source since the daemon started.", scalar(n as f64));
    }
    let series = series_labels(&s.latest);
    e.family(
        "scaler_series_value",
        "gauge",
        "The latest collected value of every series (absent while its latest collection failed).",
        series.iter().filter_map(|(labels, _, v)| v.map(|v| (labels.clone(), v))),
    );
    e.family(
        "scaler_series_failing",
        "gauge",
        "1 when the latest collection of the series failed, else 0.",
        series.iter().map(|(labels, _, v)| (labels.clone(), if v.is_some() { 0.0 } else { 1.0 })),
    );
    e.family(
        "scaler_series_timestamp_seconds",
        "gauge",
        "When the latest sample of the series was taken (seconds since the epoch).",
        series.iter().map(|(labels, ts, _)| (labels.clone(), *ts as f64 / 1000.0)),
    );
    e.out
}

type Labels = Vec<(&'static str, String)>;

fn scalar(v: f64) -> [(Labels, f64); 1] {
    [(Vec::new(), v)]
}

/// The labels of each series (`counter`, `host`, then its own labels with
/// names made valid); a series whose labels collide with an earlier one's
/// after that is left out, so no sample line is repeated.
fn series_labels(latest: &[LatestSample]) -> Vec<(NamedLabels, i64, Option<f64>)> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for (key, ts, v) in latest {
        let mut labels = vec![("counter".to_string(), key.counter.clone()), ("host".to_string(), key.host.clone())];
        for (k, val) in &key.labels {
            let mut name = label_name(k);
            while labels.iter().any(|(n, _)| *n == name) {
                name = format!("label_{name}");
            }
            labels.push((name, val.clone()));
        }
        if seen.insert(labels.clone()) {
            out.push((labels, *ts, *v));
        }
    }
    out
}

/// A valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`, never starting with `__`
/// (reserved); other characters become `_`.
pub fn label_name(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    while out.starts_with("__") {
        out.replace_range(0..1, "l");
    }
    out
}

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: `NaN`, `+Inf`, `-Inf`, or the shortest decimal.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// The text being written: one family at a time (its samples together, as
/// the format wants).
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// Label names with their values.
pub trait LabelSet {
    /// `(name, value)` pairs.
    fn pairs(&self) -> Vec<(&str, &str)>;
}

impl LabelSet for Labels {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

impl LabelSet for NamedLabels {
    fn pairs(&self) -> Vec<(&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }
}

impl Exposition {
    /// A metric family: `# HELP`, `# TYPE` and one line per sample. A
    /// family with no samples is still declared.
    pub fn family<L: LabelSet>(&mut self, name: &str, kind: &str, help: &str, samples: impl IntoIterator<Item = (L, f64)>) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.sample(name, &labels, value);
        }
    }

    /// A histogram family: for each label set, cumulative `_bucket` lines
    /// (`le`, ending with `+Inf`), `_sum` and `_count`.
    pub fn histogram<'h>(&mut self, name: &str, help: &str, series: impl IntoIterator<Item = (Labels, &'h Histogram)>) {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} histogram");
        for (labels, h) in series {
            let mut below = 0;
            let bounds = BUCKETS.iter().map(|b| format_value(*b)).chain(std::iter::once("+Inf".to_string()));
            for (i, le) in bounds.enumerate() {
                below += h.buckets.get(i).copied().unwrap_or(0);
                let n = if le == "+Inf" { h.count } else { below };
                let mut l = labels.clone();
                l.push(("le", le));
                self.sample(&format!("{name}_bucket"), &l, n as f64);
            }
            self.sample(&format!("{name}_sum"), &labels, h.sum);
            self.sample(&format!("{name}_count"), &labels, h.count as f64);
        }
    }

    fn sample<L: LabelSet>(&mut self, name: &str, labels: &L, value: f64) {
        self.out.push_str(name);
        let pairs = labels.pairs();
        if !pairs.is_empty() {
            let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v))).collect();
            let _ = write!(self.out, "{{{}}}", text.join(","));
        }
        let _ = writeln!(self.out, " {}", format_value(value));
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_names_made_valid() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
        assert_eq!(label_name("disk.name"), "disk_name");
        assert_eq!(label_name("9lives"), "_9lives");
        assert_eq!(label_name("__reserved"), "l_reserved");
        assert_eq!(label_name(""), "_");
        assert_eq!(format_value(42.5), "42.5");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(3.0), "3");
    }

    #[test]
    fn a_family_is_declared_then_its_samples() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "Things.\nMore", [(vec![("k", "v\"1".to_string())], 2.0), (vec![("k", "b".to_string())], 0.5)]);
        e.family::<Labels>("empty", "gauge", "None yet.", []);
        assert_eq!(
            e.text(),
            "# HELP x_total Things.\\nMore\n# TYPE x_total counter\nx_total{k=\"v\\\"1\"} 2\nx_total{k=\"b\"} 0.5\n# HELP empty None yet.\n# TYPE empty gauge\n"
        );
    }

    #[test]
    fn series_become_counter_host_and_their_labels_once() {
        let mut a = SeriesKey::new("load", "web-01");
        a.labels.insert("field".into(), "load1".into());
        a.labels.insert("counter".into(), "x".into());
        let mut b = SeriesKey::new("load", "web-01");
        b.labels.insert("field".into(), "load1".into());
        b.labels.insert("counter".into(), "x".into());
        let got = series_labels(&[(a, 1, Some(1.0)), (b, 2, Some(2.0))]);
        assert_eq!(got.len(), 1, "the same labels twice are one series");
        let names: Vec<&str> = got[0].0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["counter", "host", "label_counter", "field"]);
    }

    #[test]
    fn counters_count_stored_samples_and_failures_per_counter() {
        let m = Metrics::default();
        m.stored(&[Sample::value(SeriesKey::new("q", "h"), 1, 1.0), Sample::error(SeriesKey::new("q", "h"), 2, "down")]);
        m.fired("deep");
        m.evaluated(true);
        m.served("/api/v1/status", 200);
        m.collected("q", 0.25);
        m.collected("q", 0.5);
        m.collected("q", 100.0);
        m.action_ran(false);
        m.served("unmatched", 404);
        let s = Scrape { version: "0.1.0", counters: vec!["q".into(), "idle".into()], triggers: vec![("deep".into(), "cooldown")], ..Scrape::default() };
        let text = render(&m, &s);
        for line in [
            "scaler_samples_stored_total 2",
            "scaler_collection_errors_total{counter=\"q\"} 1",
            "scaler_collection_errors_total{counter=\"idle\"} 0",
            "scaler_trigger_fires_total{trigger=\"deep\"} 1",
            "scaler_trigger_state{trigger=\"deep\",state=\"cooldown\"} 1",
            "scaler_trigger_state{trigger=\"deep\",state=\"firing\"} 0",
            "scaler_trigger_evaluations_total 1",
            "scaler_http_responses_total{code=\"200\"} 1",
            "scaler_http_requests_total{route=\"/api/v1/status\",class=\"2xx\"} 1",
            "scaler_http_requests_total{route=\"unmatched\",class=\"4xx\"} 1",
            "scaler_leader 1",
            "scaler_collection_duration_seconds_bucket{counter=\"q\",le=\"0.005\"} 0",
            "scaler_collection_duration_seconds_bucket{counter=\"q\",le=\"0.25\"} 1",
            "scaler_collection_duration_seconds_bucket{counter=\"q\",le=\"0.5\"} 2",
            "scaler_collection_duration_seconds_bucket{counter=\"q\",le=\"30\"} 2",
            "scaler_collection_duration_seconds_bucket{counter=\"q\",le=\"+Inf\"} 3",
            "scaler_collection_duration_seconds_count{counter=\"q\"} 3",
            "scaler_collection_duration_seconds_sum{counter=\"q\"} 100.75",
            "scaler_collection_duration_seconds_count{counter=\"idle\"} 0",
            "scaler_actions_total{result=\"failed\"} 1",
            "scaler_actions_total{result=\"ok\"} 0",
            "scaler_apply_duration_seconds_count 0",
            "scaler_applies_total{result=\"refused\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
    }
}
