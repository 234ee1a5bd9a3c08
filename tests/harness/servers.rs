//! Real servers for collection tests, on loopback: a small HTTP server with
//! canned answers (optionally requiring a request header), a TCP listener
//! that accepts and never answers, `redis-server` (optionally with a
//! password), Debian's `snmpd` (any community) and a Jolokia JVM (optionally
//! behind basic auth). Each is stopped when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait::{free_port, wait_until};

/// An HTTP/1.1 server answering `path -> (status, body)`; other paths 404.
/// In a body, `{{header:NAME}}` is replaced with the request's `NAME`
/// header (lower-case name; empty when absent), as a server that echoes
/// what it was sent.
pub struct HttpServer {
    pub port: u16,
    requests: Arc<std::sync::atomic::AtomicUsize>,
}

/// A request header an [`HttpServer`] requires: without it (or with another
/// value) every answer is 401.
pub type RequiredHeader = (&'static str, String);

impl HttpServer {
    pub fn start(routes: Vec<(&'static str, u16, String)>) -> HttpServer {
        HttpServer::requiring(None, routes)
    }

    /// A server that answers 401 unless the request carries `required`.
    pub fn requiring(required: Option<RequiredHeader>, routes: Vec<(&'static str, u16, String)>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let routes = Arc::new(routes);
        let required = Arc::new(required);
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let routes = routes.clone();
                let required = required.clone();
                let counted = counted.clone();
                std::thread::spawn(move || serve(stream, &routes, required.as_ref().as_ref(), &counted));
            }
        });
        HttpServer { port, requests }
    }

    /// How many requests it has answered.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, routes: &[(&'static str, u16, String)], required: Option<&RequiredHeader>, requests: &std::sync::atomic::AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0;
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let header = |name: &str| headers.iter().find(|h| h.0 == name).map(|h| h.1.clone());
        if let Some(v) = header("content-length") {
            content_length = v.parse().unwrap_or(0);
        }
        let mut body = vec![0; content_length];
        let _ = reader.read_exact(&mut body);
        let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
        let (mut status, mut text) = routes.iter().find(|r| r.0 == path).map(|r| (r.1, r.2.clone())).unwrap_or((404, "not found".into()));
        if let Some((name, value)) = required {
            if header(&name.to_ascii_lowercase()).as_ref() != Some(value) {
                (status, text) = (401, "unauthorized".into());
            }
        }
        while let Some(start) = text.find("{{header:") {
            let Some(len) = text[start..].find("}}") else { break };
            let name = text[start + 9..start + len].to_string();
            text.replace_range(start..start + len + 2, &header(&name).unwrap_or_default());
        }
        let mut s = &stream;
        requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}", text.len());
    }
}

/// Accepts TCP connections and never answers (nor closes them).
pub struct HungServer {
    pub port: u16,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl HungServer {
    pub fn start() -> HungServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                keep.lock().unwrap().push(stream);
            }
        });
        HungServer { port, held }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

/// A child process killed on drop.
pub struct Server {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
    /// The password the server requires (redis), sent by [`Server::redis_cmd`].
    password: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn need(path: &str, package: &str) {
    assert!(
        std::path::Path::new(path).exists() || which(path),
        "`{path}` is missing: install it (`apt-get install {package}`, or run scripts/test.sh)"
    );
}

fn which(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

impl Server {
    /// `redis-server --port P --save ''` in a temp dir.
    pub fn redis() -> Server {
        Server::redis_with_password(None)
    }

    /// [`Server::redis`], with `--requirepass` when `password` is given.
    pub fn redis_with_password(password: Option<&str>) -> Server {
        need("redis-server", "redis-server");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].iter().map(|s| s.to_string()).collect();
        if let Some(p) = password {
            args.extend(["--requirepass".to_string(), p.to_string()]);
        }
        let child = Command::new("redis-server")
            .args(&args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        wait_until(Duration::from_secs(10), "redis-server to accept connections", || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Server { port, child, _dir: dir, password: password.map(str::to_string) }
    }

    /// Runs a redis command through a raw connection (RESP), after `AUTH`
    /// when the server has a password.
    pub fn redis_cmd(&self, words: &[&str]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let send = |s: &mut TcpStream, words: &[&str]| {
            let mut cmd = format!("*{}\r\n", words.len());
            for w in words {
                cmd.push_str(&format!("${}\r\n{w}\r\n", w.len()));
            }
            s.write_all(cmd.as_bytes()).unwrap();
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).unwrap();
            assert!(!buf[..n].starts_with(b"-"), "redis refused {words:?}: {}", String::from_utf8_lossy(&buf[..n]));
        };
        if let Some(p) = &self.password {
            send(&mut s, &["AUTH", p]);
        }
        send(&mut s, words);
    }

    /// Debian's snmpd on a UDP port with `rocommunity public 127.0.0.1`.
    pub fn snmpd() -> Server {
        Server::snmpd_with_community("public")
    }

    /// Debian's snmpd answering only `community` (`rocommunity COMMUNITY 127.0.0.1`).
    pub fn snmpd_with_community(community: &str) -> Server {
        need("/usr/sbin/snmpd", "snmpd");
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("snmpd.conf");
        std::fs::write(&conf, format!("rocommunity {community} 127.0.0.1\n")).unwrap();
        let pid: PathBuf = dir.path().join("snmpd.pid");
        let port = free_port();
        let mut child = Command::new("/usr/sbin/snmpd")
            .env("MIBS", "")
            .args(["-f", "-Lo", "-C", "-c"])
            .arg(&conf)
            .arg("-p")
            .arg(&pid)
            .arg(format!("udp:127.0.0.1:{port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start snmpd");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let ready = lines.by_ref().take(50).map_while(Result::ok).any(|l| l.contains("NET-SNMP version"));
        assert!(ready, "snmpd did not start");
        std::thread::spawn(move || for _ in lines {});
        Server { port, child, _dir: dir, password: None }
    }
}

/// Jars of the Jolokia agent servlet hosted in embedded Jetty (Debian:
/// libjolokia-core-java, libjetty9-java, libservlet3.1-java).
const JOLOKIA_JARS: &[&str] = &[
    "jetty9-server", "jetty9-servlet", "jetty9-http", "jetty9-io", "jetty9-util", "jetty9-security", "servlet-api-3.1", "jolokia-core", "json-simple",
];

impl Server {
    /// A real JVM serving Jolokia's `AgentServlet` at `/jolokia` (Jetty),
    /// built from `tests/harness/JolokiaServer.java`.
    pub fn jolokia() -> Server {
        Server::jolokia_with_auth(None)
    }

    /// [`Server::jolokia`], behind basic auth for `(user, password)` when given.
    pub fn jolokia_with_auth(auth: Option<(&str, &str)>) -> Server {
        need("javac", "default-jdk-headless");
        let jars: Vec<String> = JOLOKIA_JARS.iter().map(|j| format!("/usr/share/java/{j}.jar")).collect();
        for jar in &jars {
            need(jar, "libjolokia-core-java libjetty9-java libservlet3.1-java");
        }
        let dir = tempfile::tempdir().unwrap();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/JolokiaServer.java");
        let cp = jars.join(":");
        let status = Command::new("javac").args(["-cp", &cp, "-d"]).arg(dir.path()).arg(&src).status().expect("javac");
        assert!(status.success(), "javac JolokiaServer.java failed");
        let port = free_port();
        let mut args = vec!["-Xmx64m".to_string(), "-cp".into(), format!("{cp}:{}", dir.path().display()), "JolokiaServer".into(), port.to_string()];
        if let Some((user, password)) = auth {
            args.extend([user.to_string(), password.to_string()]);
        }
        let mut child = Command::new("java")
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start java");
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let ready = lines.by_ref().take(50).map_while(Result::ok).any(|l| l.starts_with("ready"));
        assert!(ready, "the Jolokia JVM did not start");
        std::thread::spawn(move || for _ in lines {});
        Server { port, child, _dir: dir, password: None }
    }
}
