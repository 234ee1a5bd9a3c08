//! The HTTP inputs: `PUT /api/v1/push/{counter}` and the Alertmanager
//! webhook `POST /api/v1/alerts`, as an axum [`Router`] with no side effects
//! until it serves.
//!
//! Every answer is JSON; errors are `{"error": "..."}`. Bodies are limited
//! to [`BODY_LIMIT`]. With a token configured, a request needs
//! `Authorization: Bearer <token>` (compared in constant time).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::alerts::{self, AlertDedupe};
use crate::clock::SharedClock;
use super::{current, excerpt, InputConfig, InputSink, SharedConfig, PUSH_HOST};
use crate::store::{Sample, SeriesKey};

/// The largest accepted request body (64 KiB); larger ones get 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// How much of a bad value an error message repeats.
const EXCERPT_CHARS: usize = 64;

#[derive(Clone)]
struct AppState {
    cfg: SharedConfig,
    sink: Arc<dyn InputSink>,
    clock: SharedClock,
    /// Held across the sink call, so two copies of one notification cannot
    /// both be recorded.
    dedupe: Arc<Mutex<AlertDedupe>>,
}

/// An error answer: a status and a message, sent as `{"error": message}`.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), allow: None }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "input request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "input request refused");
        }
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The push and Alertmanager endpoints. `cfg` may be swapped at any time
/// (a reload); `sink` records samples; `clock` times them by receipt.
pub fn router(cfg: SharedConfig, sink: Arc<dyn InputSink>, clock: SharedClock) -> Router {
    let state = AppState { cfg, sink, clock, dedupe: Arc::new(Mutex::new(AlertDedupe::new())) };
    Router::new()
        .route("/api/v1/push/{name}", put(push).fallback(|| async { method_not_allowed("PUT") }))
        .route("/api/v1/alerts", post(alertmanager).fallback(|| async { method_not_allowed("POST") }))
        .route("/api/v1/{*rest}", any(not_found))
        .with_state(state)
}

fn method_not_allowed(allow: &'static str) -> ApiError {
    ApiError { allow: Some(allow), ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("method not allowed: use {allow}")) }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("unknown path `{}` (inputs: `PUT /api/v1/push/<counter>`, `POST /api/v1/alerts`)", uri.path()),
    )
}

/// Equal-time comparison: both sides are hashed first, so neither the
/// content nor the length of the token shows in the timing.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request's `Authorization: Bearer <token>` does not carry `token`
/// (compared in constant time), or `None` when it does. The daemon's API
/// checks its routes with this too.
pub fn bearer_refusal(token: &SecretString, headers: &HeaderMap) -> Option<&'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Some("missing bearer token: send `Authorization: Bearer <token>`");
    };
    let Some(given) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
        return Some("the `Authorization` header is not `Bearer <token>`");
    };
    if same_secret(given.trim().as_bytes(), token.expose_secret().as_bytes()) {
        None
    } else {
        Some("wrong bearer token")
    }
}

fn authorize(cfg: &InputConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &cfg.token else { return Ok(()) };
    match bearer_refusal(token, headers) {
        None => Ok(()),
        Some(why) => Err(ApiError::new(StatusCode::UNAUTHORIZED, why)),
    }
}

/// The body, at most [`BODY_LIMIT`] bytes (413 beyond).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {BODY_LIMIT} bytes"));
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("cannot read the request body: {e}"))),
    }
}

/// Hands samples to the sink off the async threads (the store blocks).
async fn record(sink: &Arc<dyn InputSink>, samples: Vec<Sample>) -> Result<(), ApiError> {
    let sink = sink.clone();
    let unavailable = |m: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("cannot record the samples: {m}"));
    match tokio::task::spawn_blocking(move || sink.accept(samples)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(e) => Err(unavailable(e.to_string())),
    }
}

// ---------------------------------------------------------------- push

/// A pushed value as JSON: `{"value": 42.5, "host": "web-01", "labels": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    value: serde_json::Value,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What a push body says.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pushed {
    pub value: f64,
    pub host: String,
    pub labels: BTreeMap<String, String>,
}

const PUSH_FORMS: &str = "send a number (`42.5`) or JSON `{\"value\": 42.5, \"host\": \"web-01\", \"labels\": {}}`";

fn finite(v: f64, received: &str) -> Result<f64, ApiError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(ApiError::bad_request(format!("value must be a finite number, received {}", excerpt(received, EXCERPT_CHARS))))
    }
}

fn valid_host(host: &str) -> Result<(), ApiError> {
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ApiError::bad_request(format!(
            "`host` must be 1 to 253 characters without spaces, received {}",
            excerpt(host, EXCERPT_CHARS)
        )));
    }
    Ok(())
}

/// Parses a push body: a number as text, a JSON number, or a JSON object.
pub(super) fn parse_push(body: &[u8]) -> Result<Pushed, ApiError> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(ApiError::bad_request(format!("body is not UTF-8 text; {PUSH_FORMS}")));
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(ApiError::bad_request(format!("empty body; {PUSH_FORMS}")));
    }
    let bare = |value| Pushed { value, host: PUSH_HOST.into(), labels: BTreeMap::new() };
    if !t.starts_with('{') {
        return match t.parse::<f64>() {
            Ok(v) => Ok(bare(finite(v, t)?)),
            Err(_) => Err(ApiError::bad_request(format!("not a number: received {}; {PUSH_FORMS}", excerpt(t, EXCERPT_CHARS)))),
        };
    }
    let parsed: PushBody = serde_json::from_str(t).map_err(|e| {
        ApiError::bad_request(format!("bad JSON ({e}): received {}; {PUSH_FORMS}", excerpt(t, EXCERPT_CHARS)))
    })?;
    let value = match &parsed.value {
        serde_json::Value::Number(n) => n.as_f64().ok_or_else(|| ApiError::bad_request(format!("`value` {n} is not a finite number")))?,
        other => {
            return Err(ApiError::bad_request(format!(
                "`value` must be a JSON number, received {}",
                excerpt(&other.to_string(), EXCERPT_CHARS)
            )))
        }
    };
    let host = parsed.host.unwrap_or_else(|| PUSH_HOST.into());
    valid_host(&host)?;
    if let Some(k) = parsed.labels.keys().find(|k| k.is_empty() || k.as_str() == "host") {
        return Err(ApiError::bad_request(format!("label name {k:?} is not allowed (use `host` for the host)")));
    }
    Ok(Pushed { value: finite(value, &value.to_string())?, host, labels: parsed.labels })
}

fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a String>) -> Option<&'a String> {
    candidates
        .into_iter()
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.chars().count().max(word.chars().count()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn unknown_push_counter(cfg: &InputConfig, name: &str) -> ApiError {
    let message = match cfg.other_sources.get(name) {
        Some(source) => format!("counter `{name}` has source `{source}`, not `push`: it does not accept pushed values"),
        None => {
            let mut m = format!("no counter `{name}` with source `push`");
            if let Some(s) = closest(name, cfg.push.keys()) {
                m.push_str(&format!(", did you mean `{s}`?"));
            }
            m
        }
    };
    ApiError::new(StatusCode::NOT_FOUND, message)
}

async fn push(State(st): State<AppState>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Result<Json<serde_json::Value>, ApiError> {
    let received_ms = st.clock.now_ms();
    let cfg = current(&st.cfg);
    authorize(&cfg, &headers)?;
    let counter = cfg.push.get(&name).ok_or_else(|| unknown_push_counter(&cfg, &name))?;
    let pushed = parse_push(&read_body(&headers, body).await?)?;
    let mut labels = pushed.labels;
    labels.extend(counter.labels.clone());
    let series = SeriesKey { counter: name, host: pushed.host, labels };
    let shown = series.display();
    record(&st.sink, vec![Sample::value(series, received_ms, pushed.value)]).await?;
    tracing::debug!(series = %shown, value = pushed.value, "pushed value recorded");
    Ok(Json(json!({ "accepted": 1, "series": shown, "received_ms": received_ms })))
}

// ---------------------------------------------------------------- alerts

async fn alertmanager(State(st): State<AppState>, headers: HeaderMap, body: Body) -> Result<Json<serde_json::Value>, ApiError> {
    let received_ms = st.clock.now_ms();
    let cfg = current(&st.cfg);
    authorize(&cfg, &headers)?;
    let payload = alerts::parse_payload(&read_body(&headers, body).await?)?;
    let mut dedupe = st.dedupe.lock().await;
    let outcome = alerts::plan(&cfg, &payload, &dedupe, received_ms);
    if !outcome.samples.is_empty() {
        record(&st.sink, outcome.samples).await?;
    }
    dedupe.commit(&payload.group_key, &outcome.seen, received_ms);
    drop(dedupe);
    tracing::debug!(group = %payload.group_key, accepted = outcome.accepted, duplicates = outcome.duplicates, unmatched = outcome.unmatched, "alertmanager notification");
    Ok(Json(json!({ "accepted": outcome.accepted, "duplicates": outcome.duplicates, "unmatched": outcome.unmatched })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_push(body.as_bytes()).unwrap_err().message
    }

    #[test]
    fn push_bodies_in_every_form() {
        assert_eq!(parse_push(b"42.5\n").unwrap(), Pushed { value: 42.5, host: "push".into(), labels: BTreeMap::new() });
        assert_eq!(parse_push(b"-1e3").unwrap().value, -1000.0);
        let p = parse_push(br#"{"value": 7, "host": "web-01", "labels": {"disk": "sda"}}"#).unwrap();
        assert_eq!((p.value, p.host.as_str(), p.labels["disk"].as_str()), (7.0, "web-01", "sda"));
        assert_eq!(parse_push(br#"{"value": 0.25}"#).unwrap().host, "push");
    }

    #[test]
    fn bad_push_bodies_say_what_was_received() {
        assert!(err("").starts_with("empty body"));
        assert!(err("  \n").starts_with("empty body"));
        assert!(err("abc").contains("not a number: received \"abc\""), "{}", err("abc"));
        assert!(err("NaN").contains("finite"));
        assert!(err("inf").contains("finite"));
        assert!(err("-infinity").contains("finite"));
        assert!(err(r#"{"value": "42"}"#).contains("must be a JSON number, received \"\\\"42\\\"\""), "{}", err(r#"{"value": "42"}"#));
        assert!(err(r#"{"value": 1, "hots": "x"}"#).contains("unknown field `hots`"));
        assert!(err(r#"{"value": 1"#).starts_with("bad JSON"));
        assert!(err(r#"{"value": 1, "host": "a b"}"#).contains("without spaces"));
        assert!(err(r#"{"value": 1, "labels": {"host": "x"}}"#).contains("not allowed"));
        let long = "x".repeat(500);
        assert!(err(&long).contains("... (500 bytes)"), "long values are cut");
        assert!(err(&long).len() < 300);
    }

    #[test]
    fn secrets_compare_by_content_only() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cret", b"s3cre"));
        assert!(!same_secret(b"", b"x"));
    }

    #[test]
    fn closest_names_are_suggested() {
        let names = ["queue-depth".to_string(), "errors".to_string()];
        assert_eq!(closest("queue-dept", &names).map(String::as_str), Some("queue-depth"));
        assert_eq!(closest("zzz", &names), None);
    }
}
