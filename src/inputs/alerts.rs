//! The Alertmanager webhook (payload version 4): parsing, matching alerts to
//! counters, and deduplication by (`groupKey`, `fingerprint`).
//!
//! Alertmanager re-sends a group's notification every `repeat_interval`
//! with the same alerts; a re-sent alert whose status did not change is a
//! duplicate and records nothing. A status change (firing -> resolved, or
//! firing again) records a sample: 1 while firing, 0 when resolved. The
//! memory of what was seen is bounded: resolved entries are forgotten after
//! [`RESOLVED_TTL_MS`], firing ones after [`FIRING_TTL_MS`] without being
//! seen, and beyond [`DEDUPE_CAPACITY`] entries the oldest go first.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::http::ApiError;
use super::{excerpt, InputConfig, ALERTMANAGER_HOST};
use crate::store::{Sample, SeriesKey};

/// How long a resolved alert is remembered (1 h).
pub const RESOLVED_TTL_MS: i64 = 3_600_000;
/// How long a firing alert is remembered after it was last seen (24 h;
/// Alertmanager's default `repeat_interval` is 4 h).
pub const FIRING_TTL_MS: i64 = 86_400_000;
/// The most alerts remembered at once.
pub const DEDUPE_CAPACITY: usize = 10_000;

/// An alert's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The alert fires (sample 1).
    Firing,
    /// The alert was resolved (sample 0).
    Resolved,
}

impl AlertStatus {
    fn value(self) -> f64 {
        match self {
            AlertStatus::Firing => 1.0,
            AlertStatus::Resolved => 0.0,
        }
    }
}

/// One alert of a notification.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Alert {
    pub status: AlertStatus,
    pub labels: BTreeMap<String, String>,
    #[allow(dead_code)] // validated as present, not used
    pub annotations: BTreeMap<String, String>,
    pub starts_at: String,
    pub ends_at: String,
    pub fingerprint: String,
}

/// A webhook notification (fields scaler does not use are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Payload {
    pub group_key: String,
    pub alerts: Vec<Alert>,
}

const EXCERPT_CHARS: usize = 64;

/// Parses and validates a version 4 payload; the error says what is wrong.
pub(super) fn parse_payload(body: &[u8]) -> Result<Payload, ApiError> {
    let text = String::from_utf8_lossy(body);
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("body is not JSON ({e}): received {}", excerpt(&text, EXCERPT_CHARS)))
    })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::bad_request(format!(
            "expected an Alertmanager webhook payload (a JSON object), received {}",
            excerpt(&text, EXCERPT_CHARS)
        )));
    };
    match object.get("version") {
        Some(serde_json::Value::String(v)) if v == "4" => {}
        Some(other) => {
            let shown = other.as_str().map(str::to_string).unwrap_or_else(|| other.to_string());
            return Err(ApiError::bad_request(format!(
                "unsupported Alertmanager webhook payload version `{shown}`: scaler reads version `4`"
            )));
        }
        None => {
            return Err(ApiError::bad_request("missing `version`: expected an Alertmanager webhook payload with `\"version\": \"4\"`"))
        }
    }
    let payload: Payload =
        serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("bad Alertmanager payload: {e}")))?;
    if payload.group_key.is_empty() {
        return Err(ApiError::bad_request("`groupKey` is empty"));
    }
    for (i, a) in payload.alerts.iter().enumerate() {
        if a.fingerprint.is_empty() {
            return Err(ApiError::bad_request(format!("`alerts[{i}].fingerprint` is empty")));
        }
        for (field, t) in [("startsAt", &a.starts_at), ("endsAt", &a.ends_at)] {
            if chrono::DateTime::parse_from_rfc3339(t).is_err() {
                return Err(ApiError::bad_request(format!(
                    "`alerts[{i}].{field}` is not an RFC 3339 time: {}",
                    excerpt(t, EXCERPT_CHARS)
                )));
            }
        }
    }
    Ok(payload)
}

/// What one notification records.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Samples to record.
    pub samples: Vec<Sample>,
    /// `(fingerprint, status)` of every matched alert (new or duplicate), to
    /// remember once the samples are recorded.
    pub seen: Vec<(String, AlertStatus)>,
    /// Samples recorded.
    pub accepted: usize,
    /// Alerts whose status had already been recorded.
    pub duplicates: usize,
    /// Alerts no counter matches.
    pub unmatched: usize,
}

/// Matches every alert to the counters and leaves out duplicates (pure).
pub(super) fn plan(cfg: &InputConfig, payload: &Payload, dedupe: &AlertDedupe, received_ms: i64) -> Outcome {
    let mut out = Outcome::default();
    for alert in &payload.alerts {
        let counters: Vec<_> = cfg.alerts.iter().filter(|c| c.matches(&alert.labels)).collect();
        if counters.is_empty() {
            out.unmatched += 1;
            continue;
        }
        out.seen.push((alert.fingerprint.clone(), alert.status));
        if dedupe.status(&payload.group_key, &alert.fingerprint) == Some(alert.status) {
            out.duplicates += 1;
            continue;
        }
        let host = alert.labels.get("instance").map(String::as_str).unwrap_or(ALERTMANAGER_HOST);
        for c in counters {
            let series = SeriesKey { counter: c.counter.clone(), host: host.to_string(), labels: c.labels.clone() };
            out.samples.push(Sample::value(series, received_ms, alert.status.value()));
            out.accepted += 1;
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    status: AlertStatus,
    last_ms: i64,
}

/// The last recorded status of each (`groupKey`, `fingerprint`), bounded.
#[derive(Debug, Default)]
pub struct AlertDedupe {
    entries: HashMap<(String, String), Seen>,
}

impl AlertDedupe {
    /// An empty memory.
    pub fn new() -> AlertDedupe {
        AlertDedupe::default()
    }

    /// The last recorded status of an alert of a group.
    pub fn status(&self, group_key: &str, fingerprint: &str) -> Option<AlertStatus> {
        self.entries.get(&(group_key.to_string(), fingerprint.to_string())).map(|s| s.status)
    }

    /// How many alerts are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remembers alerts of a group as recorded at `now_ms`, then forgets what
    /// is too old or too much.
    pub fn commit(&mut self, group_key: &str, seen: &[(String, AlertStatus)], now_ms: i64) {
        for (fingerprint, status) in seen {
            self.entries.insert((group_key.to_string(), fingerprint.clone()), Seen { status: *status, last_ms: now_ms });
        }
        self.evict(now_ms);
    }

    fn evict(&mut self, now_ms: i64) {
        self.entries.retain(|_, s| {
            let ttl = match s.status {
                AlertStatus::Resolved => RESOLVED_TTL_MS,
                AlertStatus::Firing => FIRING_TTL_MS,
            };
            now_ms.saturating_sub(s.last_ms) < ttl
        });
        if self.entries.len() > DEDUPE_CAPACITY {
            let mut ages: Vec<(i64, (String, String))> = self.entries.iter().map(|(k, s)| (s.last_ms, k.clone())).collect();
            ages.sort();
            let excess = self.entries.len() - DEDUPE_CAPACITY;
            for (_, key) in ages.into_iter().take(excess) {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inputs::AlertCounter;

    const T: i64 = 1_704_067_200_000;

    fn payload(status: &str, fingerprint: &str, labels: &str) -> Payload {
        let body = format!(
            r#"{{"version":"4","groupKey":"{{}}:{{alertname=\"Down\"}}","status":"{status}","receiver":"scaler",
            "alerts":[{{"status":"{status}","labels":{labels},"annotations":{{}},"startsAt":"2024-01-01T00:00:00Z",
            "endsAt":"0001-01-01T00:00:00Z","fingerprint":"{fingerprint}","generatorURL":""}}],
            "groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"","truncatedAlerts":0}}"#
        );
        parse_payload(body.as_bytes()).unwrap()
    }

    fn cfg() -> InputConfig {
        InputConfig {
            alerts: vec![AlertCounter {
                counter: "down".into(),
                alertname: "Down".into(),
                match_labels: BTreeMap::new(),
                labels: BTreeMap::from([("team".into(), "ops".into())]),
            }],
            ..InputConfig::default()
        }
    }

    #[test]
    fn firing_resend_and_resolve() {
        let cfg = cfg();
        let mut d = AlertDedupe::new();
        let fire = payload("firing", "f1", r#"{"alertname":"Down","instance":"web-01:9100"}"#);
        let out = plan(&cfg, &fire, &d, T);
        assert_eq!((out.accepted, out.duplicates, out.unmatched), (1, 0, 0));
        assert_eq!(out.samples, vec![Sample::value(
            SeriesKey { counter: "down".into(), host: "web-01:9100".into(), labels: BTreeMap::from([("team".into(), "ops".into())]) },
            T,
            1.0
        )]);
        d.commit(&fire.group_key, &out.seen, T);
        let again = plan(&cfg, &fire, &d, T + 1000);
        assert_eq!((again.accepted, again.duplicates, again.samples.len()), (0, 1, 0));
        let resolved = payload("resolved", "f1", r#"{"alertname":"Down","instance":"web-01:9100"}"#);
        let out = plan(&cfg, &resolved, &d, T + 2000);
        assert_eq!(out.samples[0].value, crate::store::SampleValue::Value(0.0));
        assert_eq!(out.samples[0].ts_ms, T + 2000);
    }

    #[test]
    fn unmatched_alerts_are_counted_and_hosts_default() {
        let cfg = cfg();
        let d = AlertDedupe::new();
        assert_eq!(plan(&cfg, &payload("firing", "f2", r#"{"alertname":"Other"}"#), &d, T).unmatched, 1);
        let out = plan(&cfg, &payload("firing", "f3", r#"{"alertname":"Down"}"#), &d, T);
        assert_eq!(out.samples[0].series.host, "alertmanager");
    }

    #[test]
    fn the_memory_is_bounded() {
        let mut d = AlertDedupe::new();
        d.commit("g", &[("r".into(), AlertStatus::Resolved), ("f".into(), AlertStatus::Firing)], T);
        d.commit("g", &[], T + RESOLVED_TTL_MS - 1);
        assert_eq!(d.len(), 2);
        d.commit("g", &[], T + RESOLVED_TTL_MS);
        assert_eq!((d.status("g", "r"), d.status("g", "f")), (None, Some(AlertStatus::Firing)), "resolved entries go first");
        d.commit("g", &[], T + FIRING_TTL_MS);
        assert!(d.is_empty(), "firing entries go when not seen for a day");
        let many: Vec<(String, AlertStatus)> = (0..DEDUPE_CAPACITY).map(|i| (format!("a{i}"), AlertStatus::Firing)).collect();
        d.commit("g", &many, T);
        d.commit("g", &[("newest".into(), AlertStatus::Firing)], T + 1);
        assert_eq!(d.len(), DEDUPE_CAPACITY);
        assert_eq!(d.status("g", "newest"), Some(AlertStatus::Firing), "the oldest entry made room");
    }

    #[test]
    fn payload_errors_name_the_problem() {
        let e = |b: &str| parse_payload(b.as_bytes()).unwrap_err().message;
        assert!(e(r#"{"version":"3","groupKey":"g","alerts":[]}"#).contains("version `3`"));
        assert!(e(r#"{"groupKey":"g","alerts":[]}"#).contains("missing `version`"));
        assert!(e("garbage").starts_with("body is not JSON"));
        assert!(e("[1]").contains("a JSON object"));
        assert!(e(r#"{"version":"4","alerts":[]}"#).contains("groupKey"));
        let bad_status = r#"{"version":"4","groupKey":"g","alerts":[{"status":"pending","labels":{},"annotations":{},"startsAt":"2024-01-01T00:00:00Z","endsAt":"2024-01-01T00:00:00Z","fingerprint":"x"}]}"#;
        assert!(e(bad_status).contains("pending"), "{}", e(bad_status));
        let bad_time = r#"{"version":"4","groupKey":"g","alerts":[{"status":"firing","labels":{},"annotations":{},"startsAt":"yesterday","endsAt":"2024-01-01T00:00:00Z","fingerprint":"x"}]}"#;
        assert!(e(bad_time).contains("alerts[0].startsAt"));
    }
}
