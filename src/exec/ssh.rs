//! The SSH transport (russh): one connection per host, opened on first use
//! and reused by every step; known_hosts verification; key-file or agent
//! authentication; commands with a timeout; long-running commands whose
//! output is read as it arrives ([`SshTransport::exec_stream`]); SFTP
//! transfers with an atomic replace.
//!
//! Defaults (see `docs/decisions.md`): `curve25519-sha256` key exchange
//! first (the post-quantum hybrid costs ~8x the client CPU per handshake,
//! which dominates fan-out to many hosts), AES-GCM first (AES-NI), and
//! `nodelay` on.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{self, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{cipher, kex, ChannelMsg, Preferred};
use russh_sftp::client::SftpSession;
use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::stream::{stream_line, OutputStream};
use super::transport::{strip_marker, temp_path_for, wrap_command};
use super::error::{known_hosts_name, HostKeyOffer};
use super::{CommandOutput, CommandRequest, ExecError, PutOptions, Transport};
use crate::model::HostKeyPolicy;
use crate::template::shell_quote;

/// How to reach one host.
#[derive(Debug, Clone, PartialEq)]
pub struct SshParams {
    /// Address (name or IP) to connect to.
    pub address: String,
    /// Port.
    pub port: u16,
    /// Remote user.
    pub user: String,
    /// Private key file; `None`: the ssh agent, then `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`.
    pub key: Option<PathBuf>,
    /// known_hosts file.
    pub known_hosts: PathBuf,
    /// Unknown host keys: refuse or record.
    pub host_key_policy: HostKeyPolicy,
    /// Connect (and authenticate) timeout.
    pub connect_timeout: Duration,
}

/// The key exchange algorithms offered, best first.
const KEX: &[kex::Name] = &[
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::MLKEM768X25519_SHA256,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

/// The ciphers offered, best first.
const CIPHERS: &[cipher::Name] = &[cipher::AES_128_GCM, cipher::AES_256_GCM, cipher::CHACHA20_POLY1305, cipher::AES_256_CTR, cipher::AES_128_CTR];

/// Serialises appends to known_hosts files (accept-new on many hosts at once).
static KNOWN_HOSTS_WRITE: StdMutex<()> = StdMutex::new(());

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        nodelay: true,
        preferred: Preferred {
            kex: Cow::Borrowed(KEX),
            cipher: Cow::Borrowed(CIPHERS),
            // No compression: commands and small files over fast links.
            compression: Cow::Borrowed(&[russh::compression::NONE]),
            ..Preferred::DEFAULT
        },
        ..Default::default()
    })
}

/// The client side handler: checks the server's key against known_hosts.
struct Client {
    host: String,
    port: u16,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    problem: Arc<StdMutex<Option<ExecError>>>,
}

impl Client {
    fn refuse(&self, e: ExecError) -> bool {
        if let Ok(mut p) = self.problem.lock() {
            *p = Some(e);
        }
        false
    }

    /// A key known_hosts does not list: refused under `strict`, recorded
    /// under `accept-new`.
    fn unknown(&self, key: &keys::PublicKey) -> bool {
        match self.policy {
            HostKeyPolicy::Strict => {
                self.refuse(ExecError::HostKeyUnknown { host: self.host.clone(), known_hosts: self.known_hosts.clone(), offer: self.offer(key) })
            }
            HostKeyPolicy::AcceptNew => match self.learn(key) {
                Ok(()) => true,
                Err(e) => self.refuse(e),
            },
        }
    }

    fn verify(&self, key: &keys::PublicKey) -> bool {
        match keys::check_known_hosts_path(&self.host, self.port, key, &self.known_hosts) {
            Ok(true) => true,
            Ok(false) => self.unknown(key),
            Err(keys::Error::KeyChanged { line }) => self.refuse(ExecError::HostKeyChanged {
                host: self.host.clone(),
                known_hosts: self.known_hosts.clone(),
                line,
                offer: self.offer(key),
            }),
            // A missing known_hosts file is an empty one.
            Err(keys::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => self.unknown(key),
            Err(e) => self.refuse(ExecError::KnownHosts {
                host: self.host.clone(),
                path: self.known_hosts.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// The offered key, described for an error.
    fn offer(&self, key: &keys::PublicKey) -> Box<HostKeyOffer> {
        Box::new(HostKeyOffer {
            address: self.host.clone(),
            port: self.port,
            key_type: key.algorithm().as_str().to_string(),
            fingerprint: key.fingerprint(keys::HashAlg::Sha256).to_string(),
        })
    }

    /// Appends `[host]:port key` (or `host key` on port 22).
    fn learn(&self, key: &keys::PublicKey) -> Result<(), ExecError> {
        let err = |detail: String| ExecError::KnownHosts { host: self.host.clone(), path: self.known_hosts.clone(), detail };
        let text = key.to_openssh().map_err(|e| err(e.to_string()))?;
        let name = known_hosts_name(&self.host, self.port);
        let _guard = KNOWN_HOSTS_WRITE.lock().map_err(|_| err("lock poisoned".into()))?;
        if let Some(dir) = self.known_hosts.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
        }
        let existing = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
        let sep = if existing.is_empty() || existing.ends_with('\n') { "" } else { "\n" };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.known_hosts)
            .map_err(|e| err(e.to_string()))?;
        use std::io::Write;
        f.write_all(format!("{sep}{name} {text}\n").as_bytes()).map_err(|e| err(e.to_string()))?;
        tracing::info!(host = %self.host, port = self.port, "recorded a new host key (accept-new)");
        Ok(())
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => Ok(self.verify(key)),
            PublicKeyOrCertificate::Certificate(_) => Ok(self.refuse(ExecError::Connect {
                host: self.host.clone(),
                detail: "the server presented a certificate; scaler checks plain host keys only".into(),
            })),
        }
    }
}

/// One host over SSH. Connects on first use; every later command reuses
/// the connection (one per host).
pub struct SshTransport {
    name: String,
    params: SshParams,
    conn: Mutex<Option<Arc<Handle<Client>>>>,
    sftp: Mutex<Option<Arc<SftpSession>>>,
}

impl SshTransport {
    /// A transport for `params`, shown as `name`.
    pub fn new(name: impl Into<String>, params: SshParams) -> SshTransport {
        SshTransport { name: name.into(), params, conn: Mutex::new(None), sftp: Mutex::new(None) }
    }

    fn session_err(&self, e: impl std::fmt::Display) -> ExecError {
        ExecError::Session { host: self.name.clone(), detail: e.to_string() }
    }

    async fn handle(&self) -> Result<Arc<Handle<Client>>, ExecError> {
        let mut guard = self.conn.lock().await;
        if let Some(h) = guard.as_ref() {
            if !h.is_closed() {
                return Ok(h.clone());
            }
        }
        let p = &self.params;
        let h = tokio::time::timeout(p.connect_timeout, self.open())
            .await
            .map_err(|_| ExecError::ConnectTimeout { host: self.name.clone(), after: p.connect_timeout })??;
        let h = Arc::new(h);
        *guard = Some(h.clone());
        Ok(h)
    }

    async fn open(&self) -> Result<Handle<Client>, ExecError> {
        let p = &self.params;
        let problem = Arc::new(StdMutex::new(None));
        let handler = Client {
            host: p.address.clone(),
            port: p.port,
            known_hosts: p.known_hosts.clone(),
            policy: p.host_key_policy,
            problem: problem.clone(),
        };
        tracing::debug!(host = %self.name, address = %p.address, port = p.port, "connecting");
        let mut handle = match client::connect(client_config(), (p.address.as_str(), p.port), handler).await {
            Ok(h) => h,
            Err(e) => {
                if let Some(refusal) = problem.lock().ok().and_then(|mut g| g.take()) {
                    return Err(refusal);
                }
                return Err(ExecError::Connect { host: self.name.clone(), detail: e.to_string() });
            }
        };
        self.authenticate(&mut handle).await?;
        Ok(handle)
    }

    async fn authenticate(&self, handle: &mut Handle<Client>) -> Result<(), ExecError> {
        let p = &self.params;
        let mut tried = Vec::new();
        let keys_to_try: Vec<PathBuf> = match &p.key {
            Some(k) => vec![k.clone()],
            None => {
                if self.try_agent(handle, &mut tried).await {
                    return Ok(());
                }
                let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
                ["id_ed25519", "id_rsa", "id_ecdsa"]
                    .iter()
                    .map(|n| home.join(".ssh").join(n))
                    .filter(|p| p.exists())
                    .collect()
            }
        };
        for path in keys_to_try {
            let key = keys::load_secret_key(&path, None)
                .map_err(|e| ExecError::Key { path: path.clone(), detail: e.to_string() })?;
            let hash = if key.algorithm().is_rsa() {
                handle.best_supported_rsa_hash().await.map_err(|e| self.session_err(e))?.flatten()
            } else {
                None
            };
            let res = handle
                .authenticate_publickey(&p.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(|e| self.session_err(e))?;
            if res.success() {
                return Ok(());
            }
            tried.push(format!("key `{}` refused", path.display()));
        }
        if tried.is_empty() {
            tried.push("no key configured, no ssh agent and no default key in ~/.ssh".into());
        }
        Err(ExecError::Auth { host: self.name.clone(), user: p.user.clone(), detail: tried.join(", ") })
    }

    async fn try_agent(&self, handle: &mut Handle<Client>, tried: &mut Vec<String>) -> bool {
        if std::env::var_os("SSH_AUTH_SOCK").is_none() {
            return false;
        }
        let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await else {
            tried.push("ssh agent unreachable".into());
            return false;
        };
        let Ok(ids) = agent.request_identities().await else {
            return false;
        };
        for id in ids {
            if let keys::agent::AgentIdentity::PublicKey { key, .. } = id {
                let hash = if key.algorithm().is_rsa() {
                    handle.best_supported_rsa_hash().await.ok().flatten().flatten()
                } else {
                    None
                };
                if let Ok(res) = handle.authenticate_publickey_with(&self.params.user, key, hash, &mut agent).await {
                    if res.success() {
                        return true;
                    }
                }
            }
        }
        tried.push("agent keys refused".into());
        false
    }

    async fn sftp(&self) -> Result<Arc<SftpSession>, ExecError> {
        let mut guard = self.sftp.lock().await;
        if let Some(s) = guard.as_ref() {
            return Ok(s.clone());
        }
        let h = self.handle().await?;
        let ch = h.channel_open_session().await.map_err(|e| self.session_err(e))?;
        ch.request_subsystem(true, "sftp").await.map_err(|e| self.session_err(e))?;
        let s = Arc::new(SftpSession::new(ch.into_stream()).await.map_err(|e| self.session_err(format!("sftp: {e}")))?);
        *guard = Some(s.clone());
        Ok(s)
    }

    async fn exec(&self, req: &CommandRequest) -> Result<CommandOutput, ExecError> {
        let line = wrap_command(req)?;
        let h = self.handle().await?;
        let mut ch = h.channel_open_session().await.map_err(|e| self.session_err(e))?;
        ch.exec(true, line.as_bytes()).await.map_err(|e| self.session_err(e))?;
        let mut answered = false;
        if req.answer.is_none() {
            ch.eof().await.map_err(|e| self.session_err(e))?;
        }
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut exit_code = None;
        while let Some(msg) = ch.wait().await {
            match msg {
                ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, ext: 1 } => {
                    stderr.extend_from_slice(&data);
                    if let Some(a) = &req.answer {
                        if !answered && String::from_utf8_lossy(&stderr).contains(&a.marker) {
                            answered = true;
                            let mut bytes = a.secret.expose_secret().as_bytes().to_vec();
                            bytes.push(b'\n');
                            ch.data(&bytes[..]).await.map_err(|e| self.session_err(e))?;
                            ch.eof().await.map_err(|e| self.session_err(e))?;
                        }
                    }
                }
                ChannelMsg::ExitStatus { exit_status } => exit_code = Some(exit_status as i32),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        let mut err = String::from_utf8_lossy(&stderr).into_owned();
        if let Some(a) = &req.answer {
            strip_marker(&mut err, &a.marker);
        }
        Ok(CommandOutput { exit_code, stdout: String::from_utf8_lossy(&stdout).into_owned(), stderr: err })
    }

    /// Starts a long-running command (`req.command` with its `env` and
    /// `cwd`; `timeout` and `answer` do not apply) and returns its output as
    /// it arrives. The command is killed, with its process group, when the
    /// stream is stopped or dropped, or the connection ends (see
    /// [`super::stream`]).
    pub async fn exec_stream(&self, req: &CommandRequest) -> Result<OutputStream, ExecError> {
        let line = stream_line(&wrap_command(req)?);
        let h = self.handle().await?;
        let ch = h.channel_open_session().await.map_err(|e| self.session_err(e))?;
        ch.exec(true, line.as_bytes()).await.map_err(|e| self.session_err(e))?;
        Ok(OutputStream::new(self.name.clone(), ch))
    }

    async fn simple(&self, command: String, path: &str) -> Result<(), ExecError> {
        let out = self.exec(&CommandRequest { command, ..Default::default() }).await?;
        if out.exit_code == Some(0) {
            Ok(())
        } else {
            Err(ExecError::Transfer { host: self.name.clone(), path: path.into(), detail: out.stderr.trim().to_string() })
        }
    }

    fn transfer_err(&self, path: &str, e: impl std::fmt::Display) -> ExecError {
        ExecError::Transfer { host: self.name.clone(), path: path.to_string(), detail: e.to_string() }
    }

    async fn put_inner(&self, sftp: &SftpSession, data: &[u8], tmp: &str, dest: &str, opts: &PutOptions) -> Result<(), ExecError> {
        let mut f = sftp.create(tmp).await.map_err(|e| self.transfer_err(tmp, e))?;
        f.write_all(data).await.map_err(|e| self.transfer_err(tmp, e))?;
        f.shutdown().await.map_err(|e| self.transfer_err(tmp, e))?;
        let mode = match opts.mode {
            Some(m) => Some(m),
            None => sftp.metadata(dest).await.ok().and_then(|m| m.permissions).map(|p| p & 0o7777),
        };
        if let Some(mode) = mode {
            let mut attrs = russh_sftp::protocol::FileAttributes::empty();
            attrs.permissions = Some(mode);
            sftp.set_metadata(tmp, attrs).await.map_err(|e| self.transfer_err(tmp, e))?;
        }
        if let Some(owner) = &opts.owner {
            self.simple(format!("chown -- {} {}", shell_quote(owner), shell_quote(tmp)), dest).await?;
        }
        // rename(2) over the destination: readers see the old or the new file, never half of one.
        self.simple(format!("mv -f -- {} {}", shell_quote(tmp), shell_quote(dest)), dest).await
    }
}

fn is_missing(e: &russh_sftp::client::error::Error) -> bool {
    matches!(e, russh_sftp::client::error::Error::Status(s) if s.status_code == russh_sftp::protocol::StatusCode::NoSuchFile)
}

#[async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.name
    }

    async fn connect(&self) -> Result<(), ExecError> {
        self.handle().await.map(|_| ())
    }

    async fn run(&self, req: &CommandRequest) -> Result<CommandOutput, ExecError> {
        super::transport::run_with_timeout(&self.name, req.timeout, self.exec(req)).await
    }

    async fn put(&self, data: &[u8], dest: &str, opts: &PutOptions) -> Result<(), ExecError> {
        let sftp = self.sftp().await?;
        let tmp = temp_path_for(dest);
        let res = self.put_inner(&sftp, data, &tmp, dest, opts).await;
        if res.is_err() {
            let _ = sftp.remove_file(tmp.as_str()).await;
        }
        res
    }

    async fn get(&self, src: &str) -> Result<Vec<u8>, ExecError> {
        let sftp = self.sftp().await?;
        sftp.read(src).await.map_err(|e| self.transfer_err(src, e))
    }

    async fn read_if_exists(&self, path: &str) -> Result<Option<Vec<u8>>, ExecError> {
        let sftp = self.sftp().await?;
        match sftp.read(path).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(self.transfer_err(path, e)),
        }
    }

    async fn close(&self) {
        if let Some(s) = self.sftp.lock().await.take() {
            let _ = s.close().await;
        }
        if let Some(h) = self.conn.lock().await.take() {
            let _ = h.disconnect(russh::Disconnect::ByApplication, "", "en").await;
        }
    }
}
