//! The `http` source: a GET per counter and host, values by JSON path.
//!
//! The URL is a template (default `{scheme}://{address}:{port}/status`, where
//! the port is the host's own, else the target's `http.port`, else the
//! scheme's). The target's `http.headers` are sent with every request; secret
//! values were read when the job was planned and are sent marked sensitive.
//! A 4xx/5xx status or a body that is not JSON is a failure.
//! Connect failures are retried (twice, at once); nothing else is, since the
//! request may have reached the server. One client (connection pool, with
//! keep-alive) serves every host.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::{CollectError, Collector, Job, Outcome};
use secrecy::ExposeSecret;

use super::credentials::Header;
use crate::model::{HttpScheme, Source};

/// Connect attempts after the first one fails to connect.
pub const CONNECT_RETRIES: u32 = 2;

/// GETs JSON.
#[derive(Debug, Clone)]
pub struct HttpCollector {
    client: reqwest::Client,
}

impl HttpCollector {
    /// A collector with its own connection pool.
    pub fn new() -> Result<HttpCollector, CollectError> {
        Ok(HttpCollector { client: collector_client()? })
    }

    /// GETs `url` with `headers` and returns the body if the status is a success.
    pub async fn get(&self, url: &str, headers: &[Header], timeout: Duration) -> Result<String, CollectError> {
        let mut attempt = 0;
        loop {
            let mut req = self.client.get(url).timeout(timeout);
            for h in headers {
                let mut value = reqwest::header::HeaderValue::from_str(h.value.expose_secret())
                    .map_err(|_| CollectError::Config(format!("http header `{}`: the value is not a valid header value", h.name)))?;
                value.set_sensitive(h.secret);
                req = req.header(h.name.as_str(), value);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_client_error() || status.is_server_error() {
                        return Err(CollectError::HttpStatus { url: url.to_string(), status: status.as_u16() });
                    }
                    return resp.text().await.map_err(|e| CollectError::Protocol(format!("reading `{url}`: {}", chain(&e))));
                }
                Err(e) if e.is_connect() && attempt < CONNECT_RETRIES => {
                    attempt += 1;
                    tracing::debug!(%url, attempt, error = %chain(&e), "connect failed; retrying");
                }
                Err(e) if e.is_connect() => return Err(CollectError::Connect { addr: url.to_string(), detail: chain(&e) }),
                Err(e) if e.is_timeout() => return Err(CollectError::Timeout(timeout)),
                Err(e) => return Err(CollectError::Protocol(format!("GET `{url}`: {}", chain(&e)))),
            }
        }
    }
}

/// The client of the HTTP and JMX collectors: redirects followed, idle
/// connections kept 90 s.
pub(super) fn collector_client() -> Result<reqwest::Client, CollectError> {
    let opts = crate::tls::HttpClientOptions {
        connect_timeout: Duration::from_secs(5),
        pool_idle_timeout: Some(Duration::from_secs(90)),
        follow_redirects: true,
    };
    crate::tls::http_client(&opts, None).map_err(|e| CollectError::Config(e.to_string()))
}

/// An error and its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// The URL of a job: the counter's template or the default.
pub fn url_of(job: &Job, template: Option<&str>) -> Result<String, CollectError> {
    let http = job.target.as_ref().and_then(|t| t.http.as_ref());
    let scheme = match http.and_then(|h| h.scheme) {
        Some(HttpScheme::Https) => "https",
        _ => "http",
    };
    let (address, own_port) = (&job.address.host, job.address.port);
    let port = own_port.or(http.and_then(|h| h.port)).unwrap_or(if scheme == "https" { 443 } else { 80 });
    let address = if address.contains(':') { format!("[{address}]") } else { address.to_string() };
    let Some(template) = template else {
        return Ok(format!("{scheme}://{address}:{port}/status"));
    };
    let env = crate::template::expr_env();
    env.render_str(template, minijinja::Value::from(minijinja::value::Serde(json!({ "host": job.host, "address": address, "port": port, "scheme": scheme }))))
        .map_err(|e| CollectError::Config(format!("url template: {e}")))
}

#[async_trait]
impl Collector for HttpCollector {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let headers = match job.credentials() {
            Ok(c) => &c.http_headers,
            Err(e) => return job.counters.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut outcomes = Vec::with_capacity(job.counters.len());
        // Counters that read the same URL share one GET.
        let mut bodies: std::collections::HashMap<String, Result<String, CollectError>> = std::collections::HashMap::new();
        for spec in &job.counters {
            let Source::Http(src) = &spec.counter.source else {
                outcomes.push(Err(CollectError::Config("not an http source".into())));
                continue;
            };
            let url = match url_of(job, src.url.as_deref()) {
                Ok(u) => u,
                Err(e) => {
                    outcomes.push(Err(e));
                    continue;
                }
            };
            if !bodies.contains_key(&url) {
                let got = self.get(&url, headers, job.timeout).await;
                bodies.insert(url.clone(), got);
            }
            let outcome = match bodies.get(&url) {
                Some(Ok(body)) => spec.parser.parse(body).map_err(CollectError::from),
                Some(Err(e)) => Err(e.clone()),
                None => Err(CollectError::Config("internal: no answer kept".into())),
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}
