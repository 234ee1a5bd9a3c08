//! The listener's safety nets, as one axum layer ([`protect`]) over every
//! route (the API, the receivers, webhooks) and the checks the server
//! makes before it starts ([`check_listen`]):
//!
//! ```text
//! request -> Host names the listen address?          else 421 (DNS rebinding)
//!         -> a change (not GET/HEAD/OPTIONS) from another origin?
//!            (`Origin` not the listen origin, `Sec-Fetch-Site: cross-site`)  403
//!         -> body over the cap (`Content-Length`, or while reading)       413
//!         -> body read within the request timeout                        else 408
//!         -> the route answers within the request timeout                else 503
//! ```
//!
//! A slow client that sends its headers byte by byte is dropped by the
//! server's header read timeout (see [`super::serve`]), before any of this.
//!
//! Owns: [`HttpOptions`], [`HostPolicy`], [`protect`], [`check_listen`].
//! Must not depend on: the store, the config loader.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use http_body_util::{BodyExt, Limited};

use super::ApiError;

/// The largest request body any route takes unless configured (1 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// How long a client may take to send its request headers.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request may take, its body included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the daemon's HTTP listener guards itself (`daemon.http` and
/// `--insecure-listen`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// More names the `Host` header may give (`name` or `name:port`), beside
    /// the listen address (and `localhost` for a loopback one).
    pub allowed_hosts: Vec<String>,
    /// The largest request body (bytes).
    pub body_limit: usize,
    /// Time allowed to send the request headers.
    pub header_timeout: Duration,
    /// Time allowed for a whole request (body and answer).
    pub request_timeout: Duration,
    /// Listen on a non-loopback address in plain HTTP anyway.
    pub insecure_listen: bool,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            allowed_hosts: Vec::new(),
            body_limit: DEFAULT_BODY_LIMIT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            insecure_listen: false,
        }
    }
}

/// Refuses a listen address the token would cross the network from in
/// clear: this build serves plain HTTP only, so anything but a loopback
/// address needs `--insecure-listen` (e.g. behind a TLS proxy).
pub fn check_listen(bound: SocketAddr, listen: &str, insecure: bool) -> Result<(), String> {
    if bound.ip().is_loopback() || insecure {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on `{listen}` ({bound}): it is not a loopback address and this build serves plain HTTP (no TLS), \
         so bearer tokens would cross the network in clear; listen on 127.0.0.1 and put a TLS proxy in front, \
         or pass `--insecure-listen` to do it anyway"
    ))
}

/// Which `Host` (and `Origin`) values name this listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPolicy {
    /// `host:port` authorities accepted, lower case (IPv6 in brackets).
    authorities: Vec<String>,
    /// The listener's port.
    port: u16,
    /// Listening on every address (`0.0.0.0`, `::`): any IP literal with
    /// the port is this listener (a DNS rebinding needs a name).
    any_ip: bool,
}

fn authority(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{}:{port}", host.to_ascii_lowercase()),
    }
}

/// `host[:port]` split, a missing port being `default_port`; `None` when
/// it does not parse.
fn split_authority(text: &str, default_port: u16) -> Option<(String, u16)> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((ip.to_string(), port));
    }
    match text.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok()?)),
        None => Some((text.to_string(), default_port)),
    }
}

impl HostPolicy {
    /// The names of a listener bound at `bound`, plus `allowed` (`name` or
    /// `name:port`; a bare name takes the listener's port).
    pub fn new(bound: SocketAddr, allowed: &[String]) -> HostPolicy {
        let port = bound.port();
        let mut authorities = vec![authority(&bound.ip().to_string(), port)];
        if bound.ip().is_loopback() {
            for h in ["localhost", "127.0.0.1", "::1"] {
                authorities.push(authority(h, port));
            }
        }
        for a in allowed {
            if let Some((h, p)) = split_authority(a, port) {
                authorities.push(authority(&h, p));
            }
        }
        authorities.dedup();
        HostPolicy { authorities, port, any_ip: bound.ip().is_unspecified() }
    }

    /// Whether an authority (`Host` header value, or an origin's) names
    /// this listener; a missing port is `default_port`.
    fn names(&self, text: &str, default_port: u16) -> bool {
        let Some((host, port)) = split_authority(text, default_port) else { return false };
        if self.any_ip && port == self.port && host.parse::<IpAddr>().is_ok() {
            return true;
        }
        self.authorities.contains(&authority(&host, port))
    }

    /// Whether a `Host` header value names this listener.
    pub fn host_ok(&self, host: &str) -> bool {
        self.names(host, 80)
    }

    /// Whether an `Origin` is this listener's (`http://` one of its names).
    pub fn origin_ok(&self, origin: &str) -> bool {
        match origin.strip_prefix("http://") {
            Some(rest) if !rest.contains('/') => self.names(rest, 80),
            _ => false,
        }
    }
}

#[derive(Clone)]
struct Guard {
    policy: Arc<HostPolicy>,
    body_limit: usize,
    request_timeout: Duration,
}

/// Wraps every route of `app` in the checks of this module, for a listener
/// bound at `bound`.
pub fn protect(app: Router, bound: SocketAddr, opts: &HttpOptions) -> Router {
    let guard = Guard {
        policy: Arc::new(HostPolicy::new(bound, &opts.allowed_hosts)),
        body_limit: opts.body_limit,
        request_timeout: opts.request_timeout,
    };
    app.layer(middleware::from_fn_with_state(guard, check))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"))
}

/// The push webhook: a git host calls it through a proxy with the
/// daemon's public name in `Host`, and its signature, not a browser's
/// token, authenticates it, so the DNS-rebinding check does not apply.
const SIGNED_ROUTE: &str = "/hooks/git";

/// Why a request is refused before its route sees it, if it is.
fn refusal(policy: &HostPolicy, method: &Method, path: &str, headers: &HeaderMap, body_limit: usize) -> Option<ApiError> {
    match header_text(headers, header::HOST) {
        Some(_) if path == SIGNED_ROUTE => {}
        Some(h) if policy.host_ok(h) => {}
        Some(h) => {
            return Some(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!("the `Host` header ({h:?}) does not name this listener; use its address, or add the name to `daemon.http.allowed_hosts`"),
            ))
        }
        None => return Some(ApiError::bad_request("a `Host` header is required")),
    }
    let change = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if change {
        if let Some(origin) = header_text(headers, header::ORIGIN) {
            if !policy.origin_ok(origin) {
                return Some(ApiError::new(StatusCode::FORBIDDEN, format!("a change from another origin ({origin:?}) is refused")));
            }
        }
        if header_text(headers, header::HeaderName::from_static("sec-fetch-site")).is_some_and(|s| s.eq_ignore_ascii_case("cross-site")) {
            return Some(ApiError::new(StatusCode::FORBIDDEN, "a change from another site (`Sec-Fetch-Site: cross-site`) is refused"));
        }
    }
    let declared = header_text(headers, header::CONTENT_LENGTH).and_then(|l| l.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > body_limit as u64) {
        return Some(too_large(body_limit));
    }
    None
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than the limit of {limit} bytes (`daemon.http.body_limit`)"))
}

async fn check(State(g): State<Guard>, req: Request, next: Next) -> Response {
    if let Some(e) = refusal(&g.policy, req.method(), req.uri().path(), req.headers(), g.body_limit) {
        return e.into_response();
    }
    let deadline = tokio::time::Instant::now() + g.request_timeout;
    let (parts, body) = req.into_parts();
    // The body is read here, whole and capped, so every route gets the
    // same limit and the same JSON 413, whatever extractor it uses.
    let bytes = match tokio::time::timeout_at(deadline, Limited::new(body, g.body_limit).collect()).await {
        Err(_) => return ApiError::new(StatusCode::REQUEST_TIMEOUT, format!("the request body did not arrive within {}", humantime::format_duration(g.request_timeout))).into_response(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => return too_large(g.body_limit).into_response(),
        Ok(Err(e)) => return ApiError::bad_request(format!("cannot read the request body: {e}")).into_response(),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    match tokio::time::timeout_at(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("the request took longer than {}", humantime::format_duration(g.request_timeout))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> HostPolicy {
        HostPolicy::new("127.0.0.1:7878".parse().unwrap(), &[])
    }

    #[test]
    fn a_loopback_listener_is_named_by_its_address_and_localhost() {
        let p = loopback();
        for ok in ["127.0.0.1:7878", "localhost:7878", "LOCALHOST:7878", "[::1]:7878"] {
            assert!(p.host_ok(ok), "{ok}");
        }
        for bad in ["evil.example:7878", "127.0.0.1:7879", "127.0.0.1", "localhost", "127.0.0.1:x", "", "[::1", "localhost.:7878"] {
            assert!(!p.host_ok(bad), "{bad}");
        }
        assert!(p.origin_ok("http://localhost:7878"));
        for bad in ["https://localhost:7878", "http://evil.example:7878", "null", "http://localhost:7878/x"] {
            assert!(!p.origin_ok(bad), "{bad}");
        }
    }

    #[test]
    fn allowed_hosts_add_names_and_a_wildcard_listen_takes_ip_literals() {
        let p = HostPolicy::new("0.0.0.0:80".parse().unwrap(), &["scaler.internal".into(), "proxy:8443".into()]);
        for ok in ["scaler.internal", "scaler.internal:80", "proxy:8443", "10.1.2.3", "10.1.2.3:80", "[fe80::1]:80"] {
            assert!(p.host_ok(ok), "{ok}");
        }
        for bad in ["proxy", "other.internal", "10.1.2.3:81", "localhost"] {
            assert!(!p.host_ok(bad), "{bad}");
        }
        let p = HostPolicy::new("10.0.0.5:7878".parse().unwrap(), &[]);
        assert!(p.host_ok("10.0.0.5:7878"));
        assert!(!p.host_ok("10.0.0.6:7878"), "a specific address names itself only");
        assert!(!p.host_ok("localhost:7878"), "not a loopback listener");
    }

    #[test]
    fn cross_origin_changes_and_oversized_bodies_are_refused() {
        let p = loopback();
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        let status = |m: Method, pairs: &[(&'static str, &str)]| refusal(&p, &m, "/api/v1/status", &headers(pairs), 100).map(|e| e.status());
        assert_eq!(status(Method::GET, &[("host", "127.0.0.1:7878")]), None);
        assert_eq!(status(Method::GET, &[("host", "rebind.example:7878")]), Some(StatusCode::MISDIRECTED_REQUEST));
        assert_eq!(status(Method::GET, &[]), Some(StatusCode::BAD_REQUEST));
        // the signed push webhook comes through a proxy under the public name
        let hook = refusal(&p, &Method::POST, SIGNED_ROUTE, &headers(&[("host", "scaler.example.com")]), 100);
        assert_eq!(hook.map(|e| e.status()), None);
        assert_eq!(status(Method::POST, &[("host", "127.0.0.1:7878"), ("origin", "http://evil.example")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(Method::GET, &[("host", "127.0.0.1:7878"), ("origin", "http://evil.example")]), None, "a read is not a change");
        assert_eq!(status(Method::PUT, &[("host", "127.0.0.1:7878"), ("origin", "http://127.0.0.1:7878")]), None);
        assert_eq!(status(Method::DELETE, &[("host", "127.0.0.1:7878"), ("sec-fetch-site", "cross-site")]), Some(StatusCode::FORBIDDEN));
        assert_eq!(status(Method::POST, &[("host", "127.0.0.1:7878"), ("sec-fetch-site", "same-origin")]), None);
        assert_eq!(status(Method::POST, &[("host", "127.0.0.1:7878"), ("content-length", "101")]), Some(StatusCode::PAYLOAD_TOO_LARGE));
        assert_eq!(status(Method::POST, &[("host", "127.0.0.1:7878"), ("content-length", "100")]), None);
    }

    #[test]
    fn a_public_plain_listener_needs_the_flag() {
        let public: SocketAddr = "0.0.0.0:7878".parse().unwrap();
        let e = check_listen(public, "0.0.0.0:7878", false).unwrap_err();
        assert!(e.contains("`--insecure-listen`") && e.contains("`0.0.0.0:7878`"), "{e}");
        assert!(check_listen(public, "0.0.0.0:7878", true).is_ok());
        assert!(check_listen("127.0.0.1:1".parse().unwrap(), "localhost:1", false).is_ok());
        assert!(check_listen("[::1]:1".parse().unwrap(), "[::1]:1", false).is_ok());
    }
}
