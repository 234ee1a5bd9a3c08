//! The daemon's API: `GET /healthz`, `GET /metrics` (Prometheus text
//! format) and REST/JSON under `/api/v1`, as an axum [`Router`] built by a
//! pure [`router`] (no side effects until it serves). The daemon merges it
//! with the receivers of [`crate::inputs`] on one listener and wraps the
//! whole in [`guard`].
//!
//! ```text
//! request -> guard (a token in the query string: 400; counts the answer)
//!         -> /healthz                       no token
//!         -> POST /hooks/git                no token: the webhook's signature ([`hooks`])
//!         -> bearer check (401)             everything else
//!         -> /metrics                       Metrics (this process) + the store at scrape time
//!         -> /api/v1/status|targets|counters|series|triggers|jobs|nodes|groups
//!            config (Arc<Config>) + Fleet + StateStore -> views -> JSON
//!         -> /api/v1/tasks|runs|plans|traces   (GET) the store -> views
//!         -> POST /api/v1/runs|exec|triggers/{name}/fire|plans|plans/{id}/approve|apply
//!            checked, stored `pending`, started by the daemon's Worker -> 202 {"task": id}
//! ```
//!
//! Rules every route keeps: JSON answers, errors `{"error": "..."}` with
//! their status (400 bad parameter, unknown parameters included; 401; 404
//! with a suggestion; 405 with `Allow`; 503 when the store fails); lists
//! are `{"items": [...], "next": cursor|null}`, at most [`MAX_PAGE`] items
//! (`?limit=`, default [`DEFAULT_PAGE`]; `?after=` the last cursor); every
//! answer is scrubbed of known secrets.
//!
//! Owns: [`router`], [`guard`], [`ApiState`], the views ([`views`]), the
//! task routes and the [`tasks::Worker`] seam ([`tasks`]) and the metrics
//! registry ([`metrics`]).
//! Must not depend on: the CLI, a store backend, printing.

pub mod hooks;
pub mod metrics;
pub mod openapi;
mod resources;
pub mod tasks;
pub mod security;
pub mod serve;
pub mod views;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::store::StateStore;

pub use hooks::GitHooks;
pub use metrics::Metrics;
pub use security::HttpOptions;

/// Items per page when `?limit=` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The most items one page holds (a larger `?limit=` gets this many).
pub const MAX_PAGE: usize = 500;

/// What the daemon is, for `/api/v1/status` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInfo {
    /// When it started (ms).
    pub started_ms: i64,
    /// What it does (`collect`, `evaluate`, `receive`, `work`, `reconcile`).
    pub roles: Vec<&'static str>,
    /// Job workers.
    pub workers: u32,
    /// The listen address as configured.
    pub listen: String,
}

/// Everything the routes read.
#[derive(Clone)]
pub struct ApiState {
    /// The config the daemon runs.
    pub config: Arc<Config>,
    /// The state store.
    pub store: StateStore,
    /// The bearer token every route but `/healthz` requires (reads and changes).
    pub token: SecretString,
    /// A read-only token: it reads every route; a change made with it gets 403.
    pub read_token: Option<SecretString>,
    /// Where time comes from.
    pub clock: SharedClock,
    /// The daemon's counters.
    pub metrics: Arc<Metrics>,
    /// What the daemon is.
    pub daemon: Arc<DaemonInfo>,
    /// Who runs the tasks the `POST` routes accept (`None`: they answer 503).
    pub work: Option<Arc<dyn tasks::Worker>>,
    /// The push webhook of a git source (`None`: a directory source, or no
    /// `daemon.source.webhook_secret`; `POST /hooks/git` answers 404).
    pub hooks: Option<Arc<GitHooks>>,
    /// The git source's fetches (`None`: a directory source).
    pub fetches: Option<crate::gitops::FetchHandle>,
}

/// An error answer: `{"error": message}` with a status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl ApiError {
    /// An error with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), allow: None }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the state store failed: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = crate::redact::scrub(&self.message);
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %message, "API request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %message, "API request refused");
        }
        let mut resp = (self.status, Json(json!({ "error": message }))).into_response();
        if let Some(allow) = self.allow {
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A JSON answer, scrubbed of every known secret.
pub(crate) fn answer<T: Serialize>(value: &T) -> Result<Response, ApiError> {
    let mut v = serde_json::to_value(value).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot encode the answer: {e}")))?;
    crate::redact::scrub_json(&mut v);
    Ok(Json(v).into_response())
}

/// A GET route whose other methods get 405 with `Allow: GET`.
fn get_only<H, T>(handler: H) -> MethodRouter<ApiState>
where
    H: axum::handler::Handler<T, ApiState>,
    T: 'static,
{
    get(handler).fallback(|| async { ApiError { allow: Some("GET"), ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET") } })
}

/// A POST route whose other methods get 405 with `Allow: POST`.
fn post_only<H, T>(handler: H) -> MethodRouter<ApiState>
where
    H: axum::handler::Handler<T, ApiState>,
    T: 'static,
{
    axum::routing::post(handler).fallback(|| async { ApiError { allow: Some("POST"), ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use POST") } })
}

/// A route that lists (GET) and starts a task (POST).
fn post_or_get<H, T, G, U>(post: H, list: G) -> MethodRouter<ApiState>
where
    H: axum::handler::Handler<T, ApiState>,
    T: 'static,
    G: axum::handler::Handler<U, ApiState>,
    U: 'static,
{
    get(list).post(post).fallback(|| async { ApiError { allow: Some("GET, POST"), ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET or POST") } })
}

/// The API. Every route but `/healthz` requires the bearer token.
pub fn router(state: ApiState) -> Router {
    let guarded = Router::new()
        .route("/metrics", get_only(resources::metrics))
        .route("/api/v1/status", get_only(resources::status))
        .route("/api/v1/targets", get_only(resources::targets))
        .route("/api/v1/targets/{name}", get_only(resources::target))
        .route("/api/v1/counters", get_only(resources::counters))
        .route("/api/v1/counters/{name}", get_only(resources::counter))
        .route("/api/v1/series", get_only(resources::series))
        .route("/api/v1/triggers", get_only(resources::triggers))
        .route("/api/v1/triggers/{name}", get_only(resources::trigger))
        .route("/api/v1/jobs", get_only(resources::jobs))
        .route("/api/v1/jobs/{key}", get_only(resources::job))
        .route("/api/v1/nodes", get_only(resources::nodes))
        .route("/api/v1/nodes/{name}", get_only(resources::node))
        .route("/api/v1/groups", get_only(resources::groups))
        .route("/api/v1/groups/{name}", get_only(resources::group))
        .route("/api/v1/tasks", get_only(tasks::tasks))
        .route("/api/v1/tasks/{id}", get_only(tasks::task))
        .route("/api/v1/runs", post_or_get(tasks::post_run, tasks::runs))
        .route("/api/v1/runs/{id}", get_only(tasks::run))
        .route("/api/v1/exec", post_only(tasks::post_exec))
        .route("/api/v1/triggers/{name}/fire", post_only(tasks::post_fire))
        .route("/api/v1/plans", post_or_get(tasks::post_plan, tasks::plans))
        .route("/api/v1/plans/{id}", get_only(tasks::plan))
        .route("/api/v1/plans/{id}/approve", post_only(tasks::post_approve))
        .route("/api/v1/plans/{id}/apply", post_only(tasks::post_apply))
        .route("/api/v1/traces", get_only(tasks::traces))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let doc = Arc::new(openapi::document());
    Router::new()
        .route("/healthz", get_only(|| async { Json(json!({ "status": "ok" })) }))
        .route("/api/v1/openapi.json", get_only(move || async move { Json(doc.as_ref().clone()) }))
        .route("/hooks/git", post(hooks::receive).fallback(|| async { ApiError { allow: Some("POST"), ..ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use POST") } }))
        .merge(guarded)
        .fallback(|uri: axum::http::Uri| async move { ApiError::not_found(format!("unknown path `{}`", uri.path())) })
        .with_state(state)
}

/// Wraps every route of the listener (the API and the receivers): a token
/// in the query string is refused with 400 before anything else looks at
/// the request; a change (any method but GET and HEAD) made with the
/// read-only token is refused with 403; each answer's status is counted in
/// the state's metrics.
pub fn guard(app: Router, state: &ApiState) -> Router {
    app.layer(middleware::from_fn_with_state(state.clone(), edge))
}

/// What a request's bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read and change (`daemon.token`).
    Write,
    /// Read only (`daemon.read_token`).
    Read,
}

/// The scope of the request's bearer token, or why it has none (the
/// message of a 401).
pub fn scope(st: &ApiState, headers: &axum::http::HeaderMap) -> Result<Scope, &'static str> {
    let why = match crate::inputs::bearer_refusal(&st.token, headers) {
        None => return Ok(Scope::Write),
        Some(why) => why,
    };
    match &st.read_token {
        Some(read) if crate::inputs::bearer_refusal(read, headers).is_none() => Ok(Scope::Read),
        _ => Err(why),
    }
}

/// Query parameters that would carry a credential in the URL.
const URL_TOKEN_PARAMS: [&str; 3] = ["token", "access_token", "api_key"];

async fn edge(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched".to_string(), |m| m.as_str().to_string());
    let named = req.uri().query().and_then(|q| params(q).into_iter().find(|(k, _)| URL_TOKEN_PARAMS.contains(&k.as_str())));
    let change = !matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    let resp = match named {
        Some((k, _)) => ApiError::bad_request(format!(
            "a token in the URL (`{k}=`) is refused: URLs end up in logs and histories; send `Authorization: Bearer <token>`"
        ))
        .into_response(),
        None if change && scope(&st, req.headers()) == Ok(Scope::Read) => {
            ApiError::new(StatusCode::FORBIDDEN, "the read-only token (`daemon.read_token`) cannot change anything; use `daemon.token`").into_response()
        }
        None => next.run(req).await,
    };
    st.metrics.served(&route, resp.status().as_u16());
    resp
}

async fn require_token(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    match scope(&st, req.headers()) {
        Ok(_) => next.run(req).await,
        Err(why) => ApiError::new(StatusCode::UNAUTHORIZED, why).into_response(),
    }
}

/// The pairs of a query string, percent-decoded (`+` is a space).
fn params(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The query parameters of one request, checked against what the route takes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    /// Parses `query`; a parameter not in `allowed` is a 400 naming the allowed ones.
    pub(crate) fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, ApiError> {
        let pairs = query.map(params).unwrap_or_default();
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            let list: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
            return Err(ApiError::bad_request(format!(
                "unknown parameter `{k}`; this route takes {}",
                if list.is_empty() { "none".to_string() } else { list.join(", ") }
            )));
        }
        Ok(Params(pairs))
    }

    /// The value of a parameter given once (twice is a 400).
    pub(crate) fn one<'a>(&'a self, name: &'a str) -> Result<Option<&'a str>, ApiError> {
        let mut all = self.all(name);
        let first = all.next();
        if all.next().is_some() {
            return Err(ApiError::bad_request(format!("`{name}` is given more than once")));
        }
        Ok(first)
    }

    /// Every value of a repeatable parameter.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// `?limit=` (1 or more; capped at [`MAX_PAGE`]) and `?after=`.
    pub(crate) fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.one("limit")? {
            None => DEFAULT_PAGE,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n >= 1 => n.min(MAX_PAGE),
                // A whole number too large for the machine is still "more than MAX_PAGE".
                Err(_) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && text.bytes().any(|b| b != b'0') => MAX_PAGE,
                _ => return Err(ApiError::bad_request(format!("`limit` must be a whole number from 1 (at most {MAX_PAGE} are given), received {text:?}"))),
            },
        };
        Ok(Page { limit, after: self.one("after")?.map(str::to_string) })
    }
}

/// The parameters that page every list.
pub(crate) const PAGING: [&str; 2] = ["limit", "after"];

/// Which page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    /// At most this many items.
    pub limit: usize,
    /// Only items after this cursor.
    pub after: Option<String>,
}

/// One page of a list: `{"items": [...], "next": cursor|null}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl Page {
    /// The items (sorted by `cursor`) whose cursor comes after `after`,
    /// at most `limit`, and the cursor of the next page when more remain.
    pub(crate) fn of<T>(&self, items: Vec<T>, cursor: impl Fn(&T) -> String) -> Listing<T> {
        let mut rest: Vec<T> = match &self.after {
            Some(a) => items.into_iter().filter(|i| cursor(i).as_str() > a.as_str()).collect(),
            None => items,
        };
        let more = rest.len() > self.limit;
        rest.truncate(self.limit);
        let next = if more { rest.last().map(&cursor) } else { None };
        Listing { items: rest, next }
    }
}

/// 404 for an unknown name of a kind, with a suggestion when one is close.
pub(crate) fn unknown<'a>(kind: &str, name: &str, known: impl IntoIterator<Item = &'a String>) -> ApiError {
    let known: BTreeSet<&String> = known.into_iter().collect();
    let mut m = format!("no {kind} `{name}`");
    match crate::config::did_you_mean(name, known.iter().map(|k| k.as_str())) {
        Some(s) => m.push_str(&format!("; did you mean `{s}`?")),
        None if known.is_empty() => m.push_str(&format!(" (there are no {kind}s)")),
        None => {}
    }
    ApiError::not_found(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded_and_checked() {
        assert_eq!(params("a=1&b=x%20y+z&c"), vec![("a".into(), "1".into()), ("b".into(), "x y z".into()), ("c".into(), String::new())]);
        let p = Params::parse(Some("limit=2&after=b&host=h1&host=h2"), &["limit", "after", "host"]).unwrap();
        assert_eq!(p.page().unwrap(), Page { limit: 2, after: Some("b".into()) });
        assert_eq!(p.all("host").collect::<Vec<_>>(), ["h1", "h2"]);
        assert!(p.one("host").is_err(), "twice is an error");
        let e = Params::parse(Some("limt=2"), &PAGING).unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (StatusCode::BAD_REQUEST, "unknown parameter `limt`; this route takes `limit`, `after`"));
        for bad in ["limit=0", "limit=-1", "limit=x"] {
            assert!(Params::parse(Some(bad), &PAGING).unwrap().page().is_err(), "{bad}");
        }
        assert_eq!(Params::parse(Some("limit=100000"), &PAGING).unwrap().page().unwrap().limit, MAX_PAGE, "capped");
        assert_eq!(Params::parse(Some("limit=413292128492712624128"), &PAGING).unwrap().page().unwrap().limit, MAX_PAGE, "capped, however large");
        assert!(Params::parse(Some("limit=000"), &PAGING).unwrap().page().is_err());
    }

    #[test]
    fn pages_follow_the_cursor() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
        let page = |limit, after: Option<&str>| Page { limit, after: after.map(str::to_string) }.of(items.clone(), |s| s.clone());
        let first = page(2, None);
        assert_eq!((first.items.as_slice(), first.next.as_deref()), (["a".to_string(), "b".into()].as_slice(), Some("b")));
        let last = page(2, Some("c"));
        assert_eq!((last.items.as_slice(), last.next), (["d".to_string(), "e".into()].as_slice(), None));
        assert!(page(2, Some("e")).items.is_empty());
    }

    #[test]
    fn unknown_names_suggest_a_close_one() {
        let names = ["deep".to_string(), "hot".to_string()];
        assert_eq!(unknown("trigger", "dep", &names).message, "no trigger `dep`; did you mean `deep`?");
        assert_eq!(unknown("trigger", "zzzzz", &names).message, "no trigger `zzzzz`");
        assert_eq!(unknown("group", "web", &[]).message, "no group `web` (there are no groups)");
    }
}
