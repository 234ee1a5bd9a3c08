//! Trigger actions: what a fired trigger does, one action at a time.
//!
//! ```text
//! job (trigger, fire instant, values) + one `then:` entry as JSON
//!   -> Executor::run     -> scale   : SetDesired mutation (min..max; the queue commits it)
//!                           run     : exec::Runner on the resolved target, no terminal
//!                           notify  : webhook POST (HMAC-signed) | SNS Publish (SigV4),
//!                                     http or https (system CAs + the action's `ca_file`)
//!   -> Ok(ActionOutput { result, mutations }) | Err(ActionError { message, retryable })
//! ```
//!
//! The executor never writes the state store: a scale action returns the
//! mutation and the job queue commits it atomically with the job's
//! completion. Retryability is decided here (a 5xx, a timeout or a failed
//! host may succeed later; a bad config, a 4xx or a missing metric will not).
//! Secret values never appear in results, errors or logs.
//!
//! Implements the job queue's [`ActionExecutor`] (and shares its output and
//! error types); must not depend on: the CLI (no printing), the queue's workers.

mod run;
pub use run::{default_timeout, run_command, run_playbook, RunRequest};
mod scale;
pub mod sigv4;
mod sns;
mod tls;
mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Config;
use crate::model::Action;
use crate::jobs::ActionExecutor;
use crate::store::{Job, Snapshot, StateStore};

pub use crate::jobs::{ActionError, ActionOutput};

pub use scale::{scale_target, ScaleDecision};

/// Default timeout of a webhook or SNS request.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The valid action keys, for error messages.
pub const ACTION_NAMES: [&str; 3] = ["scale", "run", "notify"];

/// What an action sees: the job it belongs to and why the trigger fired.
/// Serialised (see [`ActionContext::template_context`]) it is also what
/// templates in `vars`, webhook bodies and SNS messages render with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionContext {
    /// The trigger's name.
    pub trigger: String,
    /// The fire instant, in milliseconds since the Unix epoch.
    pub fired_at_ms: i64,
    /// The job's idempotency key (trigger + fire instant).
    pub job_key: String,
    /// The action's position in the trigger's `then:` (0-based).
    pub action_index: usize,
    /// The config revision the trigger fired under.
    pub revision: Option<String>,
    /// The values and window that made the trigger fire; target-value scaling
    /// reads `values.metrics["<expression>"]`.
    pub values: Value,
}

impl ActionContext {
    /// The template context: `trigger`, `fired_at` (RFC 3339, UTC),
    /// `fired_at_ms`, `job_key`, `action_index`, `revision`, `values`.
    pub fn template_context(&self) -> Value {
        let fired_at = DateTime::<Utc>::from_timestamp_millis(self.fired_at_ms)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
            .unwrap_or_default();
        json!({
            "trigger": self.trigger,
            "fired_at": fired_at,
            "fired_at_ms": self.fired_at_ms,
            "job_key": self.job_key,
            "action_index": self.action_index,
            "revision": self.revision,
            "values": self.values,
        })
    }

    /// The context of the `index`th action of `job`.
    pub fn of_job(job: &Job, index: usize) -> ActionContext {
        ActionContext {
            trigger: job.trigger.clone(),
            fired_at_ms: job.fired_at_ms,
            job_key: job.key.clone(),
            action_index: index,
            revision: job.revision.clone(),
            values: job.payload.get("values").cloned().unwrap_or(Value::Null),
        }
    }

    /// `<job_key>#<action_index>`: the same for every retry of this action.
    pub fn idempotency_key(&self) -> String {
        format!("{}#{}", self.job_key, self.action_index)
    }
}

/// How the executor reaches the world.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The state store (read for desired counts and group nodes).
    pub store: StateStore,
    /// Timeout of a webhook or SNS request (default 10 s).
    pub http_timeout: Duration,
    /// Variables consulted before the process environment for the AWS
    /// settings (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`, `AWS_REGION`); empty in production.
    pub env: BTreeMap<String, String>,
}

impl ExecutorOptions {
    /// Defaults for a state store.
    pub fn new(store: StateStore) -> ExecutorOptions {
        ExecutorOptions { store, http_timeout: DEFAULT_HTTP_TIMEOUT, env: BTreeMap::new() }
    }

    fn var(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
    }
}

/// Runs trigger actions against one loaded config.
pub struct Executor {
    config: Arc<Config>,
    opts: ExecutorOptions,
    roots: tls::Roots,
    /// The client that trusts the system CAs.
    http: reqwest::Client,
    /// Clients that also trust a `ca_file`, by the file's content.
    with_ca: Mutex<HashMap<Vec<u8>, reqwest::Client>>,
}

impl Executor {
    /// An executor with its own HTTP connection pool; reads the system's CA
    /// certificates.
    pub fn new(config: Arc<Config>, opts: ExecutorOptions) -> Result<Executor, ActionError> {
        let roots = tls::Roots::system();
        let http = http_client(&opts, roots.config()?)?;
        Ok(Executor { config, opts, roots, http, with_ca: Mutex::new(HashMap::new()) })
    }

    /// The client for a request to `url`: the shared one, or one that also
    /// trusts `ca_file` (read on every call, so an edited file takes effect).
    async fn client(&self, what: &str, url: &reqwest::Url, ca_file: Option<&str>) -> Result<reqwest::Client, ActionError> {
        let Some(ca_file) = ca_file else {
            return Ok(self.http.clone());
        };
        if url.scheme() != "https" {
            return Err(ActionError::permanent(format!("{what}: `ca_file` is set but `{url}` is not https")));
        }
        let pem = tls::read_ca_file(&self.config.root, ca_file).await?;
        let mut cache = self.with_ca.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = cache.get(&pem) {
            return Ok(client.clone());
        }
        let client = http_client(&self.opts, self.roots.config_with(ca_file, &pem)?)?;
        cache.insert(pem, client.clone());
        Ok(client)
    }

    /// A transport error as an action error (see [`http_error`]).
    fn http_error(&self, what: &str, e: &reqwest::Error) -> ActionError {
        tls::certificate_failure(what, e, self.roots.len()).unwrap_or_else(|| http_error(what, e))
    }

    /// Runs one action (`action` is the JSON of one `then:` entry, e.g.
    /// `{"scale": {"group": "web", "by": 1}}`).
    pub async fn run(&self, ctx: &ActionContext, action: &Value) -> Result<ActionOutput, ActionError> {
        let action = parse_action(action)?;
        let started = std::time::Instant::now();
        let out = match &action {
            Action::Scale(a) => scale::execute(self, ctx, a).await,
            Action::Run(a) => run::execute(self, ctx, a).await,
            Action::Notify(n) => match (&n.webhook, &n.sns) {
                (Some(w), None) => webhook::execute(self, ctx, w).await,
                (None, Some(s)) => sns::execute(self, ctx, s).await,
                _ => Err(ActionError::permanent("`notify` needs exactly one of `webhook`, `sns`")),
            },
        };
        // A server or a command may echo a secret back: scrub before
        // anything is logged, stored or returned.
        let out = match out {
            Ok(mut o) => {
                crate::redact::scrub_json(&mut o.result);
                Ok(o)
            }
            Err(mut e) => {
                if let Some(r) = e.result.as_mut() {
                    crate::redact::scrub_json(r);
                }
                Err(ActionError { message: crate::redact::scrub(&e.message), ..e })
            }
        };
        let kind = action_name(&action);
        match &out {
            Ok(_) => tracing::info!(trigger = %ctx.trigger, job = %ctx.job_key, index = ctx.action_index, action = kind, ms = started.elapsed().as_millis() as u64, "action done"),
            Err(e) => tracing::info!(trigger = %ctx.trigger, job = %ctx.job_key, index = ctx.action_index, action = kind, retryable = e.retryable, error = %e.message, "action failed"),
        }
        out
    }

    /// Reads the recorded state.
    async fn snapshot(&self) -> Result<Snapshot, ActionError> {
        self.opts.store.snapshot().await.map_err(|e| ActionError::transient(format!("reading state: {e}")))
    }
}

fn action_name(a: &Action) -> &'static str {
    match a {
        Action::Scale(_) => "scale",
        Action::Run(_) => "run",
        Action::Notify(_) => "notify",
    }
}

/// The job queue runs a job's actions through the executor.
#[async_trait::async_trait]
impl ActionExecutor for Executor {
    async fn execute(&self, job: &Job, index: usize, action: &Value) -> Result<ActionOutput, ActionError> {
        self.run(&ActionContext::of_job(job, index), action).await
    }
}

/// Parses one `then:` entry; an unknown key or a bad shape is permanent.
pub fn parse_action(action: &Value) -> Result<Action, ActionError> {
    let valid = ACTION_NAMES.join(", ");
    let Some(obj) = action.as_object() else {
        return Err(ActionError::permanent(format!("an action must be an object with one key; actions are {valid}")));
    };
    let mut keys = obj.keys();
    let (Some(key), None) = (keys.next(), keys.next()) else {
        let found: Vec<String> = obj.keys().map(|k| format!("`{k}`")).collect();
        return Err(ActionError::permanent(format!(
            "an action has exactly one key, found {}; actions are {valid}",
            if found.is_empty() { "none".to_string() } else { found.join(", ") }
        )));
    };
    if !ACTION_NAMES.contains(&key.as_str()) {
        return Err(ActionError::permanent(format!("unknown action `{key}`; actions are {valid}")));
    }
    serde_json::from_value(action.clone()).map_err(|e| ActionError::permanent(format!("action `{key}`: {e}")))
}

/// Renders a plain-text template with the context; an error is permanent.
fn render(what: &str, src: &str, ctx: &ActionContext) -> Result<String, ActionError> {
    crate::template::render_text(src, &ctx.template_context())
        .map_err(|e| ActionError::permanent(format!("{what}: {e}")))
}

/// The first `max` characters of a text, on one line.
fn snippet(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > max {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    } else {
        one_line
    }
}

/// A client: no redirects, no proxy, TLS as `tls` says.
fn http_client(opts: &ExecutorOptions, tls: rustls::ClientConfig) -> Result<reqwest::Client, ActionError> {
    let client = crate::tls::HttpClientOptions { connect_timeout: opts.http_timeout, pool_idle_timeout: None, follow_redirects: false };
    crate::tls::http_client(&client, Some(tls)).map_err(|e| ActionError::permanent(e.to_string()))
}

/// An HTTP transport error: timeouts and connection failures are retryable
/// (certificate failures are caught before, by [`Executor::http_error`]).
fn http_error(what: &str, e: &reqwest::Error) -> ActionError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(&format!(": {s}"));
        source = s.source();
    }
    if e.is_builder() {
        ActionError::permanent(format!("{what}: {detail}"))
    } else if e.is_timeout() {
        ActionError::transient(format!("{what}: timed out: {detail}"))
    } else {
        ActionError::transient(format!("{what}: {detail}"))
    }
}

/// Checks that a URL is `http` or `https`.
fn http_url(what: &str, url: &str) -> Result<reqwest::Url, ActionError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| ActionError::permanent(format!("{what}: bad url `{url}`: {e}")))?;
    match parsed.scheme() {
        "http" | "https" => Ok(parsed),
        other => Err(ActionError::permanent(format!("{what}: `{url}`: unsupported scheme `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> ActionContext {
        ActionContext {
            trigger: "web-hot".into(),
            fired_at_ms: 1_700_000_000_123,
            job_key: "web-hot@1700000000123".into(),
            action_index: 2,
            revision: Some("abc".into()),
            values: json!({"metrics": {"avg(cpu)": 91.5}}),
        }
    }

    #[test]
    fn unknown_action_names_the_valid_ones() {
        let e = parse_action(&json!({"page": {"to": "ops"}})).unwrap_err();
        assert_eq!(e.message, "unknown action `page`; actions are scale, run, notify");
        assert!(!e.retryable);
    }

    #[test]
    fn bad_shapes_are_permanent() {
        let e = parse_action(&json!("scale")).unwrap_err();
        assert!(e.message.contains("one key"), "{}", e.message);
        let e = parse_action(&json!({"scale": {}, "run": {}})).unwrap_err();
        assert_eq!(e.message, "an action has exactly one key, found `scale`, `run`; actions are scale, run, notify");
        let e = parse_action(&json!({"scale": {"group": "web", "by": "x"}})).unwrap_err();
        assert!(e.message.starts_with("action `scale`: "), "{}", e.message);
        assert!(!e.retryable);
        assert!(matches!(parse_action(&json!({"scale": {"group": "web", "by": 1}})), Ok(Action::Scale(_))));
    }

    #[test]
    fn template_context_and_idempotency_key() {
        let c = ctx();
        let t = c.template_context();
        assert_eq!(t["fired_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(t["trigger"], "web-hot");
        assert_eq!(t["values"]["metrics"]["avg(cpu)"], 91.5);
        assert_eq!(c.idempotency_key(), "web-hot@1700000000123#2");
        assert_eq!(render("body", "{{ trigger }} at {{ fired_at }}", &c).unwrap(), "web-hot at 2023-11-14T22:13:20.123Z");
        let e = render("body", "{{ nope }}", &c).unwrap_err();
        assert!(e.message.starts_with("body: undefined value"), "{}", e.message);
    }

    #[test]
    fn only_http_and_https_urls() {
        assert!(http_url("webhook", "http://127.0.0.1:1/x").is_ok());
        assert!(http_url("webhook", "https://hooks.example/x").is_ok());
        let e = http_url("webhook", "ftp://hooks.example/x").unwrap_err();
        assert_eq!(e.message, "webhook: `ftp://hooks.example/x`: unsupported scheme `ftp`");
        assert!(http_url("webhook", "not a url").is_err());
    }

    #[test]
    fn snippets_are_short_and_one_line() {
        assert_eq!(snippet("a\nb  c", 10), "a b c");
        assert_eq!(snippet("abcdef", 3), "abc…");
    }
}
