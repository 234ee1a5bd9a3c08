//! The handlers of [`super::router`]: each checks its query parameters,
//! reads the config and the store, and answers a view (or a page of views).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::metrics::{self, Scrape};
use super::views::{rfc3339_ms, CounterView, GroupView, JobView, NodeView, StatusView, TargetView, TriggerView};
use super::{answer, unknown, ApiError, ApiState, Listing, Params, PAGING};
use crate::fleet::Fleet;
use crate::rules::engine::state_word;
use crate::store::{Backend, JobFilter, JobStatus, RangeQuery, SampleValue, SeriesKey, SeriesPoints, Selector, Snapshot};

/// The most points one series may have in one answer.
pub const MAX_POINTS: i64 = 11_000;

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// A list resource's page, or one of its items by name (404 with a suggestion).
fn list_or_one<T: Serialize>(kind: &str, items: Vec<T>, name_of: impl Fn(&T) -> String, uri: &Uri, one: Option<&str>) -> Result<Response, ApiError> {
    match one {
        None => {
            let page = Params::parse(uri.query(), &PAGING)?.page()?;
            answer(&page.of(items, name_of))
        }
        Some(name) => {
            Params::parse(uri.query(), &[])?;
            let names: Vec<String> = items.iter().map(&name_of).collect();
            match items.into_iter().find(|i| name_of(i) == name) {
                Some(item) => answer(&item),
                None => Err(unknown(kind, name, &names)),
            }
        }
    }
}

// ---------------------------------------------------------------- status

pub(super) async fn status(State(st): State<ApiState>, uri: Uri, headers: axum::http::HeaderMap) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let token_scope = match super::scope(&st, &headers) {
        Ok(super::Scope::Write) => "write",
        // The route is behind the token check: anything else is the read token.
        _ => "read",
    };
    let meta = st.store.snapshot().await?.meta;
    let d = &st.daemon;
    answer(&StatusView {
        version: env!("CARGO_PKG_VERSION"),
        revision: st.config.revision.clone(),
        config_digest: st.config.digest.clone(),
        config_root: st.config.root.display().to_string(),
        applied_revision: meta.revision,
        state_serial: meta.serial,
        state_store: st.store.label().to_string(),
        roles: d.roles.clone(),
        workers: d.workers,
        listen: d.listen.clone(),
        started_at: rfc3339_ms(d.started_ms),
        started_at_ms: d.started_ms,
        uptime_ms: (st.clock.now_ms() - d.started_ms).max(0),
        counts: StatusView::counts(&st.config),
        fetch: st.fetches.as_ref().map(crate::gitops::FetchHandle::fetches),
        token_scope,
    })
}

// ---------------------------------------------------------------- config + fleet

async fn targets_now(st: &ApiState) -> Result<Vec<TargetView>, ApiError> {
    let snap = st.store.snapshot().await?;
    TargetView::all(&Fleet::new(&st.config, &snap.nodes)).map_err(internal)
}

pub(super) async fn targets(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("target", targets_now(&st).await?, |t| t.name.clone(), &uri, None)
}

pub(super) async fn target(State(st): State<ApiState>, Path(name): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("target", targets_now(&st).await?, |t| t.name.clone(), &uri, Some(&name))
}

pub(super) async fn counters(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("counter", CounterView::all(&st.config), |c| c.name.clone(), &uri, None)
}

pub(super) async fn counter(State(st): State<ApiState>, Path(name): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("counter", CounterView::all(&st.config), |c| c.name.clone(), &uri, Some(&name))
}

async fn groups_now(st: &ApiState) -> Result<Vec<GroupView>, ApiError> {
    let snap: Snapshot = st.store.snapshot().await?;
    Ok(GroupView::all(&Fleet::new(&st.config, &snap.nodes), &snap))
}

pub(super) async fn groups(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("group", groups_now(&st).await?, |g| g.name.clone(), &uri, None)
}

pub(super) async fn group(State(st): State<ApiState>, Path(name): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("group", groups_now(&st).await?, |g| g.name.clone(), &uri, Some(&name))
}

async fn nodes_now(st: &ApiState) -> Result<Vec<NodeView>, ApiError> {
    let mut nodes: Vec<NodeView> = st.store.snapshot().await?.nodes.iter().map(NodeView::from).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

pub(super) async fn nodes(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("node", nodes_now(&st).await?, |n| n.name.clone(), &uri, None)
}

pub(super) async fn node(State(st): State<ApiState>, Path(name): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("node", nodes_now(&st).await?, |n| n.name.clone(), &uri, Some(&name))
}

// ---------------------------------------------------------------- triggers and jobs

async fn triggers_now(st: &ApiState) -> Result<Vec<TriggerView>, ApiError> {
    let records = crate::rules::records_from(st.store.run(|db| db.trigger_states()).await?);
    Ok(TriggerView::all(&st.config, &records, st.clock.now_ms()))
}

pub(super) async fn triggers(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("trigger", triggers_now(&st).await?, |t| t.name.clone(), &uri, None)
}

pub(super) async fn trigger(State(st): State<ApiState>, Path(name): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    list_or_one("trigger", triggers_now(&st).await?, |t| t.name.clone(), &uri, Some(&name))
}

/// `GET /api/v1/jobs?status=&trigger=&limit=&after=`: newest first; the
/// cursor is a job id (the next page holds older jobs).
pub(super) async fn jobs(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let p = Params::parse(uri.query(), &["status", "trigger", "limit", "after"])?;
    let page = p.page()?;
    let status = match p.one("status")? {
        None => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            let all: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(format!("`status` must be one of {}, received {s:?}", all.join(", ")))
        })?),
    };
    let before_id = match &page.after {
        None => None,
        Some(a) => Some(a.parse::<i64>().map_err(|_| ApiError::bad_request(format!("`after` must be a job id (the `next` of the last page), received {a:?}")))?),
    };
    let filter = JobFilter { status, trigger: p.one("trigger")?.map(str::to_string), before_id, limit: Some(page.limit + 1), ..JobFilter::default() };
    let mut list = st.store.run(move |db| db.jobs(&filter)).await?;
    let more = list.len() > page.limit;
    list.truncate(page.limit);
    let next = if more { list.last().map(|j| j.id.to_string()) } else { None };
    answer(&Listing { items: list.iter().map(JobView::from).collect::<Vec<_>>(), next })
}

/// `GET /api/v1/jobs/{key}`: a job by its idempotency key
/// (`<trigger>@<fire ms>`) or its id.
pub(super) async fn job(State(st): State<ApiState>, Path(key): Path<String>, uri: Uri) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let k = key.clone();
    let found = st
        .store
        .run(move |db| match k.parse::<i64>() {
            Ok(id) => db.job(id),
            Err(_) => Ok(db.jobs(&JobFilter { key: Some(k), limit: Some(1), ..JobFilter::default() })?.into_iter().next()),
        })
        .await?;
    match found {
        Some(j) => answer(&JobView::from(&j)),
        None => Err(ApiError::not_found(format!("no job `{key}` (give a job id or its key `<trigger>@<fire ms>`; `GET /api/v1/jobs` lists them)"))),
    }
}

// ---------------------------------------------------------------- series

/// `?step=`: milliseconds, or a duration (`10s`, `5m`).
fn parse_step(text: &str) -> Result<i64, ApiError> {
    let ms = match text.parse::<i64>() {
        Ok(ms) => ms,
        Err(_) => humantime::parse_duration(text)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .map_err(|e| ApiError::bad_request(format!("`step` must be milliseconds or a duration (`10s`), received {text:?}: {e}")))?,
    };
    if ms <= 0 {
        return Err(ApiError::bad_request(format!("`step` must be positive, received {text:?}")));
    }
    Ok(ms)
}

/// Points at `from`, `from + step`, ... before `to`, each the mean of the
/// samples in `[t, min(t + step, to))`: the store's ranges are half-open, so
/// a sample at `to` is never counted, also when `to - from` is not a
/// multiple of `step` (the last bucket is then cut at `to`).
fn half_open(db: &mut dyn Backend, selector: &Selector, from: i64, to: i64, step: i64) -> crate::store::Result<Vec<SeriesPoints>> {
    db.range(&RangeQuery { selector: selector.clone(), from_ms: from, to_ms: to, step_ms: step })
}

/// The answer of `/api/v1/series`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub(crate) struct SeriesAnswer {
    counter: String,
    from_ms: i64,
    to_ms: i64,
    step_ms: i64,
    #[serde(flatten)]
    page: Listing<SeriesPoints>,
}

/// `GET /api/v1/series?counter=&host=&from=&to=&step=&limit=&after=`:
/// the series of a counter (optionally only some hosts) over `[from, to)`;
/// points `[epoch_ms, number|null]`; the cursor is a series as shown
/// (`counter{host="h",k="v"}`).
pub(super) async fn series(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    let p = Params::parse(uri.query(), &["counter", "host", "from", "to", "step", "limit", "after"])?;
    let page = p.page()?;
    let counter = match p.one("counter")? {
        Some(c) if !c.is_empty() => c.to_string(),
        _ => return Err(ApiError::bad_request("`counter` is required: `/api/v1/series?counter=NAME`")),
    };
    let hosts: Vec<String> = p.all("host").map(str::to_string).collect();
    let now = st.clock.now_ms();
    let time = |name: &str, default: i64| -> Result<i64, ApiError> {
        match p.one(name)? {
            None => Ok(default),
            Some(t) => crate::clock::parse_time(t, now).map_err(|e| ApiError::bad_request(format!("`{name}`: {e}"))),
        }
    };
    let (from, to) = (time("from", now - 3_600_000)?, time("to", now)?);
    for (name, t) in [("from", from), ("to", to)] {
        if chrono::DateTime::from_timestamp_millis(t).is_none() {
            return Err(ApiError::bad_request(format!("`{name}` ({t}) is not a time scaler can show")));
        }
    }
    if to <= from {
        return Err(ApiError::bad_request(format!("`to` ({to}) must be after `from` ({from}): the range is [from, to)")));
    }
    // A step longer than the range gives the same one point as the range.
    let step = match p.one("step")? {
        Some(s) => parse_step(s)?,
        None => ((to - from) / 60).max(1000),
    }
    .min(to - from);
    let n = (i128::from(to) - i128::from(from) + i128::from(step) - 1) / i128::from(step);
    if n > i128::from(MAX_POINTS) {
        return Err(ApiError::bad_request(format!("{n} points per series is too many (at most {MAX_POINTS}); use a larger `step`")));
    }
    let configured = st.config.counters.contains_key(&counter);
    let c = counter.clone();
    let found = st
        .store
        .run(move |db| {
            let mut selector = Selector::counter(&c);
            if !configured && db.series(&selector)?.is_empty() {
                return Ok(None);
            }
            if !hosts.is_empty() {
                selector.hosts = Some(hosts);
            }
            let mut keys: Vec<(String, SeriesKey)> = db.series(&selector)?.into_iter().map(|k| (k.display(), k)).collect();
            keys.sort();
            let listed = page.of(keys, |(shown, _)| shown.clone());
            let wanted: BTreeSet<SeriesKey> = listed.items.iter().map(|(_, k)| k.clone()).collect();
            selector.hosts = Some(wanted.iter().map(|k| k.host.clone()).collect::<BTreeSet<_>>().into_iter().collect());
            let mut items: Vec<SeriesPoints> = if wanted.is_empty() {
                Vec::new()
            } else {
                half_open(db, &selector, from, to, step)?.into_iter().filter(|s| wanted.contains(&s.series)).collect()
            };
            items.sort_by_cached_key(|s| s.series.display());
            Ok(Some(Listing { items, next: listed.next }))
        })
        .await?;
    match found {
        Some(page) => answer(&SeriesAnswer { counter, from_ms: from, to_ms: to, step_ms: step, page }),
        None => Err(unknown("counter", &counter, st.config.counters.keys())),
    }
}

// ---------------------------------------------------------------- metrics

/// `GET /metrics`: the Prometheus text format.
pub(super) async fn metrics(State(st): State<ApiState>, uri: Uri) -> Result<Response, ApiError> {
    Params::parse(uri.query(), &[])?;
    let config = st.config.clone();
    let now = st.clock.now_ms();
    let mut scrape = st
        .store
        .run(move |db| {
            let records = crate::rules::records_from(db.trigger_states()?);
            let triggers = config
                .triggers
                .keys()
                .map(|t| (t.clone(), state_word(records.get(t).map(|r| r.state.state).unwrap_or_default())))
                .collect();
            let mut nodes = BTreeMap::new();
            for n in db.snapshot()?.nodes {
                *nodes.entry((n.group.clone(), n.status.as_str().to_string())).or_insert(0) += 1;
            }
            let mut latest = Vec::new();
            for name in config.counters.keys() {
                for l in db.latest(&Selector::counter(name), now)? {
                    let v = match l.value {
                        SampleValue::Value(v) => Some(v),
                        SampleValue::Error(_) => None,
                    };
                    latest.push((l.series, l.ts_ms, v));
                }
            }
            Ok(Scrape {
                counters: config.counters.keys().cloned().collect(),
                triggers,
                jobs: db.queue_depth()?,
                nodes,
                latest,
                ..Scrape::default()
            })
        })
        .await?;
    scrape.version = env!("CARGO_PKG_VERSION");
    scrape.revision = st.config.revision.clone();
    scrape.started_ms = st.daemon.started_ms;
    scrape.now_ms = now;
    scrape.webhooks = st.hooks.as_deref().map(super::hooks::counted).unwrap_or_default();
    scrape.fetch_failures = st.fetches.as_ref().map(crate::gitops::FetchHandle::fetches).map(|f| f.failed);
    let text = crate::redact::scrub(&metrics::render(&st.metrics, &scrape));
    let mut resp = text.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_milliseconds_or_durations() {
        assert_eq!(parse_step("1500").ok(), Some(1500));
        assert_eq!(parse_step("10s").ok(), Some(10_000));
        assert!(parse_step("0").is_err());
        assert!(parse_step("-5").is_err());
        assert!(parse_step("soon").is_err());
    }
}
