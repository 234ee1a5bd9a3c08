//! [`JobStore`] on SQLite: trigger states and the job queue.
//!
//! Every read-modify-write runs in one `BEGIN IMMEDIATE` transaction, so the
//! check ("is this job due?", "does this worker hold the lease?") and the
//! write it decides are atomic against other handles and processes; writers
//! queue on SQLite's write lock for up to [`super::BUSY_TIMEOUT`].

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{commit_in, db_err, parse_json, SqliteStore};
use crate::store::rows::{DueRow, JobRow};
use crate::store::jobs::{Enqueued, Job, JobFilter, JobStatus, JobStore, NewJob, TriggerRecord};
use crate::store::{Mutation, Result, StoreError};

const JOB_COLUMNS: &str = "id, idem_key, trigger_name, fired_at_ms, revision, payload, status, attempts, max_attempts, \
     run_after_ms, lease_owner, lease_expires_ms, actions_done, result, last_error, created_ms, updated_ms";

fn job_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: row.get(0)?,
        key: row.get(1)?,
        trigger: row.get(2)?,
        fired_at_ms: row.get(3)?,
        revision: row.get(4)?,
        payload: row.get(5)?,
        status: row.get(6)?,
        attempts: row.get(7)?,
        max_attempts: row.get(8)?,
        run_after_ms: row.get(9)?,
        lease_owner: row.get(10)?,
        lease_expires_ms: row.get(11)?,
        actions_done: row.get(12)?,
        result: row.get(13)?,
        last_error: row.get(14)?,
        created_ms: row.get(15)?,
        updated_ms: row.get(16)?,
    })
}

fn read_job(conn: &Connection, label: &str, id: i64) -> Result<Option<Job>> {
    let row = conn
        .query_row(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"), [id], job_row)
        .optional()
        .map_err(db_err(label))?;
    row.map(|row| row.decode(label)).transpose()
}

/// Inserts `job` unless its key is already enqueued.
fn enqueue_in(conn: &Connection, label: &str, job: &NewJob, now_ms: i64) -> Result<Enqueued> {
    let db = db_err(label);
    let inserted = conn
        .execute(
            "INSERT INTO jobs (idem_key, trigger_name, fired_at_ms, revision, payload, status, attempts,
                               max_attempts, run_after_ms, actions_done, result, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6, ?7, 0, 'null', ?7, ?7)
             ON CONFLICT (idem_key) DO NOTHING",
            params![job.key, job.trigger, job.fired_at_ms, job.revision, job.payload.to_string(), job.max_attempts.max(1), now_ms],
        )
        .map_err(&db)?;
    if inserted == 1 {
        let id = conn.last_insert_rowid();
        tracing::debug!(path = %label, job = id, key = %job.key, "job enqueued");
        return Ok(Enqueued::New(id));
    }
    let id = conn
        .query_row("SELECT id FROM jobs WHERE idem_key = ?1", [&job.key], |r| r.get(0))
        .map_err(&db)?;
    tracing::debug!(path = %label, job = id, key = %job.key, "job already enqueued");
    Ok(Enqueued::Duplicate(id))
}

/// What [`held`] found about a job whose lease a worker holds.
struct Held {
    attempts: i64,
    max_attempts: i64,
}

/// Checks (inside a write transaction) that `worker` holds the lease on job `id`.
fn held(conn: &Connection, label: &str, id: i64, worker: &str) -> Result<Held> {
    let row = conn
        .query_row(
            "SELECT attempts, max_attempts FROM jobs WHERE id = ?1 AND status = 'leased' AND lease_owner = ?2",
            params![id, worker],
            |r| Ok(Held { attempts: r.get(0)?, max_attempts: r.get(1)? }),
        )
        .optional()
        .map_err(db_err(label))?;
    row.ok_or_else(|| StoreError::LeaseLost { id, worker: worker.to_owned() })
}

fn next_due(conn: &Connection, label: &str, now_ms: i64) -> Result<Option<DueRow>> {
    conn.query_row(
        "SELECT id, status, attempts, max_attempts, lease_owner FROM jobs
         WHERE (status = 'queued' AND run_after_ms <= ?1) OR (status = 'leased' AND lease_expires_ms <= ?1)
         ORDER BY id LIMIT 1",
        [now_ms],
        |r| Ok(DueRow { id: r.get(0)?, status: r.get(1)?, attempts: r.get(2)?, max_attempts: r.get(3)?, lease_owner: r.get(4)? }),
    )
    .optional()
    .map_err(db_err(label))
}

impl SqliteStore {
    /// A write transaction (`BEGIN IMMEDIATE`).
    fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db_err(&self.label))
    }
}

impl JobStore for SqliteStore {
    fn trigger_states(&self) -> Result<Vec<TriggerRecord>> {
        let db = db_err(&self.label);
        let mut stmt = self
            .conn
            .prepare("SELECT name, state_key, state, updated_ms FROM trigger_states ORDER BY name, state_key")
            .map_err(&db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, i64>(3)?)))
            .map_err(&db)?;
        let mut out = Vec::new();
        for row in rows {
            let (name, key, state, updated_ms) = row.map_err(&db)?;
            let state = parse_json(&self.label, format!("trigger state {name}/{key}"), &state)?;
            out.push(TriggerRecord { name, key, state, updated_ms });
        }
        Ok(out)
    }

    fn save_evaluation(&mut self, states: &[TriggerRecord], jobs: &[NewJob], now_ms: i64) -> Result<Vec<Enqueued>> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.write_tx()?;
        for s in states {
            tx.execute(
                "INSERT INTO trigger_states (name, state_key, state, updated_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name, state_key) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                params![s.name, s.key, s.state.to_string(), s.updated_ms],
            )
            .map_err(&db)?;
        }
        let mut enqueued = Vec::with_capacity(jobs.len());
        for job in jobs {
            enqueued.push(enqueue_in(&tx, &label, job, now_ms)?);
        }
        tx.commit().map_err(&db)?;
        Ok(enqueued)
    }

    fn delete_trigger_states(&mut self, keep: &[String]) -> Result<usize> {
        let keep = serde_json::Value::from(keep.to_vec()).to_string();
        let deleted = self
            .conn
            .execute("DELETE FROM trigger_states WHERE name NOT IN (SELECT value FROM json_each(?1))", [keep])
            .map_err(db_err(&self.label))?;
        if deleted > 0 {
            tracing::info!(path = %self.label, deleted, "states of removed triggers deleted");
        }
        Ok(deleted)
    }

    fn enqueue(&mut self, job: &NewJob, now_ms: i64) -> Result<Enqueued> {
        let label = self.label.clone();
        let tx = self.write_tx()?;
        let enqueued = enqueue_in(&tx, &label, job, now_ms)?;
        tx.commit().map_err(db_err(&label))?;
        Ok(enqueued)
    }

    fn lease_job(&mut self, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<Option<Job>> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.write_tx()?;
        let leased = loop {
            let Some(due) = next_due(&tx, &label, now_ms)? else {
                break None;
            };
            if let Some(error) = due.dead_letter(&label, worker) {
                tx.execute(
                    "UPDATE jobs SET status = 'dead', last_error = ?2, lease_owner = NULL, lease_expires_ms = NULL, updated_ms = ?3 WHERE id = ?1",
                    params![due.id, error, now_ms],
                )
                .map_err(&db)?;
                continue;
            }
            tx.execute(
                "UPDATE jobs SET status = 'leased', lease_owner = ?2, lease_expires_ms = ?3, attempts = attempts + 1, updated_ms = ?4
                 WHERE id = ?1",
                params![due.id, worker, now_ms.saturating_add(ttl_ms), now_ms],
            )
            .map_err(&db)?;
            break read_job(&tx, &label, due.id)?;
        };
        tx.commit().map_err(&db)?;
        Ok(leased)
    }

    fn heartbeat(&mut self, id: i64, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<()> {
        let renewed = self
            .conn
            .execute(
                "UPDATE jobs SET lease_expires_ms = ?3 WHERE id = ?1 AND status = 'leased' AND lease_owner = ?2",
                params![id, worker, now_ms.saturating_add(ttl_ms)],
            )
            .map_err(db_err(&self.label))?;
        if renewed == 0 {
            return Err(StoreError::LeaseLost { id, worker: worker.to_owned() });
        }
        Ok(())
    }

    fn job_progress(&mut self, id: i64, worker: &str, actions_done: u32, result: &serde_json::Value, mutations: &[Mutation]) -> Result<()> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.write_tx()?;
        held(&tx, &label, id, worker)?;
        tx.execute(
            "UPDATE jobs SET actions_done = ?2, result = ?3 WHERE id = ?1",
            params![id, actions_done, result.to_string()],
        )
        .map_err(&db)?;
        if !mutations.is_empty() {
            let serial = commit_in(&tx, &label, mutations)?;
            tracing::debug!(path = %label, job = id, serial, "job progress committed with state");
        }
        tx.commit().map_err(&db)
    }

    fn complete_job(&mut self, id: i64, worker: &str, result: &serde_json::Value, now_ms: i64) -> Result<()> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.write_tx()?;
        held(&tx, &label, id, worker)?;
        tx.execute(
            "UPDATE jobs SET status = 'done', result = ?2, lease_owner = NULL, lease_expires_ms = NULL, updated_ms = ?3 WHERE id = ?1",
            params![id, result.to_string(), now_ms],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    fn fail_job(&mut self, id: i64, worker: &str, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> Result<JobStatus> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.write_tx()?;
        let job = held(&tx, &label, id, worker)?;
        let status = match retry_at_ms {
            Some(at) if job.attempts < job.max_attempts => {
                tx.execute(
                    "UPDATE jobs SET status = 'queued', run_after_ms = ?2, last_error = ?3, lease_owner = NULL, lease_expires_ms = NULL,
                                     updated_ms = ?4 WHERE id = ?1",
                    params![id, at, error, now_ms],
                )
                .map_err(&db)?;
                JobStatus::Queued
            }
            _ => {
                tx.execute(
                    "UPDATE jobs SET status = 'dead', last_error = ?2, lease_owner = NULL, lease_expires_ms = NULL, updated_ms = ?3
                     WHERE id = ?1",
                    params![id, error, now_ms],
                )
                .map_err(&db)?;
                JobStatus::Dead
            }
        };
        tx.commit().map_err(&db)?;
        Ok(status)
    }

    fn release_job(&mut self, id: i64, worker: &str, now_ms: i64) -> Result<()> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.write_tx()?;
        held(&tx, &label, id, worker)?;
        tx.execute(
            "UPDATE jobs SET status = 'queued', run_after_ms = ?2, attempts = max(attempts - 1, 0), lease_owner = NULL,
                             lease_expires_ms = NULL, updated_ms = ?2 WHERE id = ?1",
            params![id, now_ms],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let db = db_err(&self.label);
        let limit = filter.limit.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR trigger_name = ?2)
                 AND (?4 IS NULL OR idem_key = ?4) AND (?5 IS NULL OR id < ?5)
                 ORDER BY id DESC LIMIT ?3"
            ))
            .map_err(&db)?;
        let rows = stmt
            .query_map(params![filter.status.map(JobStatus::as_str), filter.trigger, limit, filter.key, filter.before_id], job_row)
            .map_err(&db)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(&db)?.decode(&self.label)?);
        }
        Ok(out)
    }

    fn job(&self, id: i64) -> Result<Option<Job>> {
        read_job(&self.conn, &self.label, id)
    }

    fn queue_depth(&self) -> Result<BTreeMap<String, u64>> {
        let db = db_err(&self.label);
        let mut depth: BTreeMap<String, u64> = JobStatus::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
        let mut stmt = self
            .conn
            .prepare("SELECT status, count(*) FROM jobs GROUP BY status")
            .map_err(&db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(&db)?;
        for row in rows {
            let (status, count) = row.map_err(&db)?;
            depth.insert(status, count.max(0).unsigned_abs());
        }
        Ok(depth)
    }
}
