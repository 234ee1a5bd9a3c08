//! Passive inputs: values that other systems send to scaler instead of
//! scaler collecting them.
//!
//! ```text
//! PUT /api/v1/push/{counter}   --+
//! POST /api/v1/alerts (AM v4)  --+--> samples timed by receipt -> InputSink (the store)
//! SNMP v1/v2c traps (UDP)      --+
//! ```
//!
//! Every sample is timed by its receipt time (ms since the epoch, read from
//! the injected [`crate::clock::Clock`] when the request or datagram arrives, before it is
//! parsed), so a value that waits for the store keeps the instant it was
//! received. A sender is told 2xx only after the [`InputSink`] recorded the
//! samples. Which counters accept what is an [`InputConfig`] derived from
//! the config; it sits behind a lock ([`SharedConfig`]) so that a reload
//! swaps it without restarting the receivers.
//!
//! Owns: [`InputSink`], [`InputConfig`], [`router`] (push and Alertmanager
//! endpoints), [`TrapReceiver`].
//! Must not depend on: the CLI, rules; never prints (it logs with `tracing`).

mod alerts;
mod http;
mod traps;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use secrecy::SecretString;

use crate::config::Config;
use crate::model::{Counter, Source};
use crate::store::Sample;

pub use alerts::{AlertDedupe, AlertStatus, DEDUPE_CAPACITY, FIRING_TTL_MS, RESOLVED_TTL_MS};
pub use http::{bearer_refusal, router, BODY_LIMIT};
pub use traps::{map_trap, run_trap_receiver, TrapReceiver};

/// Default listen address of the SNMP trap receiver.
pub const DEFAULT_TRAP_LISTEN: &str = "127.0.0.1:9162";
/// Default community of the SNMP trap receiver.
pub const DEFAULT_TRAP_COMMUNITY: &str = "public";
/// Host of an Alertmanager sample whose alert has no `instance` label.
pub const ALERTMANAGER_HOST: &str = "alertmanager";
/// Host of a pushed value that names none.
pub const PUSH_HOST: &str = "push";

/// Where received samples go.
pub trait InputSink: Send + Sync + 'static {
    /// Durably records samples (the daemon appends them to the store and wakes the evaluator);
    /// only after Ok is the sender told 2xx.
    fn accept(&self, samples: Vec<Sample>) -> Result<(), String>;
}


/// The input config, swappable at runtime: a reload replaces the inner `Arc`.
pub type SharedConfig = Arc<RwLock<Arc<InputConfig>>>;

/// Wraps a config for [`router`] and [`TrapReceiver`].
pub fn shared(cfg: InputConfig) -> SharedConfig {
    Arc::new(RwLock::new(Arc::new(cfg)))
}

/// Replaces the config seen by the receivers (a config reload).
pub fn replace(shared: &SharedConfig, cfg: InputConfig) {
    let mut guard = shared.write().unwrap_or_else(|p| p.into_inner());
    *guard = Arc::new(cfg);
}

/// The config in force now.
pub fn current(shared: &SharedConfig) -> Arc<InputConfig> {
    shared.read().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Why the inputs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A secret (token, community) could not be read.
    #[error("cannot read {what}: {message}")]
    Secret {
        /// Which setting.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// The trap receiver could not bind its UDP socket.
    #[error("cannot listen for SNMP traps on `{addr}`: {message}")]
    Bind {
        /// The listen address.
        addr: String,
        /// Why.
        message: String,
    },
}

/// A counter with source `push`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PushCounter {
    /// The counter's labels, put on every series it gets.
    pub labels: BTreeMap<String, String>,
}

/// A counter with source `alertmanager`.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCounter {
    /// The counter's name.
    pub counter: String,
    /// The `alertname` label an alert must have.
    pub alertname: String,
    /// Other labels an alert must have, with these values.
    pub match_labels: BTreeMap<String, String>,
    /// The counter's labels, put on every series it gets.
    pub labels: BTreeMap<String, String>,
}

impl AlertCounter {
    /// Whether an alert with these labels feeds this counter.
    pub fn matches(&self, alert_labels: &BTreeMap<String, String>) -> bool {
        alert_labels.get("alertname") == Some(&self.alertname)
            && self.match_labels.iter().all(|(k, v)| alert_labels.get(k) == Some(v))
    }
}

/// A counter with source `trap`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrapCounter {
    /// The counter's name.
    pub counter: String,
    /// The trap OID (dotted, no leading dot).
    pub oid: String,
    /// The varbind whose value is the sample (dotted, no leading dot);
    /// `None`: 1 per trap.
    pub value_oid: Option<String>,
    /// The counter's labels, put on every series it gets.
    pub labels: BTreeMap<String, String>,
}

/// Which counters accept pushed values, alerts and traps, and the secrets
/// that guard them.
#[derive(Debug, Clone)]
pub struct InputConfig {
    /// Counters with source `push`, by name.
    pub push: BTreeMap<String, PushCounter>,
    /// Counters with source `alertmanager`.
    pub alerts: Vec<AlertCounter>,
    /// Counters with source `trap`.
    pub traps: Vec<TrapCounter>,
    /// Bearer token required by the HTTP endpoints (`None`: no token).
    pub token: Option<SecretString>,
    /// The community a trap must carry.
    pub trap_community: SecretString,
    /// Every other counter with its source's name, to explain a 404.
    pub other_sources: BTreeMap<String, &'static str>,
}

impl Default for InputConfig {
    fn default() -> InputConfig {
        InputConfig::from_counters(std::iter::empty())
    }
}

fn oid_text(oid: &str) -> String {
    oid.strip_prefix('.').unwrap_or(oid).to_string()
}

impl InputConfig {
    /// The counters of a config by source, its daemon token and its trap
    /// community (secrets are read now: a missing one is an error, never an
    /// open endpoint).
    pub fn from_config(config: &Config) -> Result<InputConfig, InputError> {
        let mut cfg = InputConfig::from_counters(config.counters.values().map(|l| &l.spec));
        let daemon = config.project.spec.daemon.as_ref();
        if let Some(r) = daemon.and_then(|d| d.token.as_ref()) {
            let token = crate::config::read_secret(&config.root, r)
                .map_err(|message| InputError::Secret { what: "the daemon `token`", message })?;
            cfg.token = Some(token);
        }
        if let Some(r) = daemon.and_then(|d| d.traps.as_ref()).and_then(|t| t.community.as_ref()) {
            cfg.trap_community = crate::config::read_secret(&config.root, r)
                .map_err(|message| InputError::Secret { what: "the trap `community`", message })?;
        }
        Ok(cfg)
    }

    /// The counters by source, with no token and the default community.
    pub fn from_counters<'a>(counters: impl IntoIterator<Item = &'a Counter>) -> InputConfig {
        let mut cfg = InputConfig {
            push: BTreeMap::new(),
            alerts: Vec::new(),
            traps: Vec::new(),
            token: None,
            trap_community: SecretString::from(DEFAULT_TRAP_COMMUNITY),
            other_sources: BTreeMap::new(),
        };
        for c in counters {
            match &c.source {
                Source::Push(_) => {
                    cfg.push.insert(c.name.clone(), PushCounter { labels: c.labels.clone() });
                }
                Source::Alertmanager(a) => cfg.alerts.push(AlertCounter {
                    counter: c.name.clone(),
                    alertname: a.alertname.clone(),
                    match_labels: a.labels.clone(),
                    labels: c.labels.clone(),
                }),
                Source::Trap(t) => cfg.traps.push(TrapCounter {
                    counter: c.name.clone(),
                    oid: oid_text(&t.oid),
                    value_oid: t.value_oid.as_deref().map(oid_text),
                    labels: c.labels.clone(),
                }),
                other => {
                    cfg.other_sources.insert(c.name.clone(), other.name());
                }
            }
        }
        cfg
    }
}

/// The trap receiver's listen address from a config (default
/// [`DEFAULT_TRAP_LISTEN`]).
pub fn trap_listen(config: &Config) -> String {
    config
        .project
        .spec
        .daemon
        .as_ref()
        .and_then(|d| d.traps.as_ref())
        .and_then(|t| t.listen.clone())
        .unwrap_or_else(|| DEFAULT_TRAP_LISTEN.to_string())
}

/// Whether a config has any counter with source `trap` (the daemon need not
/// listen for traps otherwise).
pub fn wants_traps(config: &Config) -> bool {
    config.counters.values().any(|l| matches!(l.spec.source, Source::Trap(_)))
}

/// A received value for a log line or an error message: escaped and cut to
/// `max` characters.
fn excerpt(text: &str, max: usize) -> String {
    let cut: String = text.chars().take(max).collect();
    if cut.len() < text.len() {
        format!("{cut:?}... ({} bytes)", text.len())
    } else {
        format!("{cut:?}")
    }
}

/// Logs at most a few warnings per minute and counts the rest, so a flood of
/// bad input cannot flood the log.
#[derive(Debug)]
struct WarnLimiter {
    window_start: std::time::Instant,
    logged: u32,
    suppressed: u64,
}

impl WarnLimiter {
    const PER_MINUTE: u32 = 10;

    fn new() -> WarnLimiter {
        WarnLimiter { window_start: std::time::Instant::now(), logged: 0, suppressed: 0 }
    }

    /// Whether to log now; when a new window starts, also how many were
    /// suppressed in the last one.
    fn allow(&mut self) -> (bool, u64) {
        let now = std::time::Instant::now();
        let mut dropped = 0;
        if now.duration_since(self.window_start) >= std::time::Duration::from_secs(60) {
            dropped = std::mem::take(&mut self.suppressed);
            self.window_start = now;
            self.logged = 0;
        }
        if self.logged < Self::PER_MINUTE {
            self.logged += 1;
            (true, dropped)
        } else {
            self.suppressed += 1;
            (false, dropped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AlertSource, PushSource, TrapSource};

    fn counter(name: &str, source: Source) -> Counter {
        Counter {
            name: name.into(),
            description: None,
            source,
            targets: vec![],
            interval: None,
            timeout: None,
            parse: None,
            rate: false,
            unit: None,
            units: Default::default(),
            labels: BTreeMap::from([("team".to_string(), "ops".to_string())]),
        }
    }

    #[test]
    fn counters_are_sorted_by_source() {
        let counters = [
            counter("queue", Source::Push(PushSource {})),
            counter("down", Source::Alertmanager(AlertSource { alertname: "Down".into(), labels: BTreeMap::from([("severity".into(), "page".into())]) })),
            counter("link", Source::Trap(TrapSource { oid: ".1.3.6.1.6.3.1.1.5.3".into(), value_oid: Some(".1.3.6.1.2.1.2.2.1.1".into()) })),
            counter("load", Source::Local(crate::model::CommandSource { command: "true".into() })),
        ];
        let cfg = InputConfig::from_counters(&counters);
        assert_eq!(cfg.push.keys().collect::<Vec<_>>(), ["queue"]);
        assert_eq!(cfg.push["queue"].labels["team"], "ops");
        assert_eq!(cfg.alerts[0].alertname, "Down");
        assert_eq!(cfg.traps[0].oid, "1.3.6.1.6.3.1.1.5.3", "the leading dot is dropped");
        assert_eq!(cfg.traps[0].value_oid.as_deref(), Some("1.3.6.1.2.1.2.2.1.1"));
        assert_eq!(cfg.other_sources["load"], "local");
        assert!(cfg.token.is_none());
    }

    #[test]
    fn alert_counters_match_alertname_and_every_label() {
        let c = AlertCounter {
            counter: "down".into(),
            alertname: "Down".into(),
            match_labels: BTreeMap::from([("severity".into(), "page".into())]),
            labels: BTreeMap::new(),
        };
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        assert!(c.matches(&labels(&[("alertname", "Down"), ("severity", "page"), ("job", "x")])));
        assert!(!c.matches(&labels(&[("alertname", "Down"), ("severity", "info")])));
        assert!(!c.matches(&labels(&[("alertname", "Down")])));
        assert!(!c.matches(&labels(&[("alertname", "Up"), ("severity", "page")])));
    }

    #[test]
    fn excerpts_are_escaped_and_cut() {
        assert_eq!(excerpt("abc", 10), "\"abc\"");
        assert_eq!(excerpt("a\nb", 10), "\"a\\nb\"");
        assert_eq!(excerpt(&"x".repeat(100), 5), "\"xxxxx\"... (100 bytes)");
    }

    #[test]
    fn the_warn_limiter_counts_what_it_suppresses() {
        let mut l = WarnLimiter::new();
        for _ in 0..WarnLimiter::PER_MINUTE {
            assert_eq!(l.allow(), (true, 0));
        }
        assert_eq!(l.allow(), (false, 0));
        assert_eq!(l.suppressed, 1);
        l.window_start -= std::time::Duration::from_secs(61);
        assert_eq!(l.allow(), (true, 1));
    }
}
