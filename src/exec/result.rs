//! Results of a run: per step, per host, overall; and the exit code.

use serde::Serialize;

/// The status of a step, a host or a whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not run (a false `when`, or the run stopped before this host).
    Skipped,
    /// Ran, changed nothing.
    Ok,
    /// Ran and changed something.
    Changed,
    /// Ran and failed (or aborted).
    Failed,
    /// The host could not be reached.
    Unreachable,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Skipped => "skipped",
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Failed => "failed",
            Status::Unreachable => "unreachable",
        }
    }

    /// The word of the task vocabulary the API and `--json` also give
    /// (`state`): `success` (ok), `changed`, `failure` (failed or
    /// unreachable), `skipped`.
    pub fn state(self) -> &'static str {
        match self {
            Status::Skipped => "skipped",
            Status::Ok => "success",
            Status::Changed => "changed",
            Status::Failed | Status::Unreachable => "failure",
        }
    }
}

/// One step on one host.
#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    /// `<host>#<index>`: unique in the run.
    pub id: String,
    /// [`Status::state`] of `status`.
    pub state: &'static str,
    /// 1-based position in the playbook.
    pub index: usize,
    /// The step's name (or a summary of it).
    pub name: String,
    /// `run`, `sudo`, `local`, `put`, `get`, `prompt`, `abort`.
    pub kind: &'static str,
    /// Outcome.
    pub status: Status,
    /// A non-zero exit that `warn: true` turned into a warning.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub warning: bool,
    /// Exit code of the command, if one ran.
    pub exit_code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Wall time in milliseconds (all attempts).
    pub duration_ms: u64,
    /// How many times it ran (1 + retries used).
    pub attempts: u32,
    /// The rendered command, upload or download (secrets never appear).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Check mode: the diff of an upload against the remote file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why it failed, was skipped or aborted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StepResult {
    /// The result with every known secret masked (see [`crate::redact`]).
    pub fn scrubbed(mut self) -> StepResult {
        if crate::redact::any() {
            let scrub = crate::redact::scrub;
            self.stdout = scrub(&self.stdout);
            self.stderr = scrub(&self.stderr);
            for field in [&mut self.message, &mut self.action, &mut self.diff].into_iter().flatten() {
                *field = scrub(field);
            }
        }
        self
    }
}

/// One host.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    /// The host's name (unique in the run).
    pub id: String,
    /// [`Status::state`] of `status`.
    pub state: &'static str,
    /// The host's name.
    pub host: String,
    /// The address connected to (absent for `local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The SSH port connected to (absent for `local`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Its rolling batch (1-based).
    pub batch: usize,
    /// Worst step outcome (`unreachable` when it could not be reached).
    pub status: Status,
    /// Exit code of the last command that ran.
    pub exit_code: Option<i32>,
    /// Why it failed, was unreachable or skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Every step, in order; those after a failure, or on a host the run
    /// did not reach, are `skipped` with a `not run: ...` message.
    pub steps: Vec<StepResult>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// The playbook (`exec` for ad-hoc commands).
    pub playbook: String,
    /// The target selector.
    pub target: String,
    /// Check mode: nothing was changed.
    pub check: bool,
    /// Overall: `unreachable` if any host was, else `failed` if any host
    /// failed, else `changed` if any changed, else `ok`.
    pub status: Status,
    /// Why the run stopped early (max_fail_percentage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// Per host, in target order.
    pub hosts: Vec<HostResult>,
}

impl RunResult {
    /// Gives every host and step its id and state (from its status).
    pub fn label(hosts: &mut [HostResult]) {
        for h in hosts {
            h.id = h.host.clone();
            h.state = h.status.state();
            for s in &mut h.steps {
                s.id = format!("{}#{}", h.host, s.index);
                s.state = s.status.state();
            }
        }
    }

    /// The overall status of `hosts`.
    pub fn overall(hosts: &[HostResult]) -> Status {
        let any = |s: Status| hosts.iter().any(|h| h.status == s);
        if any(Status::Unreachable) {
            Status::Unreachable
        } else if any(Status::Failed) {
            Status::Failed
        } else if any(Status::Changed) {
            Status::Changed
        } else if any(Status::Ok) || hosts.is_empty() {
            Status::Ok
        } else {
            Status::Skipped
        }
    }
}

/// The exit code of a run: 0 every host ok (or changed, or skipped); 3 some
/// host unreachable; 2 some host failed (and none unreachable). Code 4 (bad
/// playbook or parameters) is returned before any host runs.
pub fn exit_code_for(result: &RunResult) -> u8 {
    match result.status {
        Status::Unreachable => 3,
        Status::Failed => 2,
        _ => 0,
    }
}
