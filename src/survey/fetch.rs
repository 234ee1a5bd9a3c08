//! The HTTP side of a survey: a fixed pool of workers takes hosts from a
//! queue; each host gets one keep-alive HTTP/1.1 connection (hyper's
//! low-level client on a tokio `TcpStream`) that serves all of its URLs in
//! turn. Every attempt has one deadline covering DNS, connect, request and
//! body; bodies are capped. Connection failures and timeouts are retried
//! after a short backoff; HTTP statuses and bad bodies never are.
//!
//! Also owns the process's open-file limit, which bounds the hosts in flight.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::qos::StatusBody;
use super::{Failure, Options, Outcome, Reason, Target};

/// File descriptors kept back for everything but sockets (files, stdio, runtime).
const FD_RESERVE: u64 = 64;
/// Hosts in flight per CPU core by default.
const HOSTS_PER_CORE: usize = 1024;
/// First retry backoff; doubled on each further retry, capped at [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(200);

/// The open-file limit before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// Soft limit found at start-up.
    pub before: u64,
    /// Soft limit now in force.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

impl FdLimit {
    /// Most hosts that can be in flight with this limit (one socket each).
    pub fn max_in_flight(&self) -> usize {
        usize::try_from(self.soft.saturating_sub(FD_RESERVE).max(1)).unwrap_or(usize::MAX)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (at most 2^20), as far
/// as the kernel allows; returns what is in force.
pub fn raise_fd_limit() -> FdLimit {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return FdLimit { before: 1024, soft: 1024, hard: 1024 };
    };
    let want = hard.min(1 << 20);
    if want > soft && setrlimit(Resource::RLIMIT_NOFILE, want, hard).is_ok() {
        return FdLimit { before: soft, soft: want, hard };
    }
    FdLimit { before: soft, soft, hard }
}

/// The default number of hosts in flight: [`HOSTS_PER_CORE`] per core,
/// bounded by the open-file limit.
pub fn default_concurrency(fd: &FdLimit) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (HOSTS_PER_CORE * cores).min(fd.max_in_flight())
}

/// The delay before retry number `retry` (1-based): 20, 40, 80, ... ms, at most 200 ms.
pub fn backoff(retry: u32) -> Duration {
    BACKOFF_BASE.saturating_mul(1 << retry.saturating_sub(1).min(16)).min(BACKOFF_MAX)
}

/// One host and the URLs asked of it, in inventory order.
struct Host {
    host: String,
    port: u16,
    authority: String,
    requests: Vec<(usize, String)>,
}

/// Settings the workers share.
struct Settings {
    timeout: Duration,
    retries: u32,
    max_body: usize,
}

type Sender = SendRequest<Empty<Bytes>>;
type Attempt = Result<StatusBody, (Option<u16>, Failure)>;

/// Starts querying every target on the current tokio runtime; outcomes
/// arrive on the receiver in completion order, one per target.
pub fn survey(targets: &[Target], opts: &Options) -> mpsc::Receiver<Outcome> {
    let hosts = group_by_host(targets);
    let workers = opts.concurrency.clamp(1, hosts.len().max(1));
    let queue = Arc::new(Mutex::new(hosts.into_iter()));
    let settings = Arc::new(Settings { timeout: opts.timeout, retries: opts.retries, max_body: opts.max_body });
    let (tx, rx) = mpsc::channel(1024);
    for _ in 0..workers {
        let (queue, settings, tx) = (queue.clone(), settings.clone(), tx.clone());
        tokio::spawn(async move {
            loop {
                let next = match queue.lock() {
                    Ok(mut q) => q.next(),
                    Err(_) => None,
                };
                let Some(host) = next else { break };
                if !survey_host(host, &settings, &tx).await {
                    break;
                }
            }
        });
    }
    rx
}

fn group_by_host(targets: &[Target]) -> Vec<Host> {
    let mut hosts: Vec<Host> = Vec::new();
    let mut seen: HashMap<(String, u16), usize> = HashMap::new();
    for t in targets {
        let at = *seen.entry(t.host_key()).or_insert_with(|| {
            hosts.push(Host { host: t.host.clone(), port: t.port, authority: t.authority.clone(), requests: Vec::new() });
            hosts.len() - 1
        });
        if let Some(h) = hosts.get_mut(at) {
            h.requests.push((t.index, t.path.clone()));
        }
    }
    hosts
}

/// Queries every URL of a host over one reused connection. False when the
/// receiver is gone.
async fn survey_host(host: Host, s: &Settings, tx: &mpsc::Sender<Outcome>) -> bool {
    let mut conn: Option<Sender> = None;
    let mut addrs: Option<Vec<SocketAddr>> = None;
    for (index, path) in &host.requests {
        let outcome = query(&host, *index, path, s, &mut conn, &mut addrs).await;
        if tx.send(outcome).await.is_err() {
            return false;
        }
    }
    true
}

async fn query(
    host: &Host,
    index: usize,
    path: &str,
    s: &Settings,
    conn: &mut Option<Sender>,
    addrs: &mut Option<Vec<SocketAddr>>,
) -> Outcome {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let start = Instant::now();
        let result = match tokio::time::timeout(s.timeout, attempt(host, path, s, conn, addrs)).await {
            Ok(r) => r,
            Err(_) => {
                *conn = None;
                Err((None, Failure { reason: Reason::Timeout, detail: format!("no answer within {}", humantime::format_duration(s.timeout)) }))
            }
        };
        let latency = start.elapsed();
        match result {
            Ok(body) => return Outcome { index, status: Some(200), latency, attempts, result: Ok(body) },
            Err((_, f)) if f.reason.is_retryable() && attempts <= s.retries => {
                *conn = None;
                tokio::time::sleep(backoff(attempts)).await;
            }
            Err((status, f)) => return Outcome { index, status, latency, attempts, result: Err(f) },
        }
    }
}

/// One attempt. A kept-alive connection that turns out closed is replaced
/// once, within the same attempt (the server may close idle connections).
async fn attempt(host: &Host, path: &str, s: &Settings, conn: &mut Option<Sender>, addrs: &mut Option<Vec<SocketAddr>>) -> Attempt {
    let mut fresh = false;
    loop {
        let mut sender = match conn.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => {
                fresh = true;
                connect(host, addrs).await.map_err(|f| (None, f))?
            }
        };
        if let Err(e) = sender.ready().await {
            if fresh {
                return Err((None, from_hyper(&e)));
            }
            continue;
        }
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, host.authority.as_str())
            .header(hyper::header::USER_AGENT, concat!("scaler-survey/", env!("CARGO_PKG_VERSION")))
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| (None, Failure { reason: Reason::Protocol, detail: format!("cannot build the request: {e}") }))?;
        match sender.send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = read_body(response, s.max_body).await;
                if body.is_ok() {
                    *conn = Some(sender);
                }
                return body.map_err(|f| (Some(status), f));
            }
            Err(e) if !fresh && (e.is_canceled() || e.is_closed() || e.is_incomplete_message()) => continue,
            Err(e) => return Err((None, from_hyper(&e))),
        }
    }
}

async fn read_body(response: hyper::Response<hyper::body::Incoming>, max: usize) -> Result<StatusBody, Failure> {
    let status = response.status();
    if status != hyper::StatusCode::OK {
        return Err(Failure { reason: Reason::HttpStatus, detail: format!("HTTP {status}") });
    }
    let too_large = || Failure { reason: Reason::TooLarge, detail: format!("body larger than {max} bytes") };
    let declared = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let bytes = match Limited::new(response.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_large()),
        Err(e) => {
            return Err(match e.downcast_ref::<hyper::Error>() {
                Some(h) => from_hyper(h),
                None => Failure { reason: Reason::Connection, detail: format!("reading the body: {e}") },
            })
        }
    };
    StatusBody::parse(&bytes)
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let dns = |detail: String| Failure { reason: Reason::Dns, detail };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| dns(format!("cannot resolve `{host}`: {e}")))?
        .collect();
    if addrs.is_empty() {
        return Err(dns(format!("`{host}` has no address")));
    }
    Ok(addrs)
}

async fn connect(host: &Host, addrs: &mut Option<Vec<SocketAddr>>) -> Result<Sender, Failure> {
    let list = match addrs {
        Some(list) => list.clone(),
        None => {
            let list = resolve(&host.host, host.port).await?;
            *addrs = Some(list.clone());
            list
        }
    };
    let mut last = None;
    let mut stream = None;
    for addr in list {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(stream) = stream else {
        return Err(match last {
            Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Failure { reason: Reason::ConnectRefused, detail: "connection refused".to_string() }
            }
            Some(e) => Failure { reason: Reason::Connection, detail: format!("cannot connect: {e}") },
            None => Failure { reason: Reason::Dns, detail: format!("`{}` has no address", host.host) },
        });
    };
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| from_hyper(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn from_hyper(e: &hyper::Error) -> Failure {
    if e.is_parse() || e.is_parse_status() {
        return Failure { reason: Reason::Protocol, detail: format!("invalid HTTP answer: {e}") };
    }
    if e.is_timeout() {
        return Failure { reason: Reason::Timeout, detail: e.to_string() };
    }
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    Failure { reason: Reason::Connection, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_short_and_bounded() {
        let b: Vec<u128> = (1..=6).map(|r| backoff(r).as_millis()).collect();
        assert_eq!(b, vec![20, 40, 80, 160, 200, 200]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn only_connection_failures_and_timeouts_are_retried() {
        let retried: Vec<&str> = [
            Reason::Timeout,
            Reason::ConnectRefused,
            Reason::Connection,
            Reason::Dns,
            Reason::Protocol,
            Reason::HttpStatus,
            Reason::TooLarge,
            Reason::BadJson,
            Reason::MissingField,
        ]
        .into_iter()
        .filter(|r| r.is_retryable())
        .map(Reason::as_str)
        .collect();
        assert_eq!(retried, ["timeout", "connect_refused", "connection"]);
    }

    #[test]
    fn concurrency_is_bounded_by_descriptors() {
        let tight = FdLimit { before: 100, soft: 100, hard: 100 };
        assert_eq!(default_concurrency(&tight), 36);
        let roomy = FdLimit { before: 1024, soft: 1 << 20, hard: 1 << 20 };
        assert!(default_concurrency(&roomy) >= HOSTS_PER_CORE);
    }
}
