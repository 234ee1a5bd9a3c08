//! Rows as the backends store them, and their decoding into store values.
//!
//! Both backends keep the same plain column values: integers, text, JSON as
//! text, instants as RFC 3339 text with nine fraction digits ([`timestamp`]).
//! A backend reads a row into one of these structs with its own driver; the
//! decoding here turns it into a model value or a [`StoreError::Corrupt`]
//! naming the record, identically for every backend. No IO, no driver types.

use chrono::{DateTime, SecondsFormat, Utc};

use super::jobs::{Job, JobStatus};
use super::{LockInfo, NodeRecord, NodeStatus, Result, StoreError, TraceStatus};

/// A record that could not be decoded.
pub(crate) fn corrupt(label: &str, what: impl Into<String>, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { path: label.to_owned(), what: what.into(), detail: detail.to_string() }
}

/// The stored form of an instant: RFC 3339 UTC with nine fraction digits,
/// fixed width so text order is time order and every instant round-trips.
pub(crate) fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

pub(crate) fn parse_timestamp(label: &str, what: impl Into<String>, text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(label, what, format_args!("timestamp `{text}`: {e}")))
}

pub(crate) fn parse_json(label: &str, what: impl Into<String>, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| corrupt(label, what, format_args!("JSON: {e}")))
}

pub(crate) fn parse_u64(label: &str, what: impl Into<String>, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(label, what, format_args!("negative value {value}")))
}

pub(crate) fn parse_u32(label: &str, what: impl Into<String>, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(label, what, format_args!("value {value} out of range")))
}

/// A serial as stored (a signed 64-bit column).
pub(crate) fn stored_serial(label: &str, serial: u64) -> Result<i64> {
    i64::try_from(serial).map_err(|_| corrupt(label, "meta.serial", format_args!("serial {serial} out of range")))
}

fn parse_status(label: &str, what: impl Into<String>, text: &str) -> Result<NodeStatus> {
    NodeStatus::parse(text).ok_or_else(|| corrupt(label, what, format_args!("unknown status `{text}`")))
}

pub(crate) fn parse_trace_status(label: &str, id: &str, text: &str) -> Result<TraceStatus> {
    TraceStatus::parse(text).ok_or_else(|| corrupt(label, format!("trace task {id}"), format_args!("unknown status `{text}`")))
}

/// This machine's name, recorded in a lock lease.
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".to_owned())
}

/// A `nodes` row as stored.
pub(crate) struct NodeRow {
    pub name: String,
    pub group: String,
    pub idx: i64,
    pub provider: String,
    pub provider_id: Option<String>,
    pub status: String,
    pub created_at: String,
    pub template_digest: String,
    pub address: Option<String>,
    pub attrs: String,
}

impl NodeRow {
    pub(crate) fn decode(self, label: &str) -> Result<NodeRecord> {
        let what = format!("node {}", self.name);
        Ok(NodeRecord {
            index: parse_u32(label, what.clone(), self.idx)?,
            status: parse_status(label, what.clone(), &self.status)?,
            created_at: parse_timestamp(label, what.clone(), &self.created_at)?,
            attrs: parse_json(label, what, &self.attrs)?,
            name: self.name,
            group: self.group,
            provider: self.provider,
            provider_id: self.provider_id,
            template_digest: self.template_digest,
            address: self.address,
        })
    }
}

/// The lock lease row as stored.
pub(crate) struct LockRow {
    pub id: String,
    pub owner: String,
    pub host: String,
    pub pid: i64,
    pub operation: String,
    pub created: String,
    pub expires: String,
}

impl LockRow {
    pub(crate) fn decode(self, label: &str) -> Result<LockInfo> {
        let what = format!("lock {}", self.id);
        Ok(LockInfo {
            pid: parse_u32(label, what.clone(), self.pid)?,
            created: parse_timestamp(label, what.clone(), &self.created)?,
            expires: parse_timestamp(label, what, &self.expires)?,
            id: self.id,
            owner: self.owner,
            host: self.host,
            operation: self.operation,
        })
    }
}

/// A `jobs` row as stored.
pub(crate) struct JobRow {
    pub id: i64,
    pub key: String,
    pub trigger: String,
    pub fired_at_ms: i64,
    pub revision: Option<String>,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_after_ms: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_ms: Option<i64>,
    pub actions_done: i64,
    pub result: String,
    pub last_error: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl JobRow {
    pub(crate) fn decode(self, label: &str) -> Result<Job> {
        let what = format!("job {}", self.id);
        let status = JobStatus::parse(&self.status).ok_or_else(|| corrupt(label, what.clone(), format_args!("unknown status `{}`", self.status)))?;
        Ok(Job {
            payload: parse_json(label, what.clone(), &self.payload)?,
            result: parse_json(label, what.clone(), &self.result)?,
            attempts: parse_u32(label, what.clone(), self.attempts)?,
            max_attempts: parse_u32(label, what.clone(), self.max_attempts)?,
            actions_done: parse_u32(label, what, self.actions_done)?,
            id: self.id,
            key: self.key,
            trigger: self.trigger,
            fired_at_ms: self.fired_at_ms,
            revision: self.revision,
            status,
            run_after_ms: self.run_after_ms,
            lease_owner: self.lease_owner,
            lease_expires_ms: self.lease_expires_ms,
            last_error: self.last_error,
            created_ms: self.created_ms,
            updated_ms: self.updated_ms,
        })
    }
}

/// A due job a worker looks at: queued and due, or leased and its lease ran
/// out.
pub(crate) struct DueRow {
    pub id: i64,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_owner: Option<String>,
}

impl DueRow {
    /// The error the job is dead-lettered with instead of being leased
    /// again: its lease ran out on its last allowed try (its worker died
    /// or lost the store). `None`: lease it (logged when it is taken over
    /// from such a worker).
    pub(crate) fn dead_letter(&self, label: &str, worker: &str) -> Option<String> {
        if self.status != "leased" {
            return None;
        }
        let owner = self.lease_owner.as_deref().unwrap_or_default();
        if self.attempts >= self.max_attempts {
            let error = format!(
                "the lease of worker `{owner}` ran out on try {} of {} (the worker stopped or lost the store)",
                self.attempts, self.max_attempts
            );
            tracing::warn!(path = %label, job = self.id, %error, "job dead-lettered");
            return Some(error);
        }
        tracing::info!(path = %label, job = self.id, previous = %owner, %worker, "taking over a job whose lease ran out");
        None
    }
}
