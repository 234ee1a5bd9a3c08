//! The local transport: `sh -c` on the scaler host, files on the local
//! file system (the `local` step, and the `local` target).

use std::path::Path;
use std::process::Stdio;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt;

use super::transport::{strip_marker, temp_path_for, wrap_command};
use super::{CommandOutput, CommandRequest, ExecError, PutOptions, Transport};

/// Runs commands with `sh -c` on this machine.
#[derive(Debug, Clone)]
pub struct LocalTransport {
    name: String,
}

impl Default for LocalTransport {
    fn default() -> Self {
        LocalTransport { name: "local".into() }
    }
}

impl LocalTransport {
    /// A local transport shown as `local`.
    pub fn new() -> LocalTransport {
        LocalTransport::default()
    }

    async fn exec(&self, req: &CommandRequest) -> Result<CommandOutput, ExecError> {
        let line = wrap_command(req)?;
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&line)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(ExecError::Spawn)?;
        if let Some(mut stdin) = child.stdin.take() {
            // sudo -S reads the first line; nothing else is read from stdin.
            if let Some(a) = &req.answer {
                let mut bytes = a.secret.expose_secret().as_bytes().to_vec();
                bytes.push(b'\n');
                let _ = stdin.write_all(&bytes).await;
            }
            drop(stdin);
        }
        let out = child.wait_with_output().await.map_err(ExecError::Spawn)?;
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if let Some(a) = &req.answer {
            strip_marker(&mut stderr, &a.marker);
        }
        Ok(CommandOutput { exit_code: out.status.code(), stdout: String::from_utf8_lossy(&out.stdout).into_owned(), stderr })
    }
}

fn io_err(path: &str, source: std::io::Error) -> ExecError {
    ExecError::LocalIo { path: path.into(), source }
}

#[async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.name
    }

    async fn connect(&self) -> Result<(), ExecError> {
        Ok(())
    }

    async fn run(&self, req: &CommandRequest) -> Result<CommandOutput, ExecError> {
        super::transport::run_with_timeout(&self.name, req.timeout, self.exec(req)).await
    }

    async fn put(&self, data: &[u8], dest: &str, opts: &PutOptions) -> Result<(), ExecError> {
        write_atomic(Path::new(dest), data, opts.mode).map_err(|e| io_err(dest, e))?;
        if let Some(owner) = &opts.owner {
            let req = CommandRequest {
                command: format!("chown -- {} {}", crate::template::shell_quote(owner), crate::template::shell_quote(dest)),
                ..Default::default()
            };
            let out = self.exec(&req).await?;
            if out.exit_code != Some(0) {
                return Err(ExecError::Transfer { host: self.name.clone(), path: dest.into(), detail: out.stderr.trim().to_string() });
            }
        }
        Ok(())
    }

    async fn get(&self, src: &str) -> Result<Vec<u8>, ExecError> {
        tokio::fs::read(src).await.map_err(|e| io_err(src, e))
    }

    async fn read_if_exists(&self, path: &str) -> Result<Option<Vec<u8>>, ExecError> {
        match tokio::fs::read(path).await {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(path, e)),
        }
    }
}

/// Writes `data` to `dest` through a temp file in the same directory and a
/// rename, creating parent directories. Keeps the replaced file's mode
/// unless `mode` is given.
pub(crate) fn write_atomic(dest: &Path, data: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = dest.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let tmp = temp_path_for(&dest.to_string_lossy());
    let mode = mode.or_else(|| std::fs::metadata(dest).ok().map(|m| m.permissions().mode() & 0o7777));
    let res = (|| {
        std::fs::write(&tmp, data)?;
        if let Some(m) = mode {
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(m))?;
        }
        std::fs::rename(&tmp, dest)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
