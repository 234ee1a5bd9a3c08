//! One struct per document kind, plus the nested settings they share.
//!
//! Doc comments become `description`s in the generated JSON Schemas, so they
//! are written for the person editing the YAML.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Duration, Percent};

impl Counter {
    /// The unit of one of its series: the unit of its regex group (its
    /// `field` label) when `units` names it, else `unit`.
    pub fn unit_of(&self, labels: &BTreeMap<String, String>) -> Option<&str> {
        labels.get("field").and_then(|f| self.units.get(f)).or(self.unit.as_ref()).map(String::as_str)
    }
}

/// A reference to a secret. Secrets are read when needed and never printed,
/// logged or stored in clear text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretRef {
    /// Read from an environment variable of the scaler process.
    Env {
        /// The environment variable's name.
        env: String,
    },
    /// Read from a file (trailing newline removed); relative to the repo root.
    File {
        /// The file's path.
        file: String,
    },
}

/// A value that is either written inline (not secret) or read from a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ValueOrSecret {
    /// The value itself.
    Value(String),
    /// A secret reference.
    Secret(SecretRef),
}

// ---------------------------------------------------------------- Project

/// Global settings: state store, defaults, daemon, secrets. Exactly one per repo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Project {
    /// The project's name; tags every node scaler launches.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where state is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateSettings>,
    /// Defaults inherited by targets and counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<Defaults>,
    /// How `scaler apply` works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apply: Option<ApplySettings>,
    /// Settings of `scaler daemon`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonSettings>,
    /// Named secrets, usable in templates as `secret("name")`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
}

/// Where state is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StateSettings {
    /// `sqlite:PATH` (relative to the repo root; default `sqlite:.scaler/state.db`)
    /// or `postgres://USER@HOST:PORT/DB` (no password in the URL: see `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The password of a `postgres://` state url, as a secret reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
    /// How long a state lock lives without being renewed (default `2m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_ttl: Option<Duration>,
    /// How long samples are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSettings>,
}

/// How long samples are kept: raw for `raw`, then as `rollup_step` buckets
/// (min/max/avg) for `rollup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Raw samples, failures and stream events (default `15d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Duration>,
    /// Width of a rollup bucket (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup_step: Option<Duration>,
    /// Rollups (default `400d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollup: Option<Duration>,
}

/// Defaults inherited by targets and counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// SSH connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSettings>,
    /// Default collection interval of counters (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Default timeout of collections and commands (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// How `scaler apply` works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplySettings {
    /// How many node changes run at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub parallelism: Option<u32>,
}

/// Settings of `scaler daemon`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonSettings {
    /// Listen address (default `127.0.0.1:7878`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Bearer token of the daemon's HTTP listener: it reads the API and
    /// `/metrics` and makes every change (push, alerts). Every route but
    /// `/healthz` needs a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    /// A read-only bearer token: it reads the API and `/metrics`; a change
    /// made with it gets 403.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_token: Option<SecretRef>,
    /// Where the daemon reads config from: a git branch, fetched every `poll`
    /// (default: the directory it runs in, watched for changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ConfigSource>,
    /// Apply new revisions without approval (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_apply: Option<bool>,
    /// How often triggers are evaluated (default `10s`); evaluations are
    /// aligned to the clock (multiples of the interval since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation_interval: Option<Duration>,
    /// The durable job queue that runs trigger actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<JobSettings>,
    /// The SNMP trap receiver (counters with source `trap`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traps: Option<TrapSettings>,
    /// Limits and safety nets of the HTTP listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<ListenerSettings>,
}

/// Limits and safety nets of the daemon's HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerSettings {
    /// More names the `Host` header may give (`name` or `name:port`, e.g. the
    /// name of a proxy in front), beside the listen address (and `localhost`
    /// for a loopback one). Any other `Host` gets 421 (DNS rebinding).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// The largest request body of any route, in bytes (default 1048576);
    /// a larger one gets 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1024, max = 67108864))]
    pub body_limit: Option<u64>,
    /// Time a client has to send its request headers (default `10s`); a
    /// slower one is disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_timeout: Option<Duration>,
    /// Time a whole request may take, its body included (default `30s`):
    /// 408 while the body is still arriving, else 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
}

/// The durable job queue that runs trigger actions: workers, leases, retries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// How many jobs run at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 64))]
    pub workers: Option<u32>,
    /// How long a worker holds a job between heartbeats; the job of a worker
    /// that died runs again after this (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Duration>,
    /// Tries per job before it is dead-lettered with its last error (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_attempts: Option<u32>,
    /// Delay before the first retry; it doubles with every try, and each
    /// delay is drawn at random below that bound (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
    /// Longest delay between tries (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<Duration>,
}

/// The SNMP trap receiver of `scaler daemon` (v1 and v2c traps and informs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrapSettings {
    /// UDP listen address (default `127.0.0.1:9162`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The community a trap must carry (default `public`); traps with another
    /// community are dropped and informs with another community are not answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<SecretRef>,
}

/// Where the daemon reads config from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigSource {
    /// A git remote: a local path, a `file://`, `git://` or `http://` URL
    /// (this build cannot fetch over https or ssh).
    pub git: String,
    /// The branch to follow (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Sub-directory of the repo holding the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How often to fetch (default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll: Option<Duration>,
    /// Secret that verifies push webhooks (`POST /hooks/git`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretRef>,
    /// HTTP Basic credentials for an `http://` remote (sent in clear text, so
    /// only to a loopback host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<GitCredentials>,
}

/// A user name and a password (or access token) for a git remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitCredentials {
    /// The user name.
    #[schemars(length(min = 1))]
    pub username: String,
    /// The password or token, by secret reference.
    pub password: SecretRef,
}

/// SSH connection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// Remote user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Remote port (default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Private key file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// known_hosts file (default `~/.ssh/known_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
    /// What to do with a host key that is not in known_hosts (default `strict`:
    /// refuse). A changed key is always refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key_policy: Option<HostKeyPolicy>,
    /// Connect timeout (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
}

/// What to do with an unknown host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// Refuse unknown keys.
    Strict,
    /// Record an unknown key on first use; still refuse a changed one.
    AcceptNew,
}

// ---------------------------------------------------------------- Target

/// A named host or cluster: static hosts, or the nodes of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The target's name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Static hosts (`host` or `host:port`). Give either `hosts` or `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<String>>,
    /// The nodes of this group. Give either `hosts` or `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// SSH settings (override the project defaults).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSettings>,
    /// HTTP settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
    /// JMX (Jolokia) settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jmx: Option<JmxSettings>,
    /// SNMP settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<SnmpSettings>,
    /// Redis settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSettings>,
    /// Labels attached to every series collected from this target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// HTTP settings of a target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `http` (default) or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<HttpScheme>,
    /// Port (default: the scheme's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, ValueOrSecret>,
}

/// HTTP scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HttpScheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

/// JMX settings (the Jolokia JSON protocol over HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JmxSettings {
    /// Jolokia port (default 8778).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Jolokia path (default `/jolokia`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Basic-auth user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Basic-auth password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

/// SNMP settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnmpSettings {
    /// Protocol version (default `v2c`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<SnmpVersion>,
    /// Community (default `public`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community: Option<ValueOrSecret>,
    /// UDP port (default 161).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// SNMP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SnmpVersion {
    /// SNMPv1.
    V1,
    /// SNMPv2c.
    V2c,
}

/// Redis settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// Port (default 6379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Database number (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<u32>,
    /// Password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

// ---------------------------------------------------------------- Counter

/// A metric: where it comes from, which targets, how often, how to parse it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Counter {
    /// The counter's name; triggers refer to it (`avg(load1, over="2m")`).
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where values come from.
    pub source: Source,
    /// Targets to collect from. Not used by `local`, `push`, `alertmanager`
    /// and `trap` sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Collection interval (default: project default, else `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Collection timeout (default: project default, else `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// How to turn the output into numbers (default `number`; `json` for
    /// `http` and `jmx`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse: Option<Parse>,
    /// Turn a monotonic counter into a per-second rate (the first reading only
    /// sets the baseline).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rate: bool,
    /// Unit shown in graphs (`%`, `req/s`, `bytes`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The unit of each named group of a `regex` parse (`{ rx: bytes,
    /// errors: packets }`); a group not listed has `unit`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub units: BTreeMap<String, String>,
    /// Labels attached to every series of this counter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Where a counter's values come from. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// Run a command on each target host over SSH.
    Ssh(CommandSource),
    /// Run a command on the scaler host (Nagios exit codes and perfdata understood).
    Local(CommandSource),
    /// GET a URL on each target host.
    Http(HttpSource),
    /// Read an MBean attribute through Jolokia.
    Jmx(JmxSource),
    /// GET or WALK an OID.
    Snmp(SnmpSource),
    /// A numeric Redis reply.
    Redis(RedisSource),
    /// A long-running command whose every stdout line yields samples.
    Stream(StreamSource),
    /// Values pushed with `PUT /api/v1/push/<counter>`.
    Push(PushSource),
    /// Alerts received from Alertmanager (1 while firing, 0 when resolved).
    Alertmanager(AlertSource),
    /// SNMP traps received by the daemon.
    Trap(TrapSource),
}

impl Source {
    /// The source's key in YAML (`ssh`, `http`...).
    pub fn name(&self) -> &'static str {
        match self {
            Source::Ssh(_) => "ssh",
            Source::Local(_) => "local",
            Source::Http(_) => "http",
            Source::Jmx(_) => "jmx",
            Source::Snmp(_) => "snmp",
            Source::Redis(_) => "redis",
            Source::Stream(_) => "stream",
            Source::Push(_) => "push",
            Source::Alertmanager(_) => "alertmanager",
            Source::Trap(_) => "trap",
        }
    }
}

/// A command to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandSource {
    /// The command (a minijinja template; `{{ host }}` is the target host;
    /// substitutions are shell-quoted).
    pub command: String,
}

/// An HTTP GET.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// URL template (default `http://{{ host }}/status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// An MBean attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JmxSource {
    /// The MBean (`java.lang:type=Memory`).
    pub mbean: String,
    /// The attribute (`HeapMemoryUsage`).
    pub attribute: String,
    /// Key inside a composite attribute (`used`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// An SNMP read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnmpSource {
    /// Numeric OID (`1.3.6.1.2.1.1.3.0`).
    #[schemars(regex(pattern = r"^\.?[0-9]+(\.[0-9]+)*$"))]
    pub oid: String,
    /// WALK the subtree: one series per index.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub walk: bool,
}

/// A Redis read. Give `llen` or `command`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisSource {
    /// Length of this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llen: Option<String>,
    /// Any command with a numeric reply (`["SCARD", "online"]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// A long-running command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamSource {
    /// The command (`vmstat 1`).
    pub command: String,
    /// Where it runs (default `ssh`: on each target host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<StreamVia>,
}

/// Where a stream command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamVia {
    /// On the scaler host.
    Local,
    /// On each target host.
    Ssh,
}

/// A pushed value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSource {}

/// Alerts from Alertmanager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSource {
    /// The `alertname` label to match.
    pub alertname: String,
    /// Other labels that must match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// SNMP traps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrapSource {
    /// The trap OID to match.
    #[schemars(regex(pattern = r"^\.?[0-9]+(\.[0-9]+)*$"))]
    pub oid: String,
    /// Varbind OID whose value is the sample (default: 1 per trap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\.?[0-9]+(\.[0-9]+)*$"))]
    pub value_oid: Option<String>,
}

/// How to turn output into numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Parse {
    /// The whole output, trimmed, is one number.
    Number,
    /// A regex; each named group gives one series.
    Regex(String),
    /// A JSON path (`$.load.avg1`).
    Json(String),
    /// `key=value` lines; take this key.
    Kv(KvParse),
    /// Nagios perfdata; take this label.
    Perfdata(String),
}

/// `key=value` parsing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KvParse {
    /// The key to take.
    pub key: String,
    /// Separator (default `=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sep: Option<String>,
}

// ---------------------------------------------------------------- Trigger

/// A condition over counters, how long it must hold, and what to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Trigger {
    /// The trigger's name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A minijinja expression over counters (`avg(cpu, group="web") > 80`), or
    /// a list of them that must all hold at the same instant.
    pub when: Condition,
    /// How long the condition must hold before firing (default `0s`).
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<Duration>,
    /// No new firing until this long after the last one (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<Duration>,
    /// Cooldown after a scale-up action (default: `cooldown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_up: Option<Duration>,
    /// Cooldown after a scale-down action (default: `cooldown`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown_down: Option<Duration>,
    /// For group conditions: at least this share of the group's hosts must
    /// have reported, else the state is `nodata` (default `100%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_coverage: Option<Percent>,
    /// Actions, run in order; the first failure stops the rest.
    pub then: Vec<Action>,
}

/// One expression or several that must all hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Condition {
    /// One expression.
    One(String),
    /// Expressions that must all hold at the same instant.
    All(Vec<String>),
}

impl Condition {
    /// The expressions.
    pub fn exprs(&self) -> Vec<&str> {
        match self {
            Condition::One(s) => vec![s.as_str()],
            Condition::All(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// An action. Exactly one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Action {
    /// Change a group's desired node count (always clamped to min..max).
    Scale(ScaleAction),
    /// Run a playbook.
    Run(RunAction),
    /// Send a notification.
    Notify(NotifyAction),
}

/// Change a group's desired count. Give exactly one of `by`, `to`, `percent`,
/// `target_value`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleAction {
    /// The group.
    pub group: String,
    /// Add (or with a negative number remove) this many nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<i64>,
    /// Set the desired count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    /// Change by this percentage of the current count (may be negative), rounded away from zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Target tracking: desired = ceil(metric / target * current).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_value: Option<TargetValue>,
}

/// Target tracking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetValue {
    /// An expression giving the current metric (`avg(cpu, group="web")`).
    pub metric: String,
    /// The value the metric should have per node.
    pub target: f64,
}

/// Run a playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunAction {
    /// The playbook.
    pub playbook: String,
    /// Where: `TARGET` (every host), `TARGET/newest`, `TARGET/HOST`, or
    /// `local` (default: the playbook's `on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// Playbook parameters (values are minijinja templates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, serde_json::Value>,
}

/// Send a notification. Give `webhook` or `sns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyAction {
    /// POST to an HTTP endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// Publish to AWS SNS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sns: Option<Sns>,
}

/// An HTTP webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The URL.
    pub url: String,
    /// Body template (minijinja; default: the event as JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Signs the body: `X-Signature: sha256=<hex hmac>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretRef>,
    /// Extra headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, ValueOrSecret>,
    /// A PEM file of CA certificates trusted for this `https` URL, in addition
    /// to the system's (relative to the repo root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// An AWS SNS publish.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sns {
    /// Topic ARN.
    pub topic_arn: String,
    /// Region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Message template (minijinja).
    pub message: String,
    /// Endpoint override (for SNS-compatible services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// A PEM file of CA certificates trusted for an `https` endpoint, in
    /// addition to the system's (relative to the repo root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

// ---------------------------------------------------------------- Playbook

/// Ordered steps run over SSH (Fabric-like), templated with minijinja.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// The playbook's name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Default target (`TARGET`, `TARGET/newest`, `TARGET/HOST` or `local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// Parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Param>,
    /// Rolling batch size: a count or a percentage of the hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<Serial>,
    /// Stop when more than this share of hosts failed (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_fail_percentage: Option<u8>,
    /// How many hosts run at once (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub forks: Option<u32>,
    /// The steps.
    pub steps: Vec<Step>,
}

/// A playbook parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Param {
    /// The run fails without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Value when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A batch size: a count or a percentage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Serial {
    /// This many hosts per batch.
    Count(#[schemars(range(min = 1))] u32),
    /// This share of the hosts per batch (`"25%"`).
    Percent(Percent),
}

/// One step. Exactly one of `run`, `sudo`, `local`, `put`, `get`, `prompt`,
/// `abort`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [
    {"required": ["run"]}, {"required": ["sudo"]}, {"required": ["local"]},
    {"required": ["put"]}, {"required": ["get"]}, {"required": ["prompt"]},
    {"required": ["abort"]}
]))]
pub struct Step {
    /// Shown in progress and results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Run a command on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Run a command with sudo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sudo: Option<Sudo>,
    /// Run a command on the scaler host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,
    /// Upload a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub put: Option<Put>,
    /// Download a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub get: Option<Get>,
    /// Ask for a value (terminal), or take it from `--var`/the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Prompt>,
    /// Stop the run on this host with this message (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    /// Only run when this expression is true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// Save the result under this name (`stdout`, `stderr`, `exit_code`,
    /// `changed`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register: Option<String>,
    /// A non-zero exit is a warning, not a failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warn: bool,
    /// Retry a failed step this many times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Wait between retries (default `1s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// Per-command timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Expression deciding failure (default: non-zero exit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_when: Option<String>,
    /// Expression deciding "changed" (default: true for commands that ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_when: Option<String>,
    /// Run this step on another target instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
}

/// A sudo command: a string, or a command with a user and password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Sudo {
    /// The command, run as root.
    Command(String),
    /// The command with options.
    Full(SudoFull),
}

/// A sudo command with options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SudoFull {
    /// The command.
    pub command: String,
    /// Run as this user (default root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Answer sudo's password prompt with this secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

/// An upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Put {
    /// Local file, relative to the repo root.
    pub src: String,
    /// Remote path.
    pub dest: String,
    /// Render `src` with minijinja first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub template: bool,
    /// File mode (`"0644"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^0?[0-7]{3,4}$"))]
    pub mode: Option<String>,
    /// File owner (where permitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// Remote path.
    pub src: String,
    /// Local path (a template; `{{ host }}` keeps hosts apart).
    pub dest: String,
}

/// A question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    /// The variable to set.
    pub var: String,
    /// The question (a template).
    pub text: String,
    /// Answer when none is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

// ---------------------------------------------------------------- NodeTemplate

/// How to create a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeTemplate {
    /// The template's name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which provider launches the node; its settings go under the key of the
    /// same name.
    pub provider: ProviderKind,
    /// Settings of the `local` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<LocalLaunch>,
    /// Settings of the `ec2` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2: Option<Ec2Launch>,
    /// SSH settings for reaching the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<SshSettings>,
    /// How a new node is provisioned before it joins its group's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<Provision>,
    /// The address scaler reaches a node at: `private_ip`, `public_ip`, or
    /// a template over the node (`node.name`, `node.group`, `node.index`)
    /// and what the provider reports (`address`, `private_ip`,
    /// `public_ip`, `tags`, `attrs`), e.g. `"127.0.0.1:{{ attrs.port }}"`.
    /// Default: the provider's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// How long each stage of a new node's life may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<StageTimeouts>,
}

/// How long each stage of a node's life may take before apply gives up on
/// it (the node is then reported, and replaced by the next apply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StageTimeouts {
    /// Until the provider says it runs (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Duration>,
    /// Until it answers: SSH when it is provisioned, else the `local.ready`
    /// port (default `5m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<Duration>,
    /// Until the Puppet manifest and the bootstrap playbook are done
    /// (default `30m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<Duration>,
}

/// A provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// Local processes, for trying scaler on one machine.
    Local,
    /// Amazon EC2 (or a compatible API).
    Ec2,
}

impl ProviderKind {
    /// The name in YAML.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Local => "local",
            ProviderKind::Ec2 => "ec2",
        }
    }
}

/// The shape of what a local node's `command` and `env` are rendered with
/// (values are placeholders): `validate` checks templates against it and
/// the local provider renders with exactly these names.
pub fn local_node_variables() -> serde_json::Value {
    serde_json::json!({
        "project": "",
        "node": { "name": "", "group": "", "index": 0, "port": 0, "dir": "" },
    })
}

/// A local node: a process started from a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalLaunch {
    /// The command (minijinja: `node.name`, `node.index`, `node.port`,
    /// `node.dir`; substitutions are shell-quoted). It runs with `sh -c` in
    /// the node's own working directory, output going to its log file.
    pub command: String,
    /// `node.port` is `port_base + node.index` (default 18000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_base: Option<u16>,
    /// Extra environment variables (values are templates like `command`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Wait until `node.port` accepts TCP connections before the node counts
    /// as launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
    /// Time between SIGTERM and SIGKILL on terminate (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace: Option<Duration>,
}

/// A readiness check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    /// Wait for `node.port` to accept TCP connections.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    /// Give up after this long (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// An EC2 instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ec2Launch {
    /// Region (`eu-west-1`).
    pub region: String,
    /// AMI id.
    pub image: String,
    /// Instance type (`t3.small`).
    pub instance_type: String,
    /// Subnet id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    /// Security group ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Key pair name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// Extra tags (scaler adds `scaler:project`, `scaler:group`, `Name`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// User data (a minijinja template: `node.name`, `node.index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
    /// API endpoint override (EC2-compatible services, tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// Provisioning of a new node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provision {
    /// Upload this manifest and run `puppet apply --detailed-exitcodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub puppet: Option<Puppet>,
    /// Then run this playbook on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub playbook: Option<String>,
}

/// A Puppet manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Puppet {
    /// Manifest path, relative to the repo root.
    pub manifest: String,
    /// Module path, relative to the repo root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulepath: Option<String>,
}

// ---------------------------------------------------------------- Group

/// A scaling group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The group's name; nodes are named `<group>-NN`.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The NodeTemplate new nodes are made from.
    pub template: String,
    /// Fewest nodes.
    pub min: u32,
    /// Most nodes.
    pub max: u32,
    /// Initial desired count (default `min`). At run time the desired count
    /// lives in state; changing this value in git sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<u32>,
    /// How nodes are removed when scaling in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in: Option<ScaleIn>,
    /// Node naming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naming: Option<Naming>,
    /// Any plan that would destroy a node of this group fails.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_destroy: bool,
    /// Labels of the group's nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// Scale-in settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleIn {
    /// Which node goes first (default `newest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pick: Option<Pick>,
    /// Playbook run on the node before it is terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<String>,
    /// How long the drain playbook may take (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_timeout: Option<Duration>,
    /// What a failed (or timed-out) drain does: `keep` the node running and
    /// report it (default), or `terminate` it anyway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_failure: Option<DrainFailure>,
    /// For `least-busy`: the counter whose lowest last value goes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<String>,
}

/// What a failed drain does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DrainFailure {
    /// The node keeps running and is reported; state still lists it.
    Keep,
    /// The node is terminated anyway (the failure is logged).
    Terminate,
}

/// Which node goes first on scale-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Pick {
    /// The most recently created.
    Newest,
    /// The least recently created.
    Oldest,
    /// The one with the lowest value of `scale_in.counter`.
    LeastBusy,
}

/// Node naming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Naming {
    /// Name prefix (default: the group's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[a-z0-9][a-z0-9-]{0,40}$"))]
    pub prefix: Option<String>,
    /// Zero-padded digits (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 6))]
    pub digits: Option<u8>,
}

// ---------------------------------------------------------------- Policy

/// Guardrails every plan must pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy's name.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Rules; any rule whose `deny` is true fails the plan.
    pub rules: Vec<PolicyRule>,
}

/// A deny rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// The rule's name.
    pub name: String,
    /// Evaluate once per `group` (variable `group`), once per `change`
    /// (variable `change`), or once for the `plan` (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub each: Option<PolicyScope>,
    /// A minijinja expression; when true the plan is denied. Variables: `plan`,
    /// `now`, `flags`, and `group` or `change` per `each`.
    pub deny: String,
    /// The message shown when denied (a template over the same variables).
    pub message: String,
}

/// What a policy rule is evaluated over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyScope {
    /// Once for the whole plan.
    Plan,
    /// Once per group in the desired or recorded state.
    Group,
    /// Once per planned change.
    Change,
}
