//! The OpenAPI 3.0 document of the daemon's listener, served at
//! `GET /api/v1/openapi.json`: one [`Operation`] per route and method in
//! [`operations`], their answers' schemas generated from the Rust types
//! that the handlers serialise (`schemars`, the crate that already makes
//! the config's JSON Schemas; see docs/decisions.md).
//!
//! Adding a route means adding its [`Operation`] here: a test reads every
//! path routed in `src/` and fails on a path this document lacks, and
//! the route × token matrix test walks this document.
//!
//! Owns: [`operations`], [`document`]. Must not depend on: the store, IO.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::resources::SeriesAnswer;
use super::views::{CounterView, GroupView, JobView, NodeView, PlanView, StatusView, TargetView, TaskView, TraceView, TriggerView};
use super::Listing;

/// How a route is authorised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Open (`/healthz`, this document).
    None,
    /// `Authorization: Bearer <token>`; a change needs `daemon.token`.
    Bearer,
    /// A signature of the body (webhooks), no bearer token.
    Signature,
}

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    /// In the path (`{name}`).
    Path,
    /// In the query string.
    Query,
}

/// One parameter of an operation.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name.
    pub name: &'static str,
    /// Where it goes.
    pub at: In,
    /// Whether it must be given.
    pub required: bool,
    /// Its JSON Schema.
    pub schema: Value,
    /// What it means.
    pub description: &'static str,
}

/// What a successful answer carries.
#[derive(Debug, Clone)]
pub enum Answer {
    /// JSON of this schema.
    Json(Value),
    /// The Prometheus text format.
    Text,
    /// A file of one of these media types (the web UI).
    Media(&'static [&'static str]),
}

/// One route and method.
#[derive(Debug, Clone)]
pub struct Operation {
    /// `get`, `put`, `post`, `delete`.
    pub method: &'static str,
    /// The path as axum writes it (`/api/v1/targets/{name}`).
    pub path: &'static str,
    /// A unique id.
    pub id: &'static str,
    /// One line.
    pub summary: &'static str,
    /// How it is authorised.
    pub auth: Auth,
    /// Its parameters.
    pub params: Vec<Param>,
    /// The request body's schema, when it takes one.
    pub body: Option<Value>,
    /// The success status and what it carries.
    pub ok: (u16, Answer),
    /// Other success answers (a webhook's 200 beside its 202).
    pub also: Vec<(u16, Answer)>,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    let s: Schema = g.subschema_for::<T>();
    s.to_value()
}

fn query(name: &'static str, schema: Value, description: &'static str) -> Param {
    Param { name, at: In::Query, required: false, schema, description }
}

fn path_name(description: &'static str) -> Param {
    Param { name: "name", at: In::Path, required: true, schema: json!({"type": "string"}), description }
}

fn paging() -> Vec<Param> {
    paging_after(json!({"type": "string"}))
}

fn paging_after(after: Value) -> Vec<Param> {
    vec![
        query("limit", json!({"type": "integer", "minimum": 1}), "at most this many items (default 100; more than 500 gives 500)"),
        query("after", after, "only items after this cursor (the `next` of the previous page)"),
    ]
}

fn get(path: &'static str, id: &'static str, summary: &'static str, params: Vec<Param>, ok: Value) -> Operation {
    Operation { method: "get", path, id, summary, auth: Auth::Bearer, params, body: None, ok: (200, Answer::Json(ok)), also: vec![] }
}

/// Every operation of the listener, the receivers' included.
pub fn operations(g: &mut SchemaGenerator) -> Vec<Operation> {
    let time = json!({"type": "string", "minLength": 1});
    let mut ops = vec![
        Operation {
            method: "get",
            path: "/healthz",
            id: "health",
            summary: "the daemon answers",
            auth: Auth::None,
            params: vec![],
            body: None,
            ok: (200, Answer::Json(json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}))),
            also: vec![],
        },
        Operation {
            method: "get",
            path: "/api/v1/openapi.json",
            id: "openapi",
            summary: "this document",
            auth: Auth::None,
            params: vec![],
            body: None,
            ok: (200, Answer::Json(json!({"type": "object"}))),
            also: vec![],
        },
        Operation {
            method: "get",
            path: "/metrics",
            id: "metrics",
            summary: "the daemon's metrics in the Prometheus text format 0.0.4",
            auth: Auth::Bearer,
            params: vec![],
            body: None,
            ok: (200, Answer::Text),
            also: vec![],
        },
        get("/api/v1/status", "status", "what the daemon runs", vec![], schema::<StatusView>(g)),
        get("/api/v1/targets", "targets", "targets with their hosts", paging(), schema::<Listing<TargetView>>(g)),
        get("/api/v1/targets/{name}", "target", "one target", vec![path_name("the target's name")], schema::<TargetView>(g)),
        get("/api/v1/counters", "counters", "counters", paging(), schema::<Listing<CounterView>>(g)),
        get("/api/v1/counters/{name}", "counter", "one counter", vec![path_name("the counter's name")], schema::<CounterView>(g)),
        get(
            "/api/v1/series",
            "series",
            "a counter's series over [from, to): points `[epoch_ms, number|null]`",
            [
                vec![
                    Param { name: "counter", at: In::Query, required: true, schema: json!({"type": "string", "minLength": 1}), description: "the counter" },
                    query("host", json!({"type": "array", "items": {"type": "string", "minLength": 1}}), "only these hosts (repeatable)"),
                    query("from", time.clone(), "start: epoch ms, RFC 3339, or `now-1h` (default now-1h)"),
                    query("to", time.clone(), "end, excluded (default now)"),
                    query("step", json!({"type": "string", "minLength": 1}), "bucket width: ms or a duration such as `1m`"),
                ],
                paging(),
            ]
            .concat(),
            schema::<SeriesAnswer>(g),
        ),
        get("/api/v1/triggers", "triggers", "triggers with their saved state", paging(), schema::<Listing<TriggerView>>(g)),
        get("/api/v1/triggers/{name}", "trigger", "one trigger", vec![path_name("the trigger's name")], schema::<TriggerView>(g)),
        get(
            "/api/v1/jobs",
            "jobs",
            "trigger action jobs, newest first",
            [
                vec![
                    query("status", json!({"type": "string", "enum": ["queued", "leased", "done", "dead"]}), "only jobs in this status"),
                    query("trigger", json!({"type": "string"}), "only the jobs of this trigger"),
                ],
                paging_after(json!({"type": "string", "pattern": "^[0-9]{1,18}$"})),
            ]
            .concat(),
            schema::<Listing<JobView>>(g),
        ),
        get(
            "/api/v1/jobs/{key}",
            "job",
            "one job, by id or by key (`trigger@fired_ms`)",
            vec![Param { name: "key", at: In::Path, required: true, schema: json!({"type": "string"}), description: "the job's id or key" }],
            schema::<JobView>(g),
        ),
        get("/api/v1/nodes", "nodes", "recorded nodes", paging(), schema::<Listing<NodeView>>(g)),
        get("/api/v1/nodes/{name}", "node", "one node", vec![path_name("the node's name")], schema::<NodeView>(g)),
        get("/api/v1/groups", "groups", "groups with their counts", paging(), schema::<Listing<GroupView>>(g)),
        get("/api/v1/groups/{name}", "group", "one group", vec![path_name("the group's name")], schema::<GroupView>(g)),
    ];
    ops.extend(receivers());
    ops.extend(tasks(g));
    ops.extend(open_routes());
    ops
}

fn path_id(description: &'static str) -> Param {
    Param { name: "id", at: In::Path, required: true, schema: json!({"type": "string"}), description }
}

/// A `POST` answered 202 `{"task": ID}` at once (`GET /api/v1/tasks/{id}` follows it).
fn post_task(path: &'static str, id: &'static str, summary: &'static str, params: Vec<Param>, body: Option<Value>) -> Operation {
    let accepted = json!({"type": "object", "required": ["task"], "properties": {"task": {"type": "string", "description": "the task's id: follow it at `GET /api/v1/tasks/{id}`"}}});
    Operation { method: "post", path, id, summary, auth: Auth::Bearer, params, body, ok: (202, Answer::Json(accepted)), also: vec![] }
}

/// The task routes of [`super::tasks`]: long work answered with a task id.
fn tasks(g: &mut SchemaGenerator) -> Vec<Operation> {
    let state = query("state", json!({"type": "string", "enum": ["pending", "running", "success", "failure", "cancelled"]}), "only tasks in this state");
    let kind = query("kind", json!({"type": "string", "enum": ["run", "exec", "plan", "apply", "trigger"]}), "only tasks of this kind");
    let page = query("page", json!({"type": "string"}), "the same as `after`");
    let mut task_params = paging();
    task_params.extend([kind, state.clone(), page.clone()]);
    let mut run_params = paging();
    run_params.extend([state, page]);
    let scalar = json!({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]});
    vec![
        get("/api/v1/tasks", "tasks", "tasks, newest first", task_params, schema::<Listing<TaskView>>(g)),
        get("/api/v1/tasks/{id}", "task", "one task: its state and, once ended, its result", vec![path_id("the task's id")], schema::<TaskView>(g)),
        get("/api/v1/runs", "runs", "the tasks that run playbooks or commands, newest first", run_params, schema::<Listing<TaskView>>(g)),
        get("/api/v1/runs/{id}", "run", "one run: every host and step with its own id and state", vec![path_id("the run's task id")], schema::<TaskView>(g)),
        post_task(
            "/api/v1/runs",
            "start_run",
            "run a playbook on a target (its `on` when `target` is left out)",
            vec![],
            Some(json!({"type": "object", "required": ["playbook"], "additionalProperties": false, "properties": {
                "playbook": {"type": "string"},
                "target": {"type": "string", "description": "a target or `target/host`"},
                "vars": {"type": "object", "additionalProperties": scalar}}})),
        ),
        post_task(
            "/api/v1/exec",
            "start_exec",
            "run a shell command on every host of a target",
            vec![],
            Some(json!({"type": "object", "required": ["target", "command"], "additionalProperties": false, "properties": {
                "target": {"type": "string", "description": "a target or `target/host`"},
                "command": {"type": "string", "minLength": 1}}})),
        ),
        post_task("/api/v1/triggers/{name}/fire", "fire", "run a trigger's actions now, as a job", vec![path_name("the trigger's name")], None),
        post_task("/api/v1/plans", "start_plan", "plan the running revision now", vec![], None),
        get("/api/v1/plans", "plans", "stored plans, newest first", paging(), schema::<Listing<PlanView>>(g)),
        get("/api/v1/plans/{id}", "plan", "one stored plan with its diff", vec![path_id("the plan's id")], schema::<PlanView>(g)),
        post_task("/api/v1/plans/{id}/approve", "approve", "approve a held plan and apply it (409 in another state)", vec![path_id("the plan's id")], None),
        post_task("/api/v1/plans/{id}/apply", "apply", "apply a held or approved plan (409 in another state)", vec![path_id("the plan's id")], None),
        get("/api/v1/traces", "traces", "trace tasks (`scaler trace start`), newest first", paging(), schema::<Listing<TraceView>>(g)),
    ]
}

/// The push webhook and the web UI: no bearer token.
fn open_routes() -> Vec<Operation> {
    let hook = |status: &'static [&'static str]| {
        Answer::Json(json!({"type": "object", "required": ["result"], "properties": {
            "result": {"type": "string", "enum": status}, "branch": {"type": "string"}, "reason": {"type": "string"}}}))
    };
    vec![
        Operation {
            method: "post",
            path: "/hooks/git",
            id: "git_push",
            summary: "a git host's push webhook (GitHub, GitLab or generic signature over the body): wakes the configured source, which fetches its own remote and branch (404 for a directory source)",
            auth: Auth::Signature,
            params: vec![],
            body: Some(json!({"type": "object"})),
            ok: (202, hook(&["queued"])),
            also: vec![(200, hook(&["ignored", "duplicate"]))],
        },
        Operation {
            method: "get",
            path: "/",
            id: "web_ui",
            summary: "the web UI's page (it logs in with a token kept in session storage)",
            auth: Auth::None,
            params: vec![],
            body: None,
            ok: (200, Answer::Media(&["text/html"])),
            also: vec![],
        },
        Operation {
            method: "get",
            path: "/assets/{name}",
            id: "web_asset",
            summary: "a script or style sheet of the web UI (content-hashed, cached for good)",
            auth: Auth::None,
            params: vec![path_name("the asset's file name")],
            body: None,
            ok: (200, Answer::Media(&["text/javascript", "text/css"])),
            also: vec![],
        },
    ]
}

/// The receivers of [`crate::inputs`] (their answers are built with
/// `json!`, so their schemas are written here).
fn receivers() -> Vec<Operation> {
    let count = json!({"type": "integer", "minimum": 0});
    vec![
        Operation {
            method: "put",
            path: "/api/v1/push/{name}",
            id: "push",
            summary: "push a value to a counter with source `push`: a number, or `{\"value\", \"host\", \"labels\"}`, or a list of those",
            auth: Auth::Bearer,
            params: vec![path_name("the counter's name")],
            // The plain form; `{"value": 42.5, "host": "web-01", "labels": {}}` works too.
            body: Some(json!({"type": "number"})),
            ok: (
                200,
                Answer::Json(json!({"type": "object", "required": ["accepted", "received_ms"], "properties": {
                    "accepted": count, "series": {"type": "string", "description": "the series as shown, `counter{host=\"h\",k=\"v\"}`"}, "received_ms": {"type": "integer"}}})),
            ),
            also: vec![],
        },
        Operation {
            method: "post",
            path: "/api/v1/alerts",
            id: "alerts",
            summary: "an Alertmanager webhook notification",
            auth: Auth::Bearer,
            params: vec![],
            body: Some(alertmanager_payload()),
            ok: (
                200,
                Answer::Json(json!({"type": "object", "required": ["accepted", "duplicates", "unmatched"], "properties": {
                    "accepted": count, "duplicates": count, "unmatched": count}})),
            ),
            also: vec![],
        },
    ]
}

/// What `POST /api/v1/alerts` reads of an Alertmanager webhook (version 4;
/// other fields are ignored).
fn alertmanager_payload() -> Value {
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    json!({
        "type": "object",
        "required": ["version", "groupKey", "alerts"],
        "properties": {
            "version": {"type": "string", "enum": ["4"]},
            "groupKey": {"type": "string", "minLength": 1},
            "alerts": {"type": "array", "items": {
                "type": "object",
                "required": ["status", "labels", "annotations", "startsAt", "endsAt", "fingerprint"],
                "properties": {
                    "status": {"type": "string", "enum": ["firing", "resolved"]},
                    "labels": strings,
                    "annotations": strings,
                    "startsAt": {"type": "string", "format": "date-time"},
                    "endsAt": {"type": "string", "format": "date-time"},
                    "fingerprint": {"type": "string", "minLength": 1},
                },
            }},
        },
    })
}

fn error_schema() -> Value {
    json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}})
}

fn operation_object(op: &Operation) -> Value {
    let mut o = Map::new();
    o.insert("operationId".into(), json!(op.id));
    o.insert("summary".into(), json!(op.summary));
    if !op.params.is_empty() {
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|p| {
                let mut v = json!({
                    "name": p.name,
                    "in": match p.at { In::Path => "path", In::Query => "query" },
                    "required": p.required || p.at == In::Path,
                    "description": p.description,
                    "schema": p.schema,
                });
                if p.schema["type"] == "array" {
                    v["style"] = json!("form");
                    v["explode"] = json!(true);
                }
                v
            })
            .collect();
        o.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = &op.body {
        o.insert("requestBody".into(), json!({"required": true, "content": {"application/json": {"schema": body}}}));
    }
    let answer = |a: &Answer| match a {
        Answer::Json(s) => json!({"description": "success", "content": {"application/json": {"schema": s}}}),
        Answer::Text => json!({"description": "success", "content": {"text/plain": {"schema": {"type": "string"}}}}),
        Answer::Media(types) => {
            let content: Map<String, Value> = types.iter().map(|t| (t.to_string(), json!({"schema": {"type": "string"}}))).collect();
            json!({"description": "success", "content": content})
        }
    };
    let mut responses = Map::new();
    for (status, a) in std::iter::once(&op.ok).chain(&op.also) {
        responses.insert(status.to_string(), answer(a));
    }
    responses.insert("default".into(), json!({"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
    o.insert("responses".into(), Value::Object(responses));
    o.insert(
        "security".into(),
        match op.auth {
            Auth::Bearer => json!([{"bearer": []}]),
            Auth::None | Auth::Signature => json!([]),
        },
    );
    if op.auth == Auth::Signature {
        o.insert("x-scaler-auth".into(), json!("signature"));
    }
    Value::Object(o)
}

/// The whole document.
pub fn document() -> Value {
    let mut g = SchemaSettings::openapi3().into_generator();
    let ops = operations(&mut g);
    let mut paths = Map::new();
    for op in &ops {
        let item = paths.entry(op.path.to_string()).or_insert_with(|| json!({}));
        item[op.method] = operation_object(op);
    }
    let mut schemas: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    schemas.insert("Error".into(), error_schema());
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "scaler daemon",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The daemon's listener: read API, receivers, webhooks and /metrics. Every route but the open ones needs `Authorization: Bearer <token>`; a change needs `daemon.token` (the read-only `daemon.read_token` gets 403). Errors are `{\"error\": \"...\"}`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_unique_and_its_refs_resolve() {
        let doc = document();
        let mut ids = std::collections::BTreeSet::new();
        let mut g = SchemaSettings::openapi3().into_generator();
        for op in operations(&mut g) {
            assert!(ids.insert(op.id), "operation id `{}` twice", op.id);
            for p in op.path.split('/').filter(|s| s.starts_with('{')) {
                let name = p.trim_matches(|c| c == '{' || c == '}');
                assert!(op.params.iter().any(|q| q.name == name && q.at == In::Path), "{}: `{name}` is not a parameter", op.path);
            }
        }
        let text = doc.to_string();
        for r in regex::Regex::new(r##""\$ref":"#/components/schemas/([^"]+)""##).unwrap().captures_iter(&text) {
            assert!(doc["components"]["schemas"].get(&r[1]).is_some(), "dangling $ref {}", &r[1]);
        }
        assert_eq!(doc["paths"]["/api/v1/status"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/StatusView");
    }
}
