//! The `Transport` seam: run a command and move files on one host.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;

use super::ExecError;
use crate::template::shell_quote;

/// A command to run.
#[derive(Debug, Clone, Default)]
pub struct CommandRequest {
    /// A shell command line, already rendered (and quoted).
    pub command: String,
    /// Environment variables exported before the command.
    pub env: BTreeMap<String, String>,
    /// Working directory (the command fails if it does not exist).
    pub cwd: Option<String>,
    /// Give up (and report a timeout) after this long.
    pub timeout: Option<Duration>,
    /// Answer a prompt printed on stderr (sudo's) with a secret.
    pub answer: Option<PromptAnswer>,
}

/// A secret written to the command's stdin when `marker` shows up on its
/// stderr (sudo's `-p` prompt). The marker is removed from the output.
#[derive(Debug, Clone)]
pub struct PromptAnswer {
    /// The prompt text to wait for.
    pub marker: String,
    /// The answer; never logged.
    pub secret: SecretString,
}

/// What a command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandOutput {
    /// The exit code (`None` when killed by a signal).
    pub exit_code: Option<i32>,
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8), prompt markers removed.
    pub stderr: String,
}

/// How to install an uploaded file.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// File mode (`0o644`); default: the replaced file's mode, or the umask's.
    pub mode: Option<u32>,
    /// Owner (`user` or `user:group`), set with `chown` before the rename.
    pub owner: Option<String>,
}

/// Runs commands and moves files on one host.
#[async_trait]
pub trait Transport: Send + Sync {
    /// The host's name as shown in results.
    fn host(&self) -> &str;
    /// Makes sure the host is reachable (connects when needed).
    async fn connect(&self) -> Result<(), ExecError>;
    /// Runs a command.
    async fn run(&self, req: &CommandRequest) -> Result<CommandOutput, ExecError>;
    /// Writes `data` to `dest` atomically: a temp file in the same
    /// directory, mode and owner set, then renamed over `dest`.
    async fn put(&self, data: &[u8], dest: &str, opts: &PutOptions) -> Result<(), ExecError>;
    /// Reads a file.
    async fn get(&self, src: &str) -> Result<Vec<u8>, ExecError>;
    /// Reads a file, `None` if it does not exist.
    async fn read_if_exists(&self, path: &str) -> Result<Option<Vec<u8>>, ExecError>;
    /// Closes connections (best effort).
    async fn close(&self) {}
}

/// Runs `exec` under the request's timeout, if any (the shared body of
/// every transport's `run`).
pub async fn run_with_timeout<F>(host: &str, timeout: Option<std::time::Duration>, exec: F) -> Result<CommandOutput, ExecError>
where
    F: std::future::Future<Output = Result<CommandOutput, ExecError>>,
{
    match timeout {
        Some(t) => tokio::time::timeout(t, exec)
            .await
            .map_err(|_| ExecError::Timeout { host: host.to_string(), after: t })?,
        None => exec.await,
    }
}

/// The shell line that runs `req.command` with its environment and working
/// directory: `export K='v'; cd -- 'dir' || exit 1; COMMAND`. Names must be
/// shell identifiers; values and the directory are quoted.
pub fn wrap_command(req: &CommandRequest) -> Result<String, ExecError> {
    let mut line = String::new();
    for (k, v) in &req.env {
        let valid = k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ExecError::Invalid(format!("`{k}` is not a valid environment variable name")));
        }
        line.push_str(&format!("export {k}={}; ", shell_quote(v)));
    }
    if let Some(dir) = &req.cwd {
        line.push_str(&format!("cd -- {} || exit 1; ", shell_quote(dir)));
    }
    line.push_str(&req.command);
    Ok(line)
}

/// Removes every occurrence of `marker` from `text`; returns how many there were.
pub(crate) fn strip_marker(text: &mut String, marker: &str) -> usize {
    let n = text.matches(marker).count();
    if n > 0 {
        *text = text.replace(marker, "");
    }
    n
}

/// The temp name next to `dest` used for an atomic replace.
pub(crate) fn temp_path_for(dest: &str) -> String {
    let (dir, base) = match dest.rfind('/') {
        Some(i) => (&dest[..=i], &dest[i + 1..]),
        None => ("", dest),
    };
    format!("{dir}.{base}.scaler-tmp-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_env_and_cwd_quoted() {
        let mut req = CommandRequest { command: "ls".into(), ..Default::default() };
        req.env.insert("A".into(), "x; rm -rf /".into());
        req.cwd = Some("/tmp/a b".into());
        assert_eq!(wrap_command(&req).unwrap(), "export A='x; rm -rf /'; cd -- '/tmp/a b' || exit 1; ls");
        req.env.insert("B;x".into(), "1".into());
        assert!(wrap_command(&req).is_err());
    }

    #[test]
    fn temp_paths_stay_in_the_directory() {
        assert!(temp_path_for("/etc/app.conf").starts_with("/etc/.app.conf.scaler-tmp-"));
        assert!(temp_path_for("app.conf").starts_with(".app.conf.scaler-tmp-"));
    }

    #[test]
    fn markers_are_stripped() {
        let mut s = String::from("[m]oops\n[m]");
        assert_eq!(strip_marker(&mut s, "[m]"), 2);
        assert_eq!(s, "oops\n");
    }
}
