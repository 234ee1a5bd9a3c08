//! The push webhook `POST /hooks/git` (issue 11): a signed push to the
//! followed branch makes the daemon fetch its configured remote at once and
//! apply the commit (a local node really runs); every badly signed,
//! oversized or malformed delivery is refused and fetches nothing; a
//! payload naming another repository fetches only the configured one;
//! redeliveries are duplicates. A fetch that fails every other poll changes
//! neither the running revision nor the state, and is counted. Real
//! processes, bare repositories pushed to with the git CLI, the local
//! provider.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Instant;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::daemon::{http, Daemon, TOKEN};
use crate::gitops::{fleet, log, running_nodes, stop_and_destroy, wait_for, wait_log};
use crate::harness::git::git_command;
use crate::harness::{Cli, GitHttp, GitRepo};

const SECRET: &str = "hook-secret-3f9a1c";

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// `POST /hooks/git` with these headers and body; the status and JSON body.
fn hook(port: u16, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut head = format!("POST /hooks/git HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // An oversized body is answered (and the connection closed) before its end.
    let _ = s.write_all(body);
    answer(&mut s)
}

fn answer(s: &mut TcpStream) -> (u16, Value) {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out).to_string();
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn push_payload(after: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({ "ref": "refs/heads/main", "after": after, "repository": { "full_name": "o/fleet" } })).unwrap()
}

/// A signed GitHub delivery.
fn github(port: u16, body: &[u8], delivery: &str) -> (u16, Value) {
    let sig = hmac_hex(SECRET, body);
    hook(port, &[("x-github-event", "push"), ("x-github-delivery", delivery), ("x-hub-signature-256", &sig)], body)
}

fn api_status(port: u16) -> Value {
    let (code, body) = http(port, "GET", "/api/v1/status", "", Some(TOKEN));
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn metric(port: u16, line_start: &str) -> Option<f64> {
    let (_, text) = http(port, "GET", "/metrics", "", Some(TOKEN));
    text.lines().find_map(|l| l.strip_prefix(line_start).and_then(|v| v.trim().parse().ok()))
}

/// A work tree with the fleet at `desired`, and the bare repository it was
/// pushed to (what the daemon follows).
struct Remote {
    work: GitRepo,
    bare: tempfile::TempDir,
}

impl Remote {
    fn new(desired: &str) -> (Remote, String) {
        let work = GitRepo::new();
        work.write("scaler.yaml", "kind: Project\nname: t\n");
        work.write("fleet.yaml", &fleet(desired));
        let commit = work.commit(&format!("desired {desired}"));
        let bare = tempfile::tempdir().unwrap();
        let out = git_command(bare.path()).args(["init", "--quiet", "--bare", "."]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let r = Remote { work, bare };
        r.push();
        (r, commit)
    }

    fn path(&self) -> &Path {
        self.bare.path()
    }

    fn url(&self) -> String {
        format!("file://{}", self.path().display())
    }

    fn push(&self) {
        let bare = self.path().display().to_string();
        self.work.git(&["push", "--quiet", &bare, "main"]);
    }

    fn commit_and_push(&self, desired: &str) -> String {
        self.work.write("fleet.yaml", &fleet(desired));
        let c = self.work.commit(&format!("desired {desired}"));
        self.push();
        c
    }
}

/// A bootstrap directory following `url` with a webhook secret.
fn bootstrap(dir: &Path, url: &str, poll: &str, secret: Option<&str>) {
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    let hook = match secret {
        Some(s) => {
            std::fs::write(dir.join("hook.txt"), s).unwrap();
            ", webhook_secret: { file: hook.txt }"
        }
        None => "",
    };
    std::fs::write(
        dir.join("scaler.yaml"),
        format!("kind: Project\nname: t\ndaemon:\n  token: {{ file: token.txt }}\n  auto_apply: true\n  source: {{ git: \"{url}\", poll: {poll}{hook} }}\n"),
    )
    .unwrap();
}

#[test]
fn a_signed_push_webhook_fetches_the_configured_branch_at_once_and_nothing_else_does() {
    let (remote, c1) = Remote::new("0");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Polling is hourly: only the first fetch and the webhook fetch.
    bootstrap(dir, &remote.url(), "1h", Some(SECRET));
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    wait_log(dir, &format!("revision {} applied", &c1[..12]), 1);
    let fetch = api_status(d.port)["fetch"].clone();
    assert_eq!(fetch["last_fetched"], c1.as_str(), "{fetch}");
    assert_eq!(fetch["woken"], 0, "{fetch}");
    let next = fetch["next_fetch_ms"].as_i64().unwrap();
    assert!(next - fetch["fetched_ms"].as_i64().unwrap() == 3_600_000, "the next poll is an hour after the fetch: {fetch}");

    // A commit lands on the remote; no poll is due for an hour.
    let c2 = remote.commit_and_push("1");
    let body = push_payload(&c2);
    let good = hmac_hex(SECRET, &body);
    let mut tampered = body.clone();
    tampered[3] ^= 0x01;
    let over_other = hmac_hex(SECRET, &push_payload("0000000000000000000000000000000000000000"));
    let wrong = hmac_hex("not-the-secret", &body);
    let sha1_only = "sha1=0123456789abcdef0123456789abcdef01234567".to_string();
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a [u8]);
    let bad: Vec<Case> = vec![
        ("no signature", vec![], &body),
        ("the wrong secret", vec![("x-hub-signature-256", &wrong)], &body),
        ("one tampered byte", vec![("x-hub-signature-256", &good)], &tampered),
        ("a signature over another body", vec![("x-hub-signature-256", &over_other)], &body),
        ("`sha1=` only", vec![("x-hub-signature", &sha1_only)], &body),
        ("a wrong GitLab token", vec![("x-gitlab-token", "hook-secret-3f9a1")], &body),
        ("a generic signature with the wrong secret", vec![("x-signature", &wrong)], &body),
    ];
    for (what, headers, body) in &bad {
        let (code, answer) = hook(d.port, headers, body);
        assert_eq!(code, 401, "{what}: {answer}");
        assert!(answer["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: {answer}");
    }
    // Oversized: refused on its Content-Length, and a chunked body on its size.
    let (code, answer) = hook(d.port, &[("x-hub-signature-256", &good)], &vec![b' '; 1024 * 1024 + 1]);
    assert_eq!(code, 413, "{answer}");
    assert_eq!(chunked_oversize(d.port), 413);
    // Signed garbage: 400, and the daemon still answers.
    for garbage in [&b"{not json"[..], b"\xff\xfe\x00", b"[\"refs/heads/main\", 5]"] {
        let sig = hmac_hex(SECRET, garbage);
        let (code, answer) = hook(d.port, &[("x-signature", &sig)], garbage);
        assert_eq!(code, 400, "{answer}");
    }
    assert_eq!(http(d.port, "GET", "/healthz", "", None).0, 200);
    // Another branch: ignored.
    let prod = serde_json::to_vec(&json!({ "ref": "refs/heads/prod", "after": c2 })).unwrap();
    let (code, answer) = github(d.port, &prod, "d-prod");
    assert_eq!((code, answer["result"].as_str()), (200, Some("ignored")), "{answer}");
    // Nothing was queued: the source was not woken and nothing new was fetched.
    let fetch = api_status(d.port)["fetch"].clone();
    assert_eq!((fetch["woken"].as_u64(), fetch["last_fetched"].as_str()), (Some(0), Some(c1.as_str())), "{fetch}");
    assert_eq!(metric(d.port, "scaler_webhook_deliveries_total{result=\"unauthorized\"}"), Some(7.0));
    // (the two oversized bodies were refused by the listener's own body cap,
    // `daemon.http.body_limit`, before the hook saw them: not counted here)
    assert_eq!(metric(d.port, "scaler_webhook_deliveries_total{result=\"malformed\"}"), Some(3.0));
    assert_eq!(metric(d.port, "scaler_webhook_deliveries_total{result=\"queued\"}"), Some(0.0));
    assert!(!log(dir).contains("woken by a push webhook"), "{}", log(dir));

    // The signed push: fetched at once, run and applied; a node is launched.
    let sent = Instant::now();
    let (code, answer) = github(d.port, &body, "d-1");
    assert_eq!((code, answer["result"].as_str()), (202, Some("queued")), "{answer}");
    wait_log(dir, &format!("running revision {}", &c2[..12]), 1);
    let apply_start = sent.elapsed();
    wait_for(dir, "the node of the pushed commit to run", || running_nodes(&cli, dir) == 1);
    eprintln!("webhook push -> apply start: {} ms; -> node running: {} ms", apply_start.as_millis(), sent.elapsed().as_millis());
    wait_log(dir, &format!("revision {} applied", &c2[..12]), 1);

    // Redeliveries: the same delivery id, then the same commit under a new id.
    let (code, answer) = github(d.port, &body, "d-1");
    assert_eq!((code, answer["result"].as_str()), (200, Some("duplicate")), "{answer}");
    let (code, answer) = github(d.port, &body, "d-2");
    assert_eq!((code, answer["result"].as_str()), (200, Some("duplicate")), "{answer}");
    assert_eq!(api_status(d.port)["fetch"]["woken"], 1);

    // A payload naming another repository and its commit: the daemon
    // fetches its configured remote only, so the other commit never runs.
    let (other, other_commit) = Remote::new("2");
    let evil = serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "after": other_commit,
        "repository": { "clone_url": other.url(), "url": other.url(), "git_http_url": other.url() },
        "project": { "git_http_url": other.url() },
    }))
    .unwrap();
    let fetched_before = api_status(d.port)["fetch"]["fetched_ms"].as_i64().unwrap();
    let sig = hmac_hex(SECRET, &evil);
    let (code, answer) = hook(d.port, &[("x-gitlab-token", SECRET), ("x-gitlab-event-uuid", "g-1")], &evil);
    assert_eq!((code, answer["result"].as_str()), (202, Some("queued")), "a valid hint, even if it lies: {answer}");
    let (code, _) = hook(d.port, &[("x-signature", &sig), ("x-delivery-id", "x-1")], &evil);
    assert_eq!(code, 202);
    wait_for(dir, "the webhook's fetch of the configured remote", || {
        let f = api_status(d.port)["fetch"].clone();
        f["fetched_ms"].as_i64() > Some(fetched_before) && f["woken"].as_u64() >= Some(2)
    });
    let fetch = api_status(d.port)["fetch"].clone();
    assert_eq!(fetch["last_fetched"], c2.as_str(), "{fetch}");
    assert!(!log(dir).contains(&other_commit[..12]), "the other repository's commit was never fetched:\n{}", log(dir));
    assert_eq!(running_nodes(&cli, dir), 1);
    let human = String::from_utf8_lossy(&cli.run(dir, &["status", "."]).stdout).to_string();
    assert!(human.contains(&format!("  last fetched: {} at ", &c2[..12])) && human.contains("  next poll: "), "{human}");
    drop(other);
    stop_and_destroy(d, &cli, dir);
}

/// A chunked body over the cap with no Content-Length: the status.
fn chunked_oversize(port: u16) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"POST /hooks/git HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nx-signature: sha256=00\r\nconnection: close\r\n\r\n").unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..20 {
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).and_then(|()| s.write_all(&chunk)).and_then(|()| s.write_all(b"\r\n")).is_err() {
            break; // answered and closed before the end
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    answer(&mut s).0
}

#[test]
fn a_directory_source_has_no_webhook_and_an_empty_secret_does_not_start() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
    std::fs::write(dir.join("scaler.yaml"), "kind: Project\nname: t\ndaemon:\n  token: { file: token.txt }\n").unwrap();
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    let body = push_payload("abc");
    let (code, answer) = hook(d.port, &[("x-signature", &hmac_hex(SECRET, &body))], &body);
    assert_eq!(code, 404, "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("follows a directory")), "{answer}");
    assert!(api_status(d.port).get("fetch").is_none(), "a directory has no fetches");
    drop(d);

    let (remote, _) = Remote::new("0");
    let other = tempfile::tempdir().unwrap();
    bootstrap(other.path(), &remote.url(), "1h", Some(""));
    let out = cli.run(other.path(), &["daemon", ".", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("`daemon.source.webhook_secret` is empty"), "{err}");
}

#[test]
fn a_fetch_that_fails_every_other_poll_changes_nothing_and_is_counted() {
    let (remote, c1) = Remote::new("1");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    bootstrap(dir, &remote.url(), "100ms", None);
    let cli = Cli::new();
    let d = Daemon::start(&cli, dir, &[]);
    wait_log(dir, &format!("revision {} applied", &c1[..12]), 1);
    wait_for(dir, "the node to run", || running_nodes(&cli, dir) == 1);
    let away = tmp.path().join("away.git");
    let fetch = || api_status(d.port)["fetch"].clone();
    for round in 1..=3u64 {
        // Unreadable: the next poll fails.
        std::fs::rename(remote.path(), &away).unwrap();
        wait_for(dir, "a failed fetch", || fetch()["failed"].as_u64() >= Some(round));
        std::fs::rename(&away, remote.path()).unwrap();
        let before = fetch()["fetched_ms"].as_i64();
        // Readable again: the next poll fetches the same commit.
        wait_for(dir, "a good fetch", || fetch()["fetched_ms"].as_i64() > before);
        assert_eq!(fetch()["last_fetched"], c1.as_str());
        assert_eq!(running_nodes(&cli, dir), 1, "round {round}");
    }
    let failed = fetch()["failed"].as_u64().unwrap();
    assert!(failed >= 3, "{}", fetch());
    assert!(metric(d.port, "scaler_source_fetch_failures_total").is_some_and(|n| n >= 3.0));
    let text = log(dir);
    assert_eq!(text.matches("running revision ").count(), 1, "the revision never changed:\n{text}");
    assert!(text.contains("config fetch failed; still running"), "{text}");
    let src = crate::daemon::status(&cli, dir)["source"].clone();
    assert_eq!(src["running"]["revision"], c1.as_str(), "{src}");
    assert!(src["fetch"]["failed"].as_u64() >= Some(3), "{src}");
    stop_and_destroy(d, &cli, dir);
}

#[test]
fn an_http_remote_is_fetched_with_basic_credentials_and_a_wrong_password_is_refused_unlogged() {
    let (remote, c1) = Remote::new("1");
    let server = GitHttp::serve(remote.path(), "scaler", "right-pass-7d2e");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let config = |password_file: &str| {
        std::fs::write(dir.join("token.txt"), TOKEN).unwrap();
        std::fs::write(
            dir.join("scaler.yaml"),
            format!(
                "kind: Project\nname: t\ndaemon:\n  token: {{ file: token.txt }}\n  auto_apply: true\n  source:\n    git: \"{}\"\n    poll: 100ms\n    credentials: {{ username: scaler, password: {{ file: {password_file} }} }}\n",
                server.url
            ),
        )
        .unwrap();
    };
    std::fs::write(dir.join("wrong.txt"), "wrong-pass-91ab").unwrap();
    std::fs::write(dir.join("right.txt"), "right-pass-7d2e\n").unwrap();
    let cli = Cli::new();

    // The wrong password: every fetch fails, the password is never printed.
    config("wrong.txt");
    let out = cli.run(dir, &["validate", "."]);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("warning"), "{}", String::from_utf8_lossy(&out.stderr));
    let d = Daemon::start(&cli, dir, &[]);
    wait_log(dir, "config fetch failed; still running the start-up config", 2);
    drop(d);
    let text = log(dir);
    assert!(text.contains("the remote refused `daemon.source.credentials`"), "{text}");
    assert!(!text.contains("wrong-pass-91ab") && !text.contains("right-pass-7d2e"), "{text}");
    let status_text = String::from_utf8_lossy(&cli.run(dir, &["status", "--json", "."]).stdout).to_string();
    assert!(!status_text.contains("wrong-pass-91ab"), "{status_text}");

    // The right one: fetched over http, applied, the node runs.
    config("right.txt");
    std::fs::remove_file(dir.join("daemon.log")).unwrap();
    let d = Daemon::start(&cli, dir, &[]);
    wait_log(dir, &format!("revision {} applied", &c1[..12]), 1);
    wait_for(dir, "the node of the commit served over http", || running_nodes(&cli, dir) == 1);
    assert!(!log(dir).contains("right-pass-7d2e"));
    stop_and_destroy(d, &cli, dir);
}

#[test]
fn credentials_are_schema_checked_at_their_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("scaler.yaml"),
        "kind: Project\nname: t\ndaemon:\n  source:\n    git: http://127.0.0.1:1/r.git\n    credentials: { username: scaler, pasword: { env: X } }\n",
    )
    .unwrap();
    let out = Cli::new().run(dir, &["validate", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("scaler.yaml:6:") && err.contains("pasword"), "{err}");
}
