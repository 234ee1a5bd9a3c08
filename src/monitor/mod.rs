//! Collection: the [`Collector`] seam, the sources behind it, the parsers and
//! the scheduler that runs every counter at its interval.
//!
//! ```text
//! fleet::Fleet (config + recorded nodes) -> plan_jobs (counter x host) -> scheduler
//!   (interval, jitter, timeout, bounded concurrency) -> Collector::collect
//!   -> parse -> samples (value | failure) -> sink (the store)
//! ```
//!
//! A [`Job`] is one counter on one host, except `jmx`, where every counter of
//! a host with the same interval is one job (one bulk Jolokia POST). The
//! secrets a job needs from its target ([`credentials`]) are read once, when
//! the jobs are planned; one that cannot be read makes every collection of
//! the job a failure that names it. Each job
//! runs on its own task, so a slow, dead or hanging host only ever delays
//! itself; a collection that fails or times out becomes a failure sample,
//! never a number.
//!
//! Must not depend on: rules, triggers, the CLI.

pub mod credentials;
pub mod http;
pub mod jmx;
pub mod local;
pub mod parse;
pub mod redis;
pub mod scheduler;
pub mod snmp;
pub mod ssh;
pub mod stream;
pub mod stream_ssh;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::Config;
use crate::fleet::{Fleet, HostPort};
use crate::model::{Counter, Parse, Source, Target};
use crate::store::{Sample, SeriesKey};
use parse::{ParseError, Parser, RateTracker, Reading};

/// Default collection interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default collection timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How many intervals `last()` looks back by default.
pub const LOOKBACK_INTERVALS: u32 = 3;
/// The host of local sources without targets.
pub const LOCAL_HOST: &str = "local";

/// Why a collection failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CollectError {
    /// It took longer than its timeout.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The host could not be reached.
    #[error("cannot connect to `{addr}`: {detail}")]
    Connect {
        /// Address.
        addr: String,
        /// Cause.
        detail: String,
    },
    /// A command failed.
    #[error("`{command}` {detail}")]
    Command {
        /// The rendered command.
        command: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// An HTTP error status.
    #[error("HTTP {status} from `{url}`")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The answer could not be turned into numbers.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A protocol-level error (SNMP, Redis, Jolokia, HTTP transport).
    #[error("{0}")]
    Protocol(String),
    /// The counter's settings cannot work (bad template, bad OID...).
    #[error("{0}")]
    Config(String),
}

impl CollectError {
    /// Whether trying again at once may help (connect failures only).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CollectError::Connect { .. })
    }
}

/// A counter ready to collect: the config plus its compiled parser.
#[derive(Debug, Clone)]
pub struct CounterSpec {
    /// The counter as configured.
    pub counter: Counter,
    /// The compiled parser.
    pub parser: Parser,
}

impl CounterSpec {
    /// Compiles a counter (its parser: default `json` for http/jmx sources,
    /// else `number`).
    pub fn compile(counter: &Counter) -> Result<CounterSpec, CollectError> {
        let default = match &counter.source {
            Source::Http(_) => Parse::Json("$".into()),
            _ => Parse::Number,
        };
        let parser = Parser::compile(counter.parse.as_ref().unwrap_or(&default)).map_err(|e| CollectError::Config(format!("counter `{}`: {e}", counter.name)))?;
        Ok(CounterSpec { counter: counter.clone(), parser })
    }

    /// The counter's name.
    pub fn name(&self) -> &str {
        &self.counter.name
    }
}

/// One unit of scheduled work: counters (one, or several for a bulk source)
/// on one host.
#[derive(Debug, Clone)]
pub struct Job {
    /// The counters, all with the same source kind and interval.
    pub counters: Vec<Arc<CounterSpec>>,
    /// The host its series carry: the address as written in the target or
    /// recorded for the node (`host` or `host:port`), the node's name or
    /// static entry for `ssh` sources, or [`LOCAL_HOST`].
    pub host: String,
    /// Where to reach it (the collectors add their default ports).
    pub address: HostPort,
    /// The target it comes from (settings, labels).
    pub target: Option<Arc<Target>>,
    /// How often.
    pub interval: Duration,
    /// How long one collection may take.
    pub timeout: Duration,
    /// How to reach the host over SSH (`ssh` sources).
    pub ssh: Option<crate::exec::SshParams>,
    /// The target's secrets the source needs, read when the job was planned
    /// (or why they could not be).
    pub credentials: Secrets,
}

/// A job's [`credentials::Credentials`], or why one could not be read.
pub type Secrets = Result<Arc<credentials::Credentials>, CollectError>;

/// No credentials (a job whose source needs none).
pub fn no_secrets() -> Secrets {
    Ok(Arc::default())
}

impl Job {
    /// `counter@host` (first counter), for logs.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.counters.iter().map(|c| c.name()).collect();
        format!("{}@{}", names.join(","), self.host)
    }

    /// The job's credentials, or the error that fails each of its counters.
    pub fn credentials(&self) -> Result<&credentials::Credentials, CollectError> {
        self.credentials.as_deref().map_err(Clone::clone)
    }

    /// Labels of the counter's series: target labels, then counter labels.
    pub fn labels(&self, counter: &CounterSpec) -> BTreeMap<String, String> {
        let mut labels = self.target.as_ref().map(|t| t.labels.clone()).unwrap_or_default();
        labels.extend(counter.counter.labels.clone());
        labels
    }
}

/// What collecting one counter gave.
pub type Outcome = Result<Vec<Reading>, CollectError>;

/// A source: collects the counters of a job from its host.
#[async_trait]
pub trait Collector: Send + Sync {
    /// One outcome per counter of `job`, in order. The scheduler applies the
    /// timeout; an implementation reuses connections across calls.
    async fn collect(&self, job: &Job) -> Vec<Outcome>;
}

/// Which filters choose the jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this counter.
    pub counter: Option<String>,
    /// Only this target.
    pub target: Option<String>,
}

/// A counter that cannot be scheduled, and why (reported, not fatal).
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The counter.
    pub counter: String,
    /// Why.
    pub reason: String,
}

/// A counter's collection interval: its own, else the project default,
/// else [`DEFAULT_INTERVAL`].
pub fn interval(config: &Config, counter: &Counter) -> Duration {
    let default = config.project.spec.defaults.as_ref().and_then(|d| d.interval.as_ref()).map(|d| d.get());
    counter.interval.as_ref().map(|d| d.get()).or(default).unwrap_or(DEFAULT_INTERVAL)
}

/// A counter's default lookback for `last()`: [`LOOKBACK_INTERVALS`] x its
/// [`interval`]; `None` for pushed values, alerts and traps, whose last
/// value holds until replaced.
pub fn lookback_ms(config: &Config, counter: &Counter) -> Option<i64> {
    if matches!(counter.source, Source::Push(_) | Source::Alertmanager(_) | Source::Trap(_)) {
        return None;
    }
    let ms = i64::try_from(interval(config, counter).as_millis()).unwrap_or(i64::MAX);
    Some(ms.saturating_mul(i64::from(LOOKBACK_INTERVALS)))
}

/// Every counter of the config with its [`lookback_ms`]: what the rules'
/// window declares.
pub fn lookbacks(config: &Config) -> impl Iterator<Item = (&str, Option<i64>)> {
    config.counters.values().map(move |c| (c.spec.name.as_str(), lookback_ms(config, &c.spec)))
}

/// Turns the config into jobs: one per counter and host of the fleet (bulk
/// sources: one per host and interval), with intervals and timeouts
/// resolved. Sources this build does not collect are reported as
/// [`Skipped`].
pub fn plan_jobs(fleet: &Fleet<'_>, filter: &JobFilter) -> (Vec<Job>, Vec<Skipped>) {
    let config = fleet.config();
    let defaults = config.project.spec.defaults.as_ref();
    let default_timeout = defaults.and_then(|d| d.timeout.as_ref()).map(|d| d.get()).unwrap_or(DEFAULT_TIMEOUT);
    let mut jobs: Vec<Job> = Vec::new();
    let mut skipped = Vec::new();
    // Each target's secrets are read once per source kind, whatever the number of counters.
    let mut secrets: BTreeMap<(String, &'static str), Secrets> = BTreeMap::new();
    for located in config.counters.values() {
        let counter = &located.spec;
        if filter.counter.as_ref().is_some_and(|c| c != &counter.name) {
            continue;
        }
        let supported = matches!(counter.source, Source::Ssh(_) | Source::Local(_) | Source::Http(_) | Source::Redis(_) | Source::Snmp(_) | Source::Jmx(_));
        if matches!(counter.source, Source::Stream(_)) {
            skipped.push(Skipped { counter: counter.name.clone(), reason: "`stream` counters run with `scaler trace start`".into() });
            continue;
        }
        if matches!(counter.source, Source::Push(_) | Source::Alertmanager(_) | Source::Trap(_)) {
            // Passive: nothing to poll; the daemon's receivers take its values.
            let how = match counter.source {
                Source::Push(_) => "`PUT /api/v1/push/NAME` on `scaler daemon`",
                Source::Alertmanager(_) => "the Alertmanager webhook (`POST /api/v1/alerts`) on `scaler daemon`",
                _ => "the SNMP trap receiver of `scaler daemon`",
            };
            skipped.push(Skipped { counter: counter.name.clone(), reason: format!("source `{}` is passive: its values arrive through {how}, not by collection", counter.source.name()) });
            continue;
        }
        if !supported {
            skipped.push(Skipped { counter: counter.name.clone(), reason: format!("source `{}` is not collected by this build", counter.source.name()) });
            continue;
        }
        let spec = match CounterSpec::compile(counter) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                skipped.push(Skipped { counter: counter.name.clone(), reason: e.to_string() });
                continue;
            }
        };
        let interval = interval(config, counter).max(Duration::from_millis(10));
        let timeout = counter.timeout.as_ref().map(|d| d.get()).unwrap_or(default_timeout);
        for name in &counter.targets {
            if filter.target.as_ref().is_some_and(|t| t != name) {
                continue;
            }
            let Some(target) = config.targets.get(name) else { continue };
            let target = Arc::new(target.spec.clone());
            let credentials = secrets
                .entry((name.clone(), counter.source.name()))
                .or_insert_with(|| credentials::resolve(&config.root, &target, &counter.source).map(Arc::new))
                .clone();
            if matches!(counter.source, Source::Ssh(_)) {
                match crate::exec::resolve(fleet, name, &crate::exec::SshOverrides::default()) {
                    Ok(hosts) => {
                        for h in hosts {
                            let address = match &h.ssh {
                                Some(p) => HostPort { host: p.address.clone(), port: Some(p.port) },
                                None => local_address(),
                            };
                            jobs.push(Job { counters: vec![spec.clone()], host: h.name, address, target: Some(target.clone()), interval, timeout, ssh: h.ssh, credentials: credentials.clone() });
                        }
                    }
                    Err(e) => skipped.push(Skipped { counter: counter.name.clone(), reason: e }),
                }
                continue;
            }
            match fleet.hosts_of(name) {
                Ok(hosts) => {
                    for h in hosts {
                        jobs.push(Job { counters: vec![spec.clone()], host: h.address, address: h.endpoint, target: Some(target.clone()), interval, timeout, ssh: None, credentials: credentials.clone() });
                    }
                }
                Err(e) => skipped.push(Skipped { counter: counter.name.clone(), reason: e.to_string() }),
            }
        }
        if counter.targets.is_empty() && matches!(counter.source, Source::Local(_)) && filter.target.is_none() {
            jobs.push(Job { counters: vec![spec.clone()], host: LOCAL_HOST.into(), address: local_address(), target: None, interval, timeout, ssh: None, credentials: no_secrets() });
        }
    }
    (merge_bulk(jobs), skipped)
}

/// The address of [`LOCAL_HOST`] jobs.
pub fn local_address() -> HostPort {
    HostPort { host: LOCAL_HOST.into(), port: None }
}

/// Merges the `jmx` jobs of one host, target and interval into one job (one
/// bulk request), and the `http` jobs of one host, target and interval that
/// read the same URL (one GET for all of them); its timeout is the longest
/// of theirs.
fn merge_bulk(jobs: Vec<Job>) -> Vec<Job> {
    let mut out: Vec<Job> = Vec::with_capacity(jobs.len());
    let mut bulk: BTreeMap<(String, String, Duration, String), usize> = BTreeMap::new();
    for job in jobs {
        let shared = match job.counters.first().map(|c| &c.counter.source) {
            Some(Source::Jmx(_)) => Some("jmx".to_string()),
            Some(Source::Http(src)) => http::url_of(&job, src.url.as_deref()).ok().map(|u| format!("http {u}")),
            _ => None,
        };
        let Some(shared) = shared else {
            out.push(job);
            continue;
        };
        let key = (job.host.clone(), job.target.as_ref().map(|t| t.name.clone()).unwrap_or_default(), job.interval, shared);
        match bulk.get(&key) {
            Some(&i) => {
                out[i].timeout = out[i].timeout.max(job.timeout);
                out[i].counters.extend(job.counters);
            }
            None => {
                bulk.insert(key, out.len());
                out.push(job);
            }
        }
    }
    out
}


/// Turns a job's outcomes at `ts_ms` into samples: one per reading (labels:
/// target, counter, reading), rates through `rates` for `rate: true`
/// counters (the first reading only sets the baseline, so it yields no
/// sample), and one failure sample per failed counter.
pub fn to_samples(job: &Job, ts_ms: i64, outcomes: Vec<Outcome>, rates: &mut RateTracker) -> Vec<Sample> {
    let mut out = Vec::new();
    for (spec, outcome) in job.counters.iter().zip(outcomes) {
        let base = SeriesKey { counter: spec.name().to_string(), host: job.host.clone(), labels: job.labels(spec) };
        match outcome {
            Ok(readings) => {
                for r in readings {
                    let mut key = base.clone();
                    key.labels.extend(r.labels);
                    if spec.counter.rate {
                        let id = serde_json::to_string(&key).unwrap_or_default();
                        if let Some(rate) = rates.observe(&id, ts_ms, r.value) {
                            out.push(Sample::value(key, ts_ms, rate));
                        }
                    } else {
                        out.push(Sample::value(key, ts_ms, r.value));
                    }
                }
            }
            // An error may quote what a server answered: a secret it echoes is masked.
            Err(e) => out.push(Sample::error(base, ts_ms, crate::redact::scrub(&e.to_string()))),
        }
    }
    out
}

/// Every source this build collects, dispatched by the job's source.
pub struct Sources {
    /// `local` commands.
    pub local: local::LocalCollector,
    /// `http` GETs.
    pub http: http::HttpCollector,
    /// `redis` replies.
    pub redis: redis::RedisCollector,
    /// `snmp` GET/WALK.
    pub snmp: snmp::SnmpCollector,
    /// `jmx` through Jolokia.
    pub jmx: jmx::JmxCollector,
    /// `ssh` commands, one connection per host.
    pub ssh: ssh::SshCollector,
}

impl Sources {
    /// Every source with fresh connection pools.
    pub fn new() -> Result<Sources, CollectError> {
        Ok(Sources {
            local: local::LocalCollector,
            http: http::HttpCollector::new()?,
            redis: redis::RedisCollector::default(),
            snmp: snmp::SnmpCollector::default(),
            jmx: jmx::JmxCollector::new()?,
            ssh: ssh::SshCollector::default(),
        })
    }
}

#[async_trait]
impl Collector for Sources {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let Some(first) = job.counters.first() else { return Vec::new() };
        match &first.counter.source {
            Source::Local(_) => self.local.collect(job).await,
            Source::Http(_) => self.http.collect(job).await,
            Source::Redis(_) => self.redis.collect(job).await,
            Source::Snmp(_) => self.snmp.collect(job).await,
            Source::Jmx(_) => self.jmx.collect(job).await,
            Source::Ssh(_) => self.ssh.collect(job).await,
            other => job
                .counters
                .iter()
                .map(|_| Err(CollectError::Config(format!("source `{}` is not collected by this build", other.name()))))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(rate: bool) -> Job {
        let counter: Counter = serde_json::from_value(serde_json::json!({
            "name": "req", "source": {"local": {"command": "x"}}, "rate": rate, "labels": {"env": "prod"}
        }))
        .unwrap();
        Job { counters: vec![Arc::new(CounterSpec::compile(&counter).unwrap())], host: "h1".into(), address: HostPort { host: "h1".into(), port: None }, target: None, interval: DEFAULT_INTERVAL, timeout: DEFAULT_TIMEOUT, ssh: None, credentials: no_secrets() }
    }

    #[test]
    fn outcomes_become_samples_and_failures_never_numbers() {
        let mut rates = RateTracker::new();
        let j = job(false);
        let s = to_samples(&j, 1000, vec![Ok(vec![Reading::plain(4.0), Reading::labelled("field", "a", 5.0)])], &mut rates);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].series.labels, BTreeMap::from([("env".to_string(), "prod".to_string())]));
        assert_eq!(s[1].series.labels.get("field").map(String::as_str), Some("a"));
        let s = to_samples(&j, 2000, vec![Err(CollectError::Timeout(Duration::from_secs(5)))], &mut rates);
        assert_eq!(s, vec![Sample::error(SeriesKey { counter: "req".into(), host: "h1".into(), labels: j.labels(&j.counters[0]) }, 2000, "timed out after 5s")]);
    }

    #[test]
    fn jmx_counters_of_a_host_and_interval_become_one_bulk_job() {
        let jmx = |name: &str| {
            let c: Counter = serde_json::from_value(serde_json::json!({"name": name, "source": {"jmx": {"mbean": "m:type=X", "attribute": "A"}}})).unwrap();
            Arc::new(CounterSpec::compile(&c).unwrap())
        };
        let j = |c: Arc<CounterSpec>, host: &str, secs: u64| Job { counters: vec![c], host: host.into(), address: HostPort { host: host.into(), port: None }, target: None, interval: Duration::from_secs(secs), timeout: Duration::from_secs(secs), ssh: None, credentials: no_secrets() };
        let merged = merge_bulk(vec![j(jmx("a"), "h1", 10), job(false), j(jmx("b"), "h1", 10), j(jmx("c"), "h2", 10), j(jmx("d"), "h1", 30)]);
        let shape: Vec<(String, usize)> = merged.iter().map(|m| (m.host.clone(), m.counters.len())).collect();
        assert_eq!(shape, vec![("h1".to_string(), 2), ("h1".to_string(), 1), ("h2".to_string(), 1), ("h1".to_string(), 1)]);
        assert_eq!(merged[0].describe(), "a,b@h1");
        let body = jmx::bulk_request(&merged[0]).unwrap();
        assert_eq!(body, serde_json::json!([{"type": "read", "mbean": "m:type=X", "attribute": "A"}, {"type": "read", "mbean": "m:type=X", "attribute": "A"}]));
    }

    #[test]
    fn rate_counters_skip_the_baseline() {
        let mut rates = RateTracker::new();
        let j = job(true);
        assert!(to_samples(&j, 0, vec![Ok(vec![Reading::plain(100.0)])], &mut rates).is_empty());
        let s = to_samples(&j, 10_000, vec![Ok(vec![Reading::plain(150.0)])], &mut rates);
        assert_eq!(s[0].value, crate::store::SampleValue::Value(5.0));
    }
}
