//! A fake fleet for survey tests: one real HTTP/1.1 listener on 127.0.0.1
//! per endpoint, each told how to answer, counting connections and requests
//! server-side. Runs on its own tokio runtime; dropping the fleet stops it.

use std::net::TcpListener as StdListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How an endpoint answers `GET`.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with a status JSON object.
    Ok { app: String, version: String, success: u64, requests: u64, errors: u64 },
    /// 200 with this body (any text).
    Body(String),
    /// This HTTP status with a small JSON body.
    Status(u16),
    /// Waits this long, then answers like `Ok` (the client has given up).
    Slow(Duration),
}

/// A status JSON answer.
pub fn ok(app: &str, version: &str, success: u64, requests: u64) -> Behaviour {
    Behaviour::Ok { app: app.into(), version: version.into(), success, requests, errors: requests - success }
}

/// One endpoint and its server-side counters.
pub struct Endpoint {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    pub connections: Arc<AtomicUsize>,
    pub paths: Arc<Mutex<Vec<String>>>,
}

impl Endpoint {
    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Endpoints on loopback, one listener each.
pub struct Fleet {
    rt: Option<tokio::runtime::Runtime>,
    pub endpoints: Vec<Endpoint>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Fleet {
    /// Binds one listener per behaviour (port 0: the kernel picks) and serves them.
    pub fn start(behaviours: Vec<Behaviour>) -> Fleet {
        // 1,000 listeners plus the other tests' files exceed the usual 1,024.
        scaler::survey::raise_fd_limit();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("fleet runtime");
        let mut endpoints = Vec::new();
        for b in behaviours {
            let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).expect("bind 127.0.0.1:0");
            let port = listener.local_addr().expect("local addr").port();
            let ep = Endpoint {
                port,
                requests: Arc::default(),
                connections: Arc::default(),
                paths: Arc::default(),
            };
            let (requests, connections, paths) = (ep.requests.clone(), ep.connections.clone(), ep.paths.clone());
            let b = Arc::new(b);
            rt.spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(stream, b.clone(), requests.clone(), paths.clone()));
                }
            });
            endpoints.push(ep);
        }
        Fleet { rt: Some(rt), endpoints }
    }

    /// `127.0.0.1:PORT` lines, one per endpoint.
    pub fn inventory(&self) -> String {
        self.endpoints.iter().map(|e| format!("{}\n", e.addr())).collect()
    }
}

/// A port on 127.0.0.1 that nobody listens on (bound, then released).
pub fn refused_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

async fn serve(mut s: TcpStream, b: Arc<Behaviour>, requests: Arc<AtomicUsize>, paths: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut tmp).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&tmp[..n]),
                _ => return,
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        paths.lock().unwrap().push(path);
        requests.fetch_add(1, Ordering::SeqCst);
        let (code, body) = match &*b {
            Behaviour::Ok { .. } => (200, status_json(&b)),
            Behaviour::Body(text) => (200, text.clone()),
            Behaviour::Status(code) => (*code, "{\"error\":\"injected\"}".to_string()),
            Behaviour::Slow(d) => {
                tokio::time::sleep(*d).await;
                (200, "{}".to_string())
            }
        };
        let resp = format!("HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        if s.write_all(resp.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn status_json(b: &Behaviour) -> String {
    match b {
        Behaviour::Ok { app, version, success, requests, errors } => serde_json::json!({
            "Application": app, "Version": version, "Uptime": 1234,
            "Request_Count": requests, "Error_Count": errors, "Success_Count": success,
        })
        .to_string(),
        _ => String::new(),
    }
}
