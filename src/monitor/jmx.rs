//! The `jmx` source: MBean attributes read through the Jolokia JSON
//! protocol (an HTTP agent in or beside the JVM).
//!
//! Every `jmx` counter of a host with the same interval is one job, read with
//! one bulk POST (a JSON array of `read` requests), with basic auth when the
//! target has `jmx.user` (and `jmx.password`, a secret read when the job was
//! planned); `path` selects a key
//! inside a composite attribute (`HeapMemoryUsage` / `used`). Each request
//! has its own status, so an unknown MBean fails only its counter. Numbers
//! are values; strings, booleans and composites (without `path`) are
//! failures.

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::parse::{describe_json, Reading};
use super::{CollectError, Collector, Job, Outcome};
use crate::model::Source;

/// Reads Jolokia agents (sharing the HTTP client's connection pool).
#[derive(Debug, Clone)]
pub struct JmxCollector {
    client: reqwest::Client,
}

impl JmxCollector {
    /// A collector with its own connection pool.
    pub fn new() -> Result<JmxCollector, CollectError> {
        Ok(JmxCollector { client: super::http::collector_client()? })
    }
}

/// The agent's URL for a job.
pub fn url_of(job: &Job) -> String {
    let settings = job.target.as_ref().and_then(|t| t.jmx.as_ref());
    let (address, own_port) = (&job.address.host, job.address.port);
    let port = own_port.or(settings.and_then(|s| s.port)).unwrap_or(8778);
    let path = settings.and_then(|s| s.path.clone()).unwrap_or_else(|| "/jolokia".into());
    let address = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
    format!("http://{address}:{port}/{}/", path.trim_matches('/'))
}

/// The bulk request: one `read` per counter.
pub fn bulk_request(job: &Job) -> Result<Value, CollectError> {
    job.counters
        .iter()
        .map(|c| match &c.counter.source {
            Source::Jmx(j) => {
                let mut r = json!({"type": "read", "mbean": j.mbean, "attribute": j.attribute});
                if let Some(p) = &j.path {
                    r["path"] = json!(p);
                }
                Ok(r)
            }
            _ => Err(CollectError::Config(format!("counter `{}` is not a jmx source", c.name()))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// One response entry as an outcome.
pub fn entry_outcome(what: &str, entry: &Value) -> Outcome {
    let status = entry["status"].as_u64().unwrap_or(0);
    if status != 200 {
        let kind = entry["error_type"].as_str().unwrap_or("error");
        let msg = entry["error"].as_str().unwrap_or("no message");
        return Err(CollectError::Protocol(format!("jolokia {status} for {what}: {kind}: {msg}")));
    }
    let v = &entry["value"];
    match v.as_f64().filter(|f| f.is_finite()) {
        Some(x) => Ok(vec![Reading::plain(x)]),
        None if v.is_object() => Err(CollectError::Protocol(format!("{what} is a composite value; set `path` to one of its keys"))),
        None => Err(CollectError::Protocol(format!("{what} is {}, not a number", describe_json(v)))),
    }
}

#[async_trait]
impl Collector for JmxCollector {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let all = |e: CollectError| job.counters.iter().map(|_| Err(e.clone())).collect::<Vec<_>>();
        let settings = job.target.as_ref().and_then(|t| t.jmx.as_ref());
        let password = match job.credentials() {
            Ok(c) => c.jmx_password.as_ref().map(|p| p.expose_secret()),
            Err(e) => return all(e),
        };
        let body = match bulk_request(job) {
            Ok(b) => b,
            Err(e) => return all(e),
        };
        let url = url_of(job);
        let mut req = self.client.post(&url).timeout(job.timeout).header("Content-Type", "application/json").body(body.to_string());
        let user = settings.and_then(|s| s.user.as_deref());
        if user.is_some() || password.is_some() {
            req = req.basic_auth(user.unwrap_or_default(), password);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => return all(CollectError::Connect { addr: url.clone(), detail: e.to_string() }),
            Err(e) if e.is_timeout() => return all(CollectError::Timeout(job.timeout)),
            Err(e) => return all(CollectError::Protocol(format!("POST `{url}`: {e}"))),
        };
        let status = resp.status();
        if status.is_client_error() || status.is_server_error() {
            return all(CollectError::HttpStatus { url, status: status.as_u16() });
        }
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return all(CollectError::Protocol(format!("reading `{url}`: {e}"))),
        };
        let entries: Vec<Value> = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(a)) => a,
            Ok(other) => return all(CollectError::Protocol(format!("jolokia answered {} instead of a list (status {})", describe_json(&other), other["status"]))),
            Err(e) => return all(CollectError::Protocol(format!("jolokia answer is not JSON: {e}"))),
        };
        job.counters
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let what = match &c.counter.source {
                    Source::Jmx(j) => format!("`{}` `{}`{}", j.mbean, j.attribute, j.path.as_ref().map(|p| format!(" `{p}`")).unwrap_or_default()),
                    _ => c.name().to_string(),
                };
                match entries.get(i) {
                    Some(e) => entry_outcome(&what, e),
                    None => Err(CollectError::Protocol(format!("jolokia gave no answer for {what}"))),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries() {
        assert_eq!(entry_outcome("x", &json!({"status": 200, "value": 15})), Ok(vec![Reading::plain(15.0)]));
        assert_eq!(
            entry_outcome("x", &json!({"status": 404, "error_type": "javax.management.InstanceNotFoundException", "error": "java.lang:type=Nope"})),
            Err(CollectError::Protocol("jolokia 404 for x: javax.management.InstanceNotFoundException: java.lang:type=Nope".into()))
        );
        assert!(entry_outcome("x", &json!({"status": 200, "value": "OpenJDK"})).is_err());
        assert!(entry_outcome("x", &json!({"status": 200, "value": {"used": 1}})).unwrap_err().to_string().contains("set `path`"));
    }
}
