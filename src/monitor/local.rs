//! The `local` source: a command on the scaler host, run with `sh -c` in its
//! own process group (killed as a whole when the collection times out).
//!
//! Exit status: 0 is success. With `parse: { perfdata: LABEL }` the command
//! is a Nagios plugin: 0 OK, 1 WARNING and 2 CRITICAL still carry perfdata
//! (the value is taken, and the state is an extra series labelled
//! `nagios=state` with value 0, 1 or 2); 3 UNKNOWN is a failure. Any other
//! non-zero exit is a failure, never a number.

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::json;

use super::parse::{Parser, Reading};
use super::{CollectError, Collector, Job, Outcome};
use crate::model::Source;

/// Runs local commands.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalCollector;

/// What a finished command left.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutput {
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Kills the process group on drop (a timed-out collection drops the future).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Runs `command` with `sh -c` in a new process group and waits for it.
pub async fn run_command(command: &str) -> Result<CommandOutput, CollectError> {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CollectError::Command { command: command.to_string(), detail: format!("cannot start: {e}") })?;
    let mut guard = GroupGuard(child.id().and_then(|p| i32::try_from(p).ok()));
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| CollectError::Command { command: command.to_string(), detail: format!("cannot wait: {e}") })?;
    guard.0 = None;
    Ok(CommandOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn first_line(s: &str) -> &str {
    s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("")
}

/// Interprets a finished command's output with `parser` (see the module doc
/// for exit codes).
pub fn interpret(command: &str, out: &CommandOutput, parser: &Parser) -> Outcome {
    let nagios = matches!(parser, Parser::Perfdata(_));
    let fail = |detail: String| Err(CollectError::Command { command: command.to_string(), detail });
    match out.code {
        Some(0) => {}
        Some(code @ (1 | 2)) if nagios => {
            let mut readings = parser.parse(&out.stdout)?;
            readings.push(Reading::labelled("nagios", "state", f64::from(code)));
            return Ok(readings);
        }
        Some(3) if nagios => return fail(format!("reported UNKNOWN: {}", first_line(&out.stdout))),
        Some(code) => {
            let why = first_line(&out.stderr);
            return fail(if why.is_empty() { format!("exited with {code}") } else { format!("exited with {code}: {why}") });
        }
        None => return fail("was killed by a signal".into()),
    }
    let mut readings = parser.parse(&out.stdout)?;
    if nagios {
        readings.push(Reading::labelled("nagios", "state", 0.0));
    }
    Ok(readings)
}

#[async_trait]
impl Collector for LocalCollector {
    async fn collect(&self, job: &Job) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(job.counters.len());
        for spec in &job.counters {
            let Source::Local(src) = &spec.counter.source else {
                outcomes.push(Err(CollectError::Config("not a local source".into())));
                continue;
            };
            let outcome = async {
                let command = crate::template::render_command(&src.command, &json!({ "host": job.host }))
                    .map_err(|e| CollectError::Config(format!("command template of `{}`: {e}", spec.name())))?;
                let out = run_command(&command).await?;
                interpret(&command, &out, &spec.parser)
            }
            .await;
            outcomes.push(outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Parse;
    use crate::monitor::parse::ParseError;

    fn out(code: Option<i32>, stdout: &str) -> CommandOutput {
        CommandOutput { code, stdout: stdout.into(), stderr: "oops\n".into() }
    }

    #[test]
    fn exit_codes() {
        let number = Parser::compile(&Parse::Number).unwrap();
        assert_eq!(interpret("c", &out(Some(0), "42.5\n"), &number), Ok(vec![Reading::plain(42.5)]));
        assert_eq!(
            interpret("c", &out(Some(1), "42\n"), &number),
            Err(CollectError::Command { command: "c".into(), detail: "exited with 1: oops".into() })
        );
        assert_eq!(interpret("c", &out(Some(0), "12\n34\n"), &number), Err(CollectError::Parse(ParseError::Ambiguous(2))));
        assert_eq!(interpret("c", &out(None, ""), &number), Err(CollectError::Command { command: "c".into(), detail: "was killed by a signal".into() }));
    }

    #[test]
    fn nagios_states() {
        let perf = Parser::compile(&Parse::Perfdata("load1".into())).unwrap();
        let text = "WARNING - load 5.2|load1=5.2;5;10;0\n";
        assert_eq!(interpret("c", &out(Some(1), text), &perf), Ok(vec![Reading::plain(5.2), Reading::labelled("nagios", "state", 1.0)]));
        assert_eq!(interpret("c", &out(Some(0), text), &perf), Ok(vec![Reading::plain(5.2), Reading::labelled("nagios", "state", 0.0)]));
        assert_eq!(interpret("c", &out(Some(2), text), &perf).unwrap()[1], Reading::labelled("nagios", "state", 2.0));
        assert_eq!(
            interpret("c", &out(Some(3), "UNKNOWN - no data\n"), &perf),
            Err(CollectError::Command { command: "c".into(), detail: "reported UNKNOWN: UNKNOWN - no data".into() })
        );
        assert!(interpret("c", &out(Some(4), text), &perf).is_err());
    }

    #[tokio::test]
    async fn runs_real_commands() {
        let o = run_command("echo 17; echo err >&2; exit 3").await.unwrap();
        assert_eq!(o, CommandOutput { code: Some(3), stdout: "17\n".into(), stderr: "err\n".into() });
    }

    #[tokio::test]
    async fn a_timed_out_command_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let cmd = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let r = tokio::time::timeout(std::time::Duration::from_millis(300), run_command(&cmd)).await;
        assert!(r.is_err());
        let pid = std::fs::read_to_string(&pidfile).unwrap().trim().to_string();
        // the background `sleep` was in the group: it is gone (or a zombie)
        let gone = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !gone() {
            assert!(std::time::Instant::now() < deadline, "sleep {pid} survived the timeout");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
