//! `POST /hooks/git`: a push webhook wakes the git source for a fetch now.
//! No bearer token: the signature (`gitops::webhook`) is the
//! authentication. The payload is a hint; the source fetches its own
//! configured remote and branch.
//!
//! ```text
//! no `daemon.source.webhook_secret` (a directory source, or a git source without a secret) -> 404
//! Content-Length or streamed body over 1 MiB -> 413 (before any other work)
//! bad / missing signature -> 401          signed but not JSON -> 400
//! another branch, no `ref` -> 200 {"result":"ignored"}
//! delivery id seen, `after` already fetched -> 200 {"result":"duplicate"}
//! else -> wake the source -> 202 {"result":"queued"}
//! ```
//!
//! Each answer is counted by result for `/metrics`
//! (`scaler_webhook_deliveries_total`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{ApiError, ApiState};
use crate::gitops::webhook::{self, Action, Recent, Refusal, MAX_BODY};
use crate::gitops::FetchHandle;

/// The webhook of a git source: its secret, the source to wake, the
/// delivery ids seen and the answers given. Made once per daemon process
/// (it outlives the task set restarts of new revisions).
#[derive(Debug)]
pub struct GitHooks {
    secret: SecretString,
    source: FetchHandle,
    recent: Mutex<Recent>,
    results: Mutex<BTreeMap<&'static str, u64>>,
}

impl GitHooks {
    /// The webhook of `source`, verified with `secret`; an empty secret is
    /// refused (anyone could sign with it).
    pub fn new(secret: SecretString, source: FetchHandle) -> Result<GitHooks, String> {
        if secret.expose_secret().is_empty() {
            return Err("`daemon.source.webhook_secret` is empty: anyone could sign a webhook with it; set a long random secret".into());
        }
        Ok(GitHooks { secret, source, recent: Mutex::new(Recent::default()), results: Mutex::new(BTreeMap::new()) })
    }

    /// Deliveries answered so far, by result.
    pub fn results(&self) -> BTreeMap<&'static str, u64> {
        self.results.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The source it wakes.
    pub fn source(&self) -> &FetchHandle {
        &self.source
    }

    fn count(&self, result: &'static str) {
        *self.results.lock().unwrap_or_else(|p| p.into_inner()).entry(result).or_insert(0) += 1;
    }
}

/// The result words of `/metrics` and of the answers.
const RESULTS: [&str; 6] = ["queued", "ignored", "duplicate", "unauthorized", "malformed", "too_large"];

/// Every result word with its count (0 for those not seen yet).
pub fn counted(hooks: &GitHooks) -> BTreeMap<String, u64> {
    let seen = hooks.results();
    RESULTS.iter().map(|r| (r.to_string(), seen.get(r).copied().unwrap_or(0))).collect()
}

pub(super) async fn receive(State(st): State<ApiState>, req: Request) -> Response {
    let Some(hooks) = st.hooks.clone() else {
        return ApiError::not_found(
            "no git webhook here: the daemon follows a directory (it sees edits by itself), or `daemon.source.webhook_secret` is not set",
        )
        .into_response();
    };
    let too_large = || {
        hooks.count("too_large");
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the payload is larger than {} KiB", MAX_BODY / 1024)).into_response()
    };
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else { return too_large() };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let push = match webhook::verify(hooks.secret.expose_secret().as_bytes(), header, &body) {
        Ok(p) => p,
        Err(e @ (Refusal::Unsigned(_) | Refusal::BadSignature(_))) => {
            hooks.count("unauthorized");
            tracing::warn!(error = %e, "git webhook refused");
            return ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()).into_response();
        }
        Err(e @ Refusal::Malformed(_)) => {
            hooks.count("malformed");
            return ApiError::bad_request(e.to_string()).into_response();
        }
    };
    let last = hooks.source.fetches().last_fetched;
    let action = {
        let mut recent = hooks.recent.lock().unwrap_or_else(|p| p.into_inner());
        webhook::decide(&push, &hooks.source.branch, last.as_deref(), &mut recent)
    };
    let signer = push.signer.as_str();
    match action {
        Action::Fetch => {
            hooks.count("queued");
            tracing::info!(signer, delivery = ?push.delivery, "git webhook: a push to `{}`; fetching the configured remote", hooks.source.branch);
            hooks.source.wake();
            (StatusCode::ACCEPTED, Json(json!({ "result": "queued", "branch": hooks.source.branch }))).into_response()
        }
        Action::Ignored(why) => {
            hooks.count("ignored");
            tracing::debug!(signer, "git webhook ignored: {why}");
            Json(json!({ "result": "ignored", "reason": why })).into_response()
        }
        Action::Duplicate(why) => {
            hooks.count("duplicate");
            tracing::info!(signer, "git webhook: duplicate: {why}");
            Json(json!({ "result": "duplicate", "reason": why })).into_response()
        }
    }
}
