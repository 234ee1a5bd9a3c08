//! Trigger actions through `actions::Executor`, against real servers: a
//! webhook receiver written here (records every request; plain HTTP, or
//! HTTPS with rustls and a CA generated per test by rcgen), `moto_server`
//! for SNS (with signature checking on), a SQLite state store in a temp dir
//! for scale, and local playbooks for run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use scaler::actions::{ActionContext, ActionError, ActionOutput, Executor, ExecutorOptions};
use scaler::store::{Mutation, SqliteStore, Store};
use serde_json::{json, Value};
use sha2::Sha256;
use tempfile::TempDir;

use crate::harness::moto::{xml_text, Moto};
use crate::harness::{free_port, wait_until, HungServer};

const BASE: &str = "\
kind: Project
name: actions
---
kind: NodeTemplate
name: n
provider: local
local:
  command: sleep 1000
---
kind: Group
name: web
template: n
min: 1
max: 10
desired: 3
";

/// A config repo in a temp dir: the base documents plus `extra` files.
struct Repo {
    dir: TempDir,
}

impl Repo {
    fn new(extra: &[(&str, &str)]) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("scaler.yaml"), BASE).unwrap();
        for (name, text) in extra {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        Repo { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn store_path(&self) -> PathBuf {
        self.path().join(".scaler").join("state.db")
    }

    fn options(&self) -> ExecutorOptions {
        let store = scaler::store::open(&scaler::store::Location::Sqlite(self.store_path())).unwrap();
        let mut o = ExecutorOptions::new(store);
        o.http_timeout = Duration::from_secs(10);
        o
    }

    fn executor_with(&self, opts: ExecutorOptions) -> Executor {
        let config = scaler::config::load(self.path()).unwrap_or_else(|d| panic!("config: {d}"));
        Executor::new(Arc::new(config), opts).unwrap()
    }

    fn executor(&self) -> Executor {
        self.executor_with(self.options())
    }
}

fn ctx(index: usize, values: Value) -> ActionContext {
    ActionContext {
        trigger: "web-hot".into(),
        fired_at_ms: 1_700_000_000_000,
        job_key: "web-hot@1700000000000".into(),
        action_index: index,
        revision: Some("rev1".into()),
        values,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn run(ex: &Executor, c: &ActionContext, action: Value) -> Result<ActionOutput, ActionError> {
    rt().block_on(ex.run(c, &action))
}

// ------------------------------------------------------------------ webhook

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The TLS version negotiated on the request's connection (None: plain).
    tls: Option<String>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn body_text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// An HTTP/1.1 receiver that records every request and answers `status`.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    fn start(status: u16) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || serve(stream, status, None, &log));
            }
        });
        Receiver { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve<S: Read + Write>(stream: S, status: u16, tls: Option<String>, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        let mut length = 0;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end().to_string();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        log.lock().unwrap().push(Seen { method, path, headers, body, tls: tls.clone() });
        let text = format!("answer {status}");
        let s = reader.get_mut();
        let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}", text.len());
        let _ = s.flush();
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn webhook_posts_the_rendered_body_signed_with_an_idempotency_key_and_headers() {
    let hook = Receiver::start(200);
    let repo = Repo::new(&[]);
    std::fs::write(repo.path().join("hook.key"), "s3cret-key\n").unwrap();
    std::fs::write(repo.path().join("token"), "tok-123456\n").unwrap();
    let ex = repo.executor();
    let action = json!({"notify": {"webhook": {
        "url": hook.url("/hooks/scaler"),
        "body": "{\"trigger\": \"{{ trigger }}\", \"cpu\": {{ values.cpu }}, \"at\": \"{{ fired_at }}\"}",
        "secret": {"file": "hook.key"},
        "headers": {"X-Team": "ops", "Authorization": {"file": "token"}},
    }}});
    let out = run(&ex, &ctx(1, json!({"cpu": 93})), action).unwrap();

    let seen = hook.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let r = &seen[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hooks/scaler"));
    let body = r.body_text();
    assert_eq!(body, r#"{"trigger": "web-hot", "cpu": 93, "at": "2023-11-14T22:13:20.000Z"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Verified independently: HMAC-SHA256 over the exact bytes received,
    // keyed with the file's content minus its trailing newline.
    assert_eq!(r.header("x-signature"), Some(format!("sha256={}", hmac_hex(b"s3cret-key", &r.body)).as_str()));
    assert_eq!(r.header("idempotency-key"), Some("web-hot@1700000000000#1"));
    assert_eq!(r.header("x-team"), Some("ops"));
    assert_eq!(r.header("authorization"), Some("tok-123456"));

    assert_eq!(out.result["status"], 200);
    assert_eq!(out.result["signed"], true);
    assert!(out.mutations.is_empty());
    let shown = out.result.to_string();
    assert!(!shown.contains("tok-123456") && !shown.contains("s3cret"), "a secret leaked into the result: {shown}");
}

#[test]
fn webhook_default_body_is_the_context_as_json_and_a_text_body_is_plain() {
    let hook = Receiver::start(204);
    let repo = Repo::new(&[]);
    let ex = repo.executor();
    let c = ctx(0, json!({"cpu": 88.5, "window": "60s"}));
    run(&ex, &c, json!({"notify": {"webhook": {"url": hook.url("/a")}}})).unwrap();
    run(&ex, &c, json!({"notify": {"webhook": {"url": hook.url("/b"), "body": "{{ trigger }} is hot"}}})).unwrap();

    let seen = hook.requests();
    assert_eq!(seen.len(), 2);
    let sent: Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(sent, c.template_context());
    assert_eq!(sent["values"]["cpu"], 88.5);
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].header("x-signature"), None, "no secret, no signature");
    assert_eq!(seen[1].body_text(), "web-hot is hot");
    assert_eq!(seen[1].header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(seen[1].header("idempotency-key"), Some("web-hot@1700000000000#0"));
}

#[test]
fn webhook_5xx_is_retryable_and_4xx_is_not() {
    let repo = Repo::new(&[]);
    let ex = repo.executor();
    let failing = Receiver::start(500);
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": failing.url("/x")}}})).unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert_eq!(e.message, format!("webhook `{}` answered 500: answer 500", failing.url("/x")));

    let missing = Receiver::start(404);
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": missing.url("/x")}}})).unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("answered 404"), "{}", e.message);
}

#[test]
fn webhook_that_never_answers_times_out_retryably() {
    let hung = HungServer::start();
    let repo = Repo::new(&[]);
    let mut opts = repo.options();
    opts.http_timeout = Duration::from_millis(300);
    let ex = repo.executor_with(opts);
    let started = Instant::now();
    let url = format!("http://127.0.0.1:{}/x", hung.port);
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": url}}})).unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert!(e.message.contains("timed out"), "{}", e.message);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    wait_until(Duration::from_secs(2), "the hung server to have accepted the connection", || hung.accepted() == 1);
}

#[test]
fn webhook_connection_refused_is_retryable() {
    let repo = Repo::new(&[]);
    let ex = repo.executor();
    let url = format!("http://127.0.0.1:{}/x", free_port());
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": url}}})).unwrap_err();
    assert!(e.retryable, "{e:?}");
}

// ------------------------------------------------------------------ https

/// A private CA made for one test, and a server certificate it signed.
struct TestPki {
    /// The CA certificate, PEM (what a `ca_file` holds).
    ca_pem: String,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key_der: Vec<u8>,
}

impl TestPki {
    /// A CA and a server certificate for `names` (IP addresses or DNS names).
    fn new(names: &[&str]) -> TestPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "scaler test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        let leaf = leaf.signed_by(&key, &ca).unwrap();
        TestPki { ca_pem: ca.pem(), chain: vec![leaf.der().clone(), ca.der().clone()], key_der: key.serialize_der() }
    }
}

/// An HTTPS receiver (rustls, `ring` provider) that records every request
/// and answers `status`; counts the connections whose handshake failed.
struct TlsReceiver {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    failed_handshakes: Arc<Mutex<Vec<String>>>,
}

impl TlsReceiver {
    fn start(pki: &TestPki, status: u16) -> TlsReceiver {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(pki.key_der.clone().into());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), key)
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failed_handshakes = Arc::new(Mutex::new(Vec::new()));
        let (log, failed) = (seen.clone(), failed_handshakes.clone());
        std::thread::spawn(move || {
            for mut tcp in listener.incoming().flatten() {
                let (log, failed, config) = (log.clone(), failed.clone(), config.clone());
                std::thread::spawn(move || {
                    let mut conn = rustls::ServerConnection::new(config).unwrap();
                    while conn.is_handshaking() {
                        if let Err(e) = conn.complete_io(&mut tcp) {
                            failed.lock().unwrap().push(e.to_string());
                            return;
                        }
                    }
                    let version = conn.protocol_version().map(|v| format!("{v:?}"));
                    serve(rustls::StreamOwned::new(conn, tcp), status, version, &log);
                });
            }
        });
        TlsReceiver { port, seen, failed_handshakes }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn failed_handshakes(&self) -> Vec<String> {
        self.failed_handshakes.lock().unwrap().clone()
    }
}

#[test]
fn webhook_over_https_without_ca_file_fails_permanently_on_the_unknown_certificate() {
    let pki = TestPki::new(&["127.0.0.1"]);
    let hook = TlsReceiver::start(&pki, 200);
    let repo = Repo::new(&[]);
    let ex = repo.executor();
    let url = hook.url("/hooks/scaler");
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": url}}})).unwrap_err();
    assert!(!e.retryable, "a certificate problem is not retried: {e:?}");
    assert!(
        e.message.starts_with(&format!("webhook `{url}`: certificate for 127.0.0.1 is not trusted: invalid peer certificate: UnknownIssuer")),
        "{}",
        e.message
    );
    assert!(e.message.contains("; set `ca_file` to trust a private CA"), "{}", e.message);
    assert!(hook.requests().is_empty(), "nothing may be sent to an unverified server");
    wait_until(Duration::from_secs(2), "the server to see the client abort the handshake", || {
        hook.failed_handshakes().len() == 1
    });
}

#[test]
fn webhook_over_https_with_ca_file_arrives_signed_over_tls() {
    let pki = TestPki::new(&["127.0.0.1"]);
    let hook = TlsReceiver::start(&pki, 200);
    let repo = Repo::new(&[("hook.key", "s3cret-key\n")]);
    std::fs::create_dir(repo.path().join("certs")).unwrap();
    std::fs::write(repo.path().join("certs/internal-ca.pem"), &pki.ca_pem).unwrap();
    let ex = repo.executor();
    let action = json!({"notify": {"webhook": {
        "url": hook.url("/hooks/scaler"),
        "body": "{\"trigger\": \"{{ trigger }}\"}",
        "secret": {"file": "hook.key"},
        "ca_file": "certs/internal-ca.pem",
    }}});
    let out = run(&ex, &ctx(1, json!({})), action.clone()).unwrap();
    assert_eq!(out.result["status"], 200);
    // A second action reuses the client built for this CA file.
    run(&ex, &ctx(2, json!({})), action).unwrap();

    let seen = hook.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let r = &seen[0];
    assert!(r.tls.as_deref().is_some_and(|v| v.starts_with("TLSv1_")), "not TLS: {:?}", r.tls);
    assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/hooks/scaler"));
    assert_eq!(r.body_text(), r#"{"trigger": "web-hot"}"#);
    assert_eq!(r.header("x-signature"), Some(format!("sha256={}", hmac_hex(b"s3cret-key", &r.body)).as_str()));
    assert_eq!(r.header("idempotency-key"), Some("web-hot@1700000000000#1"));
    assert_eq!(seen[1].header("idempotency-key"), Some("web-hot@1700000000000#2"));
    assert!(hook.failed_handshakes().is_empty(), "{:?}", hook.failed_handshakes());
}

#[test]
fn webhook_over_https_checks_the_name_even_with_a_trusted_ca() {
    let pki = TestPki::new(&["hooks.internal"]);
    let hook = TlsReceiver::start(&pki, 200);
    let repo = Repo::new(&[]);
    std::fs::write(repo.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let ex = repo.executor();
    let action = json!({"notify": {"webhook": {"url": hook.url("/x"), "ca_file": "ca.pem"}}});
    let e = run(&ex, &ctx(0, json!({})), action).unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("certificate for 127.0.0.1 is not valid: "), "{}", e.message);
    assert!(e.message.contains("not valid for name \"127.0.0.1\""), "{}", e.message);
    assert!(!e.message.contains("ca_file"), "a trusted CA is not the fix here: {}", e.message);
    assert!(hook.requests().is_empty());
}

#[test]
fn a_missing_bad_or_misplaced_ca_file_is_permanent() {
    let repo = Repo::new(&[("not-a-cert.pem", "hello\n")]);
    let ex = repo.executor();
    let https = "https://127.0.0.1:1/x";
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": https, "ca_file": "nope.pem"}}})).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.starts_with("`ca_file` `nope.pem`: "), "{}", e.message);
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": https, "ca_file": "not-a-cert.pem"}}})).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("has no certificate"), "{}", e.message);
    let e = run(&ex, &ctx(0, json!({})), json!({"notify": {"webhook": {"url": "http://127.0.0.1:1/x", "ca_file": "nope.pem"}}}))
        .unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.message, "webhook `http://127.0.0.1:1/x`: `ca_file` is set but `http://127.0.0.1:1/x` is not https");
}

// ------------------------------------------------------------------ sns

struct SnsSetup {
    moto: Moto,
    topic_arn: String,
    queue_url: String,
}

/// A topic with a queue subscribed to it (raw delivery: the queue receives
/// the message text itself).
fn sns_setup() -> SnsSetup {
    let moto = Moto::start();
    let q = moto.call("sqs", &[("Action", "CreateQueue"), ("QueueName", "alerts"), ("Version", "2012-11-05")]);
    let queue_url = xml_text(&q, "QueueUrl").unwrap();
    let a = moto.call(
        "sqs",
        &[("Action", "GetQueueAttributes"), ("QueueUrl", &queue_url), ("AttributeName.1", "QueueArn"), ("Version", "2012-11-05")],
    );
    let queue_arn = xml_text(&a, "Value").unwrap();
    let t = moto.call("sns", &[("Action", "CreateTopic"), ("Name", "ops"), ("Version", "2010-03-31")]);
    let topic_arn = xml_text(&t, "TopicArn").unwrap();
    moto.call(
        "sns",
        &[
            ("Action", "Subscribe"),
            ("TopicArn", &topic_arn),
            ("Protocol", "sqs"),
            ("Endpoint", &queue_arn),
            ("Attributes.entry.1.key", "RawMessageDelivery"),
            ("Attributes.entry.1.value", "true"),
            ("Version", "2010-03-31"),
        ],
    );
    SnsSetup { moto, topic_arn, queue_url }
}

fn sns_executor(repo: &Repo, moto: &Moto, secret: &str) -> Executor {
    let mut opts = repo.options();
    opts.env.insert("AWS_ACCESS_KEY_ID".into(), moto.access_key_id.clone());
    opts.env.insert("AWS_SECRET_ACCESS_KEY".into(), secret.into());
    opts.env.insert("AWS_REGION".into(), "us-east-1".into());
    repo.executor_with(opts)
}

#[test]
fn sns_publish_is_signed_and_reaches_a_subscribed_queue() {
    let s = sns_setup();
    let repo = Repo::new(&[]);
    let ex = sns_executor(&repo, &s.moto, &s.moto.secret_access_key);
    let action = json!({"notify": {"sns": {
        "topic_arn": s.topic_arn,
        "message": "{{ trigger }} fired: cpu {{ values.cpu }} & more",
        "endpoint": s.moto.endpoint(),
    }}});
    let out = run(&ex, &ctx(2, json!({"cpu": 93})), action).unwrap_or_else(|e| panic!("{e:?}\n{}", s.moto.log()));
    let id = out.result["message_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    assert_eq!(out.result["region"], "us-east-1");

    let mut body = None;
    wait_until(Duration::from_secs(10), "the message in the subscribed queue", || {
        let r = s.moto.call("sqs", &[("Action", "ReceiveMessage"), ("QueueUrl", &s.queue_url), ("Version", "2012-11-05")]);
        body = xml_text(&r, "Body");
        body.is_some()
    });
    assert_eq!(body.as_deref(), Some("web-hot fired: cpu 93 & more"));
}

#[test]
fn sns_unknown_topic_is_a_clear_permanent_error() {
    let s = sns_setup();
    let repo = Repo::new(&[]);
    let ex = sns_executor(&repo, &s.moto, &s.moto.secret_access_key);
    let missing = "arn:aws:sns:us-east-1:123456789012:nope";
    let action = json!({"notify": {"sns": {"topic_arn": missing, "message": "x", "endpoint": s.moto.endpoint()}}});
    let e = run(&ex, &ctx(0, json!({})), action).unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.starts_with(&format!("sns: publish to `{missing}` failed (404 NotFound)")), "{}", e.message);
}

#[test]
fn sns_wrong_secret_is_rejected_by_the_servers_signature_check() {
    let s = sns_setup();
    let repo = Repo::new(&[]);
    let ex = sns_executor(&repo, &s.moto, "not-the-secret");
    let action = json!({"notify": {"sns": {"topic_arn": s.topic_arn, "message": "x", "endpoint": s.moto.endpoint()}}});
    let e = run(&ex, &ctx(0, json!({})), action).unwrap_err();
    assert!(!e.retryable, "{e:?}");
    assert!(e.message.contains("SignatureDoesNotMatch"), "{}", e.message);
    assert!(!e.message.contains("not-the-secret"));
}

#[test]
fn sns_without_credentials_says_which_variables_to_set() {
    let repo = Repo::new(&[]);
    let mut opts = repo.options();
    // Empty values count as unset, whatever the test process's environment holds.
    opts.env.insert("AWS_ACCESS_KEY_ID".into(), String::new());
    opts.env.insert("AWS_SECRET_ACCESS_KEY".into(), String::new());
    let ex = repo.executor_with(opts);
    let action = json!({"notify": {"sns": {"topic_arn": "arn:aws:sns:us-east-1:1:t", "message": "x", "endpoint": "http://127.0.0.1:1/"}}});
    let e = run(&ex, &ctx(0, json!({})), action).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("AWS_ACCESS_KEY_ID") && e.message.contains("AWS_SECRET_ACCESS_KEY"), "{}", e.message);
}

// ------------------------------------------------------------------ scale

fn desired(repo: &Repo) -> Option<u32> {
    SqliteStore::open(&repo.store_path()).unwrap().snapshot().unwrap().desired.get("web").copied()
}

fn commit(repo: &Repo, mutations: &[Mutation]) {
    SqliteStore::open(&repo.store_path()).unwrap().commit(mutations).unwrap();
}

/// A runtime count as the scale action writes it: made against the config's
/// `desired: 3` (its base; see `plan::desired`).
fn set_desired(n: u32) -> Mutation {
    Mutation::SetDesired { group: "web".into(), desired: Some(n), base: Some(3) }
}

#[test]
fn scale_by_starts_from_the_configured_desired_on_an_empty_store() {
    let repo = Repo::new(&[]);
    let ex = repo.executor();
    let out = run(&ex, &ctx(0, json!({})), json!({"scale": {"group": "web", "by": 2}})).unwrap();
    assert_eq!(out.mutations, vec![set_desired(5)]);
    assert_eq!(out.result, json!({"group": "web", "from": 3, "to": 5, "wanted": 5, "clamped": false, "changed": true}));
    let snap = SqliteStore::open(&repo.store_path()).unwrap().snapshot().unwrap();
    assert_eq!((snap.meta.serial, snap.desired.len()), (0, 0), "the executor must not write the store");
}

#[test]
fn scale_reads_the_recorded_desired_count_and_clamps() {
    let repo = Repo::new(&[]);
    commit(&repo, &[set_desired(8)]);
    let ex = repo.executor();
    let c = ctx(0, json!({}));

    let out = run(&ex, &c, json!({"scale": {"group": "web", "by": 5}})).unwrap();
    assert_eq!(out.mutations, vec![set_desired(10)]);
    assert_eq!((out.result["from"].clone(), out.result["wanted"].clone(), out.result["clamped"].clone()), (json!(8), json!(13), json!(true)));
    assert_eq!(desired(&repo), Some(8), "nothing is written by the executor");

    let out = run(&ex, &c, json!({"scale": {"group": "web", "to": 0}})).unwrap();
    assert_eq!(out.mutations, vec![set_desired(1)]);
    assert_eq!(out.result["clamped"], true);

    // 8 * -30% = -2.4 -> -3
    let out = run(&ex, &c, json!({"scale": {"group": "web", "percent": -30}})).unwrap();
    assert_eq!(out.mutations, vec![set_desired(5)]);

    // The queue commits the returned mutation; the next action sees it.
    commit(&repo, &out.mutations);
    assert_eq!(desired(&repo), Some(5));
    let out = run(&ex, &c, json!({"scale": {"group": "web", "percent": 10}})).unwrap();
    assert_eq!(out.result["from"], 5);
    assert_eq!(out.mutations, vec![set_desired(6)]);

    // Already at the limit: nothing to change, no mutation.
    commit(&repo, &[set_desired(10)]);
    let out = run(&ex, &c, json!({"scale": {"group": "web", "by": 1}})).unwrap();
    assert!(out.mutations.is_empty());
    assert_eq!(out.result["changed"], false);
    assert_eq!(out.result["clamped"], true);
}

#[test]
fn scale_target_value_reads_the_metric_from_the_trigger_values() {
    let repo = Repo::new(&[]);
    commit(&repo, &[set_desired(4)]);
    let ex = repo.executor();
    let expr = r#"avg(cpu, group="web")"#;
    let action = json!({"scale": {"group": "web", "target_value": {"metric": expr, "target": 60}}});
    // ceil(90 / 60 * 4) = 6
    let out = run(&ex, &ctx(0, json!({"metrics": {expr: 90.0}})), action.clone()).unwrap();
    assert_eq!(out.mutations, vec![set_desired(6)]);
    assert_eq!(out.result["metric"], json!({"expression": expr, "value": 90.0, "target": 60.0}));
    // ceil(300 / 60 * 4) = 20, clamped to 10
    let out = run(&ex, &ctx(0, json!({"metrics": {expr: 300}})), action.clone()).unwrap();
    assert_eq!(out.mutations, vec![set_desired(10)]);
    assert_eq!((out.result["wanted"].clone(), out.result["clamped"].clone()), (json!(20), json!(true)));

    let e = run(&ex, &ctx(0, json!({"metrics": {}})), action.clone()).unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.message, format!("scale: metric `{expr}` is not among the trigger's values (`values.metrics`)"));
    let e = run(&ex, &ctx(0, json!({"metrics": {expr: "high"}})), action).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("is not a number"), "{}", e.message);
}

#[test]
fn scale_of_an_unknown_group_is_permanent() {
    let repo = Repo::new(&[]);
    let e = run(&repo.executor(), &ctx(0, json!({})), json!({"scale": {"group": "db", "by": 1}})).unwrap_err();
    assert!(!e.retryable);
    assert_eq!(e.message, "scale: no group `db` in the config");
}

// ------------------------------------------------------------------ run

const PLAYBOOKS: &str = "\
kind: Playbook
name: note
on: local
params:
  text: { required: true }
  out: { required: true }
steps:
  - run: printf '%s' {{ text }} > {{ out }}
---
kind: Playbook
name: broken
on: local
steps:
  - run: echo about to fail; exit 3
---
kind: Playbook
name: ask
on: local
steps:
  - prompt: { var: answer, text: Sure? }
  - run: echo {{ answer }}
";

#[test]
fn run_executes_a_local_playbook_with_rendered_vars() {
    let repo = Repo::new(&[("playbooks.yaml", PLAYBOOKS)]);
    let out_file = repo.path().join("note.txt");
    let action = json!({"run": {"playbook": "note", "vars": {
        "text": "{{ trigger }} cpu={{ values.cpu }} at {{ fired_at }}; $(touch pwned)",
        "out": out_file.display().to_string(),
    }}});
    let out = run(&repo.executor(), &ctx(0, json!({"cpu": 97})), action).unwrap();
    assert_eq!(
        std::fs::read_to_string(&out_file).unwrap(),
        "web-hot cpu=97 at 2023-11-14T22:13:20.000Z; $(touch pwned)"
    );
    assert!(!repo.path().join("pwned").exists() && !Path::new("pwned").exists(), "a rendered var was run by the shell");
    assert_eq!(out.result["playbook"], "note");
    assert_eq!(out.result["target"], "local");
    assert_eq!(out.result["hosts"][0]["host"], "local");
    assert_eq!(out.result["hosts"][0]["status"], "changed");
}

#[test]
fn run_with_a_failing_command_is_retryable() {
    let repo = Repo::new(&[("playbooks.yaml", PLAYBOOKS)]);
    let e = run(&repo.executor(), &ctx(0, json!({})), json!({"run": {"playbook": "broken"}})).unwrap_err();
    assert!(e.retryable, "{e:?}");
    assert!(e.message.starts_with("run `broken` on `local`: 1 of 1 hosts did not succeed: local failed"), "{}", e.message);
    // Each host's outcome travels with the error, for the job's result.
    let r = e.result.expect("a run failure carries its per-host outcome");
    assert_eq!((r["hosts"][0]["host"].clone(), r["hosts"][0]["status"].clone()), (json!("local"), json!("failed")), "{r}");
}

#[test]
fn run_with_bad_parameters_or_an_unanswerable_prompt_is_permanent() {
    let repo = Repo::new(&[("playbooks.yaml", PLAYBOOKS)]);
    let ex = repo.executor();
    let e = run(&ex, &ctx(0, json!({})), json!({"run": {"playbook": "ask"}})).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("prompt `answer` needs an answer"), "{}", e.message);
    let ok = run(&ex, &ctx(0, json!({})), json!({"run": {"playbook": "ask", "vars": {"answer": "yes"}}})).unwrap();
    assert_eq!(ok.result["status"], "changed");

    let e = run(&ex, &ctx(0, json!({})), json!({"run": {"playbook": "note", "vars": {"text": "x"}}})).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("needs parameter `out`"), "{}", e.message);
    let e = run(&ex, &ctx(0, json!({})), json!({"run": {"playbook": "nope"}})).unwrap_err();
    assert_eq!((e.message.as_str(), e.retryable), ("run: no playbook `nope` in the config", false));
    let e = run(&ex, &ctx(0, json!({})), json!({"run": {"playbook": "broken", "on": "ghosts"}})).unwrap_err();
    assert!(!e.retryable);
    assert!(e.message.contains("no target `ghosts`"), "{}", e.message);
}

// ------------------------------------------------------------------ dispatch

#[test]
fn an_unknown_action_is_permanent_and_names_the_valid_ones() {
    let repo = Repo::new(&[]);
    let e = run(&repo.executor(), &ctx(0, json!({})), json!({"page": {"who": "ops"}})).unwrap_err();
    assert_eq!(e, ActionError { message: "unknown action `page`; actions are scale, run, notify".into(), retryable: false, result: None });
}
