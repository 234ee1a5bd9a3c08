//! `moto_server` (the AWS API emulator, `pip install 'moto[server]'`) on a
//! free loopback port, killed on drop.
//!
//! It starts with IAM authentication on (`INITIAL_NO_AUTH_ACTION_COUNT=3`):
//! the first three calls create a user, an allow-all policy and an access
//! key; from then on moto checks every request's SigV4 signature (it
//! recomputes it with botocore) and rejects a bad one with
//! `SignatureDoesNotMatch`. Calls made through [`Moto::call`] are signed with
//! that key.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scaler::actions::sigv4;

use super::wait::{free_port, wait_until};

/// A running moto server with an IAM access key.
pub struct Moto {
    pub port: u16,
    child: Child,
    dir: tempfile::TempDir,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const HINT: &str = "install it with `python3 -m pip install 'moto[server]'` (or run scripts/test.sh)";

fn spawn(port: u16, log: &std::path::Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    let args = ["-H", "127.0.0.1", "-p", &port.to_string()];
    let mut cmd = Command::new("moto_server");
    cmd.args(args).env("INITIAL_NO_AUTH_ACTION_COUNT", "3").stdin(Stdio::null()).stdout(out).stderr(err);
    match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let out = std::fs::File::create(log).unwrap();
            let err = out.try_clone().unwrap();
            Command::new("python3")
                .args(["-m", "moto.server"])
                .args(args)
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start moto_server or `python3 -m moto.server` ({e}): {HINT}"))
        }
        Err(e) => panic!("cannot start moto_server ({e}): {HINT}"),
    }
}

/// A raw HTTP/1.1 POST of a form body; returns (status, body).
fn post(port: u16, headers: &[(String, String)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = String::from("POST / HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn form(params: &[(&str, &str)]) -> String {
    sigv4::form_body(params)
}

/// The text of the first `<tag>...</tag>`.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(xml[start..start + len].replace("&amp;", "&").replace("&quot;", "\""))
}

impl Moto {
    /// Starts moto and creates an IAM user with an allow-all policy and an
    /// access key (the three calls allowed without authentication).
    pub fn start() -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let port = free_port();
        let mut child = spawn(port, &log);
        wait_until(Duration::from_secs(60), "moto_server to accept connections", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited ({status}): {}\n{HINT}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let mut m = Moto { port, child, dir, access_key_id: String::new(), secret_access_key: String::new() };
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
        m.unsigned("iam", &[("Action", "CreateUser"), ("UserName", "scaler"), ("Version", "2010-05-08")]);
        m.unsigned(
            "iam",
            &[("Action", "PutUserPolicy"), ("UserName", "scaler"), ("PolicyName", "all"), ("PolicyDocument", policy), ("Version", "2010-05-08")],
        );
        let key = m.unsigned("iam", &[("Action", "CreateAccessKey"), ("UserName", "scaler"), ("Version", "2010-05-08")]);
        m.access_key_id = xml_text(&key, "AccessKeyId").unwrap_or_else(|| panic!("no AccessKeyId in {key}"));
        m.secret_access_key = xml_text(&key, "SecretAccessKey").unwrap_or_else(|| panic!("no SecretAccessKey in {key}"));
        m
    }

    /// `http://127.0.0.1:PORT/`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The server's log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// An unauthenticated call; moto routes it by the credential scope.
    fn unsigned(&self, service: &str, params: &[(&str, &str)]) -> String {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let headers = vec![
            ("Host".to_string(), format!("127.0.0.1:{}", self.port)),
            ("Content-Type".to_string(), "application/x-www-form-urlencoded; charset=utf-8".to_string()),
            ("Authorization".to_string(), auth),
        ];
        let (status, body) = post(self.port, &headers, &form(params));
        assert_eq!(status, 200, "moto {service} {params:?}: {body}");
        body
    }

    /// A Query API call signed with the user's key; panics unless 200.
    pub fn call(&self, service: &str, params: &[(&str, &str)]) -> String {
        let body = form(params);
        let host = format!("127.0.0.1:{}", self.port);
        let ct = "application/x-www-form-urlencoded; charset=utf-8";
        let creds = sigv4::Credentials {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone().into(),
            session_token: None,
        };
        let req = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: vec![("content-type".into(), ct.into()), ("host".into(), host.clone())],
            payload: body.as_bytes(),
        };
        let signed = sigv4::sign(&creds, sigv4::Scope { region: "us-east-1", service }, chrono::Utc::now(), &req);
        let mut headers = vec![("Host".to_string(), host), ("Content-Type".to_string(), ct.to_string())];
        headers.extend(signed.headers);
        let (status, text) = post(self.port, &headers, &body);
        assert_eq!(status, 200, "moto {service} {params:?}: {text}");
        text
    }
}
