//! Trace tasks: the long-running `stream` commands started with `scaler
//! trace start`, looked up by id or by a unique prefix of at least 8
//! characters.

use serde::{Deserialize, Serialize};

use super::Result;

/// Shortest id prefix accepted by [`TraceStore::find_trace`].
pub const MIN_PREFIX: usize = 8;

/// How a trace task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceStatus {
    /// Its worker is (or was last seen) reading lines.
    Running,
    /// Stopped with `scaler trace stop`.
    Stopped,
    /// The command ended on its own.
    Exited,
    /// The command could not be started or read.
    Failed,
}

impl TraceStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TraceStatus::Running => "running",
            TraceStatus::Stopped => "stopped",
            TraceStatus::Exited => "exited",
            TraceStatus::Failed => "failed",
        }
    }

    /// From the stored name.
    pub fn parse(text: &str) -> Option<TraceStatus> {
        Some(match text {
            "running" => TraceStatus::Running,
            "stopped" => TraceStatus::Stopped,
            "exited" => TraceStatus::Exited,
            "failed" => TraceStatus::Failed,
            _ => return None,
        })
    }
}

/// A trace task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceTask {
    /// 32 hex characters.
    pub id: String,
    /// The stream counter.
    pub counter: String,
    /// Where the command runs: `local`, or the hosts of a `via: ssh` stream (`a,b`).
    pub host: String,
    /// The rendered command (`via: ssh`: as written; each host renders its own).
    pub command: String,
    /// The worker process (a `scaler` that reads the lines).
    pub worker_pid: Option<u32>,
    /// The command's process (and process group); for a `via: ssh` stream,
    /// the worker, which holds the connections and stops the remote commands.
    pub pid: Option<u32>,
    /// When it was started (ms).
    pub started_ms: i64,
    /// When it ended (ms).
    pub ended_ms: Option<i64>,
    /// Its status.
    pub status: TraceStatus,
    /// Exit status or error.
    pub detail: Option<String>,
}

/// Persistence of trace tasks.
pub trait TraceStore {
    /// Inserts or replaces a task (by id).
    fn put_trace(&mut self, task: &TraceTask) -> Result<()>;
    /// Every task, newest first.
    fn traces(&self) -> Result<Vec<TraceTask>>;
    /// The task whose id is `id` or starts with it (at least
    /// [`MIN_PREFIX`] characters); not-found and ambiguous are errors.
    fn find_trace(&self, id: &str) -> Result<TraceTask>;
}

/// Picks the task `id` names among `tasks` (exact id, or unique prefix of at
/// least [`MIN_PREFIX`] characters).
pub fn pick(tasks: Vec<TraceTask>, id: &str) -> Result<TraceTask> {
    use super::StoreError;
    if let Some(t) = tasks.iter().find(|t| t.id == id) {
        return Ok(t.clone());
    }
    if id.chars().count() < MIN_PREFIX {
        return Err(StoreError::TracePrefixTooShort(id.to_string()));
    }
    let mut matching: Vec<TraceTask> = tasks.into_iter().filter(|t| t.id.starts_with(id)).collect();
    match matching.len() {
        0 => Err(StoreError::NoSuchTrace(id.to_string())),
        1 => Ok(matching.remove(0)),
        count => Err(StoreError::AmbiguousTrace { prefix: id.to_string(), count }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    fn task(id: &str) -> TraceTask {
        TraceTask { id: id.into(), counter: "c".into(), host: "local".into(), command: "x".into(), worker_pid: None, pid: None, started_ms: 0, ended_ms: None, status: TraceStatus::Running, detail: None }
    }

    #[test]
    fn prefixes_of_eight_or_more_pick_one() {
        let all = || vec![task("0123456789abcdef"), task("01234567ffffffff"), task("abcdef0123456789")];
        assert_eq!(pick(all(), "abcdef01").unwrap().id, "abcdef0123456789");
        assert_eq!(pick(all(), "0123456789abcdef").unwrap().id, "0123456789abcdef");
        assert!(matches!(pick(all(), "01234567"), Err(StoreError::AmbiguousTrace { count: 2, .. })));
        assert!(matches!(pick(all(), "abc"), Err(StoreError::TracePrefixTooShort(_))));
        assert!(matches!(pick(all(), "99999999"), Err(StoreError::NoSuchTrace(_))));
        assert_eq!(TraceStatus::parse("stopped"), Some(TraceStatus::Stopped));
    }
}
