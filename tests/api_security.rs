//! The daemon listener's safety nets through the real `scaler daemon`:
//! DNS rebinding (`Host`), cross-origin changes, body caps, header and
//! request timeouts, the plain-HTTP listen check, secrets in answers, and
//! every route of the OpenAPI document × every kind of token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::daemon::{Daemon, TOKEN};
use crate::harness::{free_port, wait_until, Cli};

const READ_TOKEN: &str = "read-only-token-sec-4242";
/// Secret values configured below; none may appear in any answer.
const SECRETS: [(&str, &str); 4] = [
    ("hook.txt", "webhook-signing-secret-7f3a"),
    ("community.txt", "trap-community-secret-91c2"),
    ("snmp.txt", "target-snmp-community-5d0e"),
    ("header.txt", "http-header-secret-b8e6"),
];

/// Sends `request` as is; the status and body of the answer (status 0 when
/// the server closed without one).
fn raw(port: u16, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// One request with these extra header lines.
fn call(port: u16, method: &str, path: &str, headers: &[String], body: &str) -> (u16, String) {
    let mut req = format!("{method} {path} HTTP/1.1\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        req.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    raw(port, req.as_bytes())
}

fn bearer(token: &str) -> String {
    format!("authorization: Bearer {token}")
}

fn error_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    v["error"].as_str().unwrap_or_else(|| panic!("no `error` in {body}")).to_string()
}

fn write_config(dir: &Path, http: &str) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(dir.join("read.txt"), READ_TOKEN).unwrap();
    for (file, value) in SECRETS {
        std::fs::write(dir.join(file), value).unwrap();
    }
    std::fs::write(
        dir.join("scaler.yaml"),
        format!(
            "kind: Project\nname: t\ndaemon:\n  token: {{ file: token.txt }}\n  read_token: {{ file: read.txt }}\n  \
             traps: {{ listen: 127.0.0.1:{}, community: {{ file: community.txt }} }}\n{http}",
            free_port()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("fleet.yaml"),
        "kind: Target\nname: db\nhosts: [\"127.0.0.1:1\"]\n\
         http: { headers: { Authorization: { file: header.txt } } }\nsnmp: { version: v2c, community: { file: snmp.txt } }\n---\n\
         kind: Counter\nname: queue\nsource: { push: {} }\n---\n\
         kind: Counter\nname: link\nsource: { trap: { oid: 1.3.6.1.6.3.1.1.5.3 } }\n---\n\
         kind: Trigger\nname: deep\nwhen: last(queue) > 10\ncooldown: 1h\nthen:\n  \
         - notify: { webhook: { url: \"http://127.0.0.1:9/never\", secret: { file: hook.txt } } }\n",
    )
    .unwrap();
}

fn start(http: &str) -> (tempfile::TempDir, Cli, Daemon) {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), http);
    let cli = Cli::new();
    let d = Daemon::start(&cli, tmp.path(), &["--no-collect"]);
    (tmp, cli, d)
}

#[test]
fn the_host_header_must_name_the_listener() {
    let (_tmp, _cli, d) = start("  http: { allowed_hosts: [scaler.test] }\n");
    let port = d.port;
    let auth = bearer(TOKEN);
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}"), format!("scaler.test:{port}")] {
        let (code, body) = call(port, "GET", "/api/v1/status", &[format!("host: {host}"), auth.clone()], "");
        assert_eq!(code, 200, "Host {host}: {body}");
    }
    for host in [format!("rebind.example:{port}"), "127.0.0.1".to_string(), format!("127.0.0.1:{}", port + 1), format!("127.0.0.2:{port}")] {
        for path in ["/api/v1/status", "/healthz", "/api/v1/push/queue"] {
            let (code, body) = call(port, "GET", path, &[format!("host: {host}"), auth.clone()], "");
            assert_eq!(code, 421, "Host {host} {path}: {body}");
            assert!(error_of(&body).contains("`Host`"), "{body}");
        }
    }
    let (code, body) = raw(port, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(code, 400, "no Host at all: {body}");
}

#[test]
fn a_change_from_another_origin_is_refused() {
    let (_tmp, _cli, d) = start("");
    let port = d.port;
    let auth = bearer(TOKEN);
    for bad in ["origin: http://evil.example".to_string(), "origin: null".into(), format!("origin: https://127.0.0.1:{port}"), "sec-fetch-site: cross-site".into()] {
        let (code, body) = call(port, "PUT", "/api/v1/push/queue", &[auth.clone(), bad.clone()], "5");
        assert_eq!(code, 403, "{bad}: {body}");
        assert!(error_of(&body).contains("another"), "{body}");
    }
    for ok in [format!("origin: http://127.0.0.1:{port}"), format!("origin: http://localhost:{port}"), "sec-fetch-site: same-origin".into()] {
        let (code, body) = call(port, "PUT", "/api/v1/push/queue", &[auth.clone(), ok.clone()], "5");
        assert_eq!(code, 200, "{ok}: {body}");
    }
    let (code, body) = call(port, "GET", "/api/v1/status", &[auth, "origin: http://evil.example".into(), "sec-fetch-site: cross-site".into()], "");
    assert_eq!(code, 200, "a read is no change: {body}");
}

#[test]
fn bodies_over_the_cap_get_413_on_every_route() {
    let (_tmp, _cli, d) = start("  http: { body_limit: 2048 }\n");
    let port = d.port;
    let auth = bearer(TOKEN);
    let big = "9".repeat(4096);
    for (method, path) in [("PUT", "/api/v1/push/queue"), ("POST", "/api/v1/alerts"), ("GET", "/api/v1/status"), ("POST", "/nowhere")] {
        let (code, body) = call(port, method, path, std::slice::from_ref(&auth), &big);
        assert_eq!(code, 413, "{method} {path}: {body}");
        assert!(error_of(&body).contains("2048 bytes"), "{body}");
    }
    // Chunked, no Content-Length: refused while reading.
    let chunked = format!(
        "PUT /api/v1/push/queue HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{auth}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n1000\r\n{big}\r\n0\r\n\r\n"
    );
    let (code, body) = raw(port, chunked.as_bytes());
    assert_eq!(code, 413, "chunked: {body}");
    let (code, body) = call(port, "PUT", "/api/v1/push/queue", &[auth], "7");
    assert_eq!(code, 200, "a small body passes: {body}");
}

#[test]
fn a_slow_client_is_dropped_by_the_header_and_request_timeouts() {
    let (_tmp, _cli, d) = start("  http: { header_timeout: 1s, request_timeout: 2s }\n");
    let port = d.port;
    // Headers byte by byte, one every 100 ms: the server closes the
    // connection about 1 s after it opened, long before the headers end.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let opened = Instant::now();
    let head = format!("GET /healthz HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-padding: {}\r\n\r\n", "a".repeat(200));
    let mut closed_after = None;
    for b in head.bytes() {
        if s.write_all(&[b]).is_err() {
            closed_after = Some(opened.elapsed());
            break;
        }
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => {
                closed_after = Some(opened.elapsed());
                break;
            }
            Ok(n) => panic!("an answer before the headers ended: {}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => {
                closed_after = Some(opened.elapsed());
                break;
            }
        }
    }
    let t = closed_after.unwrap_or_else(|| panic!("the connection stayed open for {:?}, all headers sent", opened.elapsed()));
    assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(3), "closed after {t:?}, the header timeout is 1s");

    // A body that never arrives: 408 after the request timeout.
    let started = Instant::now();
    let (code, body) = raw(port, format!("PUT /api/v1/push/queue HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n{}\r\ncontent-length: 100\r\n\r\n5", bearer(TOKEN)).as_bytes());
    let took = started.elapsed();
    assert_eq!(code, 408, "{body}");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(5), "answered after {took:?}");
    // The daemon still serves.
    assert_eq!(call(port, "GET", "/healthz", &[], "").0, 200);
}

#[test]
fn a_non_loopback_listen_address_needs_insecure_listen() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), "");
    let cli = Cli::new();
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let out = cli.run(tmp.path(), &["daemon", ".", "--listen", &listen, "--no-collect"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`--insecure-listen`") && err.contains(&listen) && err.contains("TLS"), "{err}");

    let mut child = cli
        .command(tmp.path(), &["daemon", ".", "--listen", &listen, "--no-collect", "--insecure-listen"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(20), "the daemon to listen", || TcpStream::connect(("127.0.0.1", port)).is_ok());
    let (code, body) = call(port, "GET", "/api/v1/status", &[bearer(TOKEN)], "");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(code, 200, "an IP literal names a wildcard listener: {body}");
}

/// Every operation of the served OpenAPI document: (method, path template, auth).
fn operations(port: u16) -> Vec<(String, String, Value)> {
    let (code, body) = call(port, "GET", "/api/v1/openapi.json", &[], "");
    assert_eq!(code, 200, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((method.to_uppercase(), path.clone(), op.clone()));
        }
    }
    ops
}

/// A concrete path for a template: `{x}` becomes an existing name when the
/// test config has one, else `1`.
fn concrete(path: &str) -> String {
    path.replace("/targets/{name}", "/targets/db")
        .replace("/counters/{name}", "/counters/queue")
        .replace("/push/{name}", "/push/queue")
        .replace("/triggers/{name}", "/triggers/deep")
        .split('/')
        .map(|s| if s.starts_with('{') { "1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn every_route_of_the_document_checks_every_kind_of_token() {
    let (_tmp, _cli, d) = start("");
    let port = d.port;
    let ops = operations(port);
    assert!(ops.len() >= 19, "{} operations", ops.len());
    for (method, template, op) in &ops {
        let path = concrete(template);
        let query = if template == "/api/v1/series" { "?counter=queue" } else { "" };
        let url = format!("{path}{query}");
        let body = if method == "GET" { "" } else { "5" };
        let bearer_auth = op["security"] == serde_json::json!([{"bearer": []}]);
        let send = |auth: Option<&str>| call(port, method, &url, &auth.map(bearer).into_iter().collect::<Vec<_>>(), body);
        if !bearer_auth {
            // Open or signed: never a bearer 401, and no token is needed.
            let (code, b) = send(None);
            assert_ne!(code, 401, "{method} {url} is not bearer-authorised: {b}");
            continue;
        }
        for auth in [None, Some("not-the-token")] {
            let (code, b) = send(auth);
            assert_eq!(code, 401, "{method} {url} with {auth:?}: {b}");
        }
        let (code, b) = send(Some(READ_TOKEN));
        if method == "GET" {
            assert!(code == 200 || ((400..500).contains(&code) && code != 401 && code != 403), "{method} {url} read token: {code} {b}");
        } else {
            assert_eq!(code, 403, "{method} {url} read token: {b}");
        }
        let (code, b) = send(Some(TOKEN));
        assert!((200..500).contains(&code) && code != 401 && code != 403, "{method} {url} token: {code} {b}");
    }
}

#[test]
fn every_route_in_the_source_is_in_the_document() {
    let tmp = tempfile::tempdir().unwrap();
    write_config(tmp.path(), "");
    let cli = Cli::new();
    let d = Daemon::start(&cli, tmp.path(), &["--no-collect"]);
    let documented: Vec<String> = operations(d.port).into_iter().map(|(_, p, _)| p).collect();
    let route = regex::Regex::new(r#"\.route\(\s*"([^"]+)""#).unwrap();
    let mut found = 0;
    let mut stack = vec![std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for c in route.captures_iter(&text) {
                    let path = &c[1];
                    if path.contains("{*") {
                        continue; // a catch-all that answers 404
                    }
                    found += 1;
                    assert!(documented.iter().any(|d| d == path), "{} routes `{path}`, which the OpenAPI document lacks (add it to src/api/openapi.rs)", p.display());
                }
            }
        }
    }
    assert!(found >= 19, "only {found} routes found in src/");
}

#[test]
fn no_answer_shows_a_configured_secret() {
    let (_tmp, _cli, d) = start("");
    let port = d.port;
    let (code, body) = call(port, "PUT", "/api/v1/push/queue", &[bearer(TOKEN)], "50");
    assert_eq!(code, 200, "{body}");
    wait_until(Duration::from_secs(15), "the trigger to fire", || call(port, "GET", "/api/v1/triggers/deep", &[bearer(TOKEN)], "").1.contains("cooldown"));
    let mut seen = 0;
    for (method, template, _) in operations(port) {
        if method != "GET" {
            continue;
        }
        let mut paths = vec![concrete(&template)];
        if template == "/api/v1/series" {
            paths = vec!["/api/v1/series?counter=queue".into()];
        }
        if template == "/api/v1/jobs/{key}" {
            paths = vec!["/api/v1/jobs/1".into()];
        }
        for path in paths {
            for token in [TOKEN, READ_TOKEN] {
                let (code, body) = call(port, "GET", &path, &[bearer(token)], "");
                assert!(code != 0 && !body.is_empty(), "GET {path}: {code}");
                seen += 1;
                for (_, secret) in SECRETS.iter().chain([("", TOKEN), ("", READ_TOKEN)].iter()) {
                    assert!(!body.contains(secret), "GET {path} shows a secret: {body}");
                }
            }
        }
    }
    assert!(seen >= 30, "{seen} answers read");
}
