//! [`JobStore`] on PostgreSQL: trigger states and the job queue.
//!
//! Every read-modify-write is one transaction that locks the job row it
//! decides on (`FOR UPDATE`), so the check ("is this job due?", "does this
//! worker hold the lease?") and the write it decides are atomic against
//! other connections. Workers looking for a due job skip rows another worker
//! is leasing right now (`FOR UPDATE SKIP LOCKED`), so they never queue
//! behind each other and never get the same job.

use std::collections::BTreeMap;

use postgres::GenericClient;

use super::{col, commit_in, db_err, Session};
use crate::store::jobs::{Enqueued, Job, JobFilter, JobStatus, JobStore, NewJob, TriggerRecord};
use crate::store::rows::{parse_json, DueRow, JobRow};
use crate::store::{Mutation, Result, StoreError};

const JOB_COLUMNS: &str = "id, idem_key, trigger_name, fired_at_ms, revision, payload::text, status, attempts, max_attempts, \
     run_after_ms, lease_owner, lease_expires_ms, actions_done, result::text, last_error, created_ms, updated_ms";

fn job_row(row: &postgres::Row, label: &str) -> Result<JobRow> {
    Ok(JobRow {
        id: col(row, 0, label)?,
        key: col(row, 1, label)?,
        trigger: col(row, 2, label)?,
        fired_at_ms: col(row, 3, label)?,
        revision: col(row, 4, label)?,
        payload: col(row, 5, label)?,
        status: col(row, 6, label)?,
        attempts: col(row, 7, label)?,
        max_attempts: col(row, 8, label)?,
        run_after_ms: col(row, 9, label)?,
        lease_owner: col(row, 10, label)?,
        lease_expires_ms: col(row, 11, label)?,
        actions_done: col(row, 12, label)?,
        result: col(row, 13, label)?,
        last_error: col(row, 14, label)?,
        created_ms: col(row, 15, label)?,
        updated_ms: col(row, 16, label)?,
    })
}

fn read_job(conn: &mut impl GenericClient, label: &str, id: i64) -> Result<Option<Job>> {
    let row = conn.query_opt(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"), &[&id]).map_err(db_err(label))?;
    row.map(|row| job_row(&row, label)?.decode(label)).transpose()
}

fn existing_job(conn: &mut impl GenericClient, label: &str, key: &str) -> Result<Option<i64>> {
    let row = conn.query_opt("SELECT id FROM jobs WHERE idem_key = $1", &[&key]).map_err(db_err(label))?;
    row.map(|row| col(&row, 0, label)).transpose()
}

/// Inserts `job` unless its key is already enqueued. The key is looked up
/// first, so that a duplicate does not use up an id of the sequence.
fn enqueue_in(conn: &mut impl GenericClient, label: &str, job: &NewJob, now_ms: i64) -> Result<Enqueued> {
    let db = db_err(label);
    if let Some(id) = existing_job(conn, label, &job.key)? {
        tracing::debug!(path = %label, job = id, key = %job.key, "job already enqueued");
        return Ok(Enqueued::Duplicate(id));
    }
    let inserted = conn
        .query_opt(
            "INSERT INTO jobs (idem_key, trigger_name, fired_at_ms, revision, payload, status, attempts,
                               max_attempts, run_after_ms, actions_done, result, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5::text::json, 'queued', 0, $6, $7, 0, 'null', $7, $7)
             ON CONFLICT (idem_key) DO NOTHING RETURNING id",
            &[&job.key, &job.trigger, &job.fired_at_ms, &job.revision, &job.payload.to_string(), &i64::from(job.max_attempts.max(1)), &now_ms],
        )
        .map_err(&db)?;
    if let Some(row) = inserted {
        let id = col(&row, 0, label)?;
        tracing::debug!(path = %label, job = id, key = %job.key, "job enqueued");
        return Ok(Enqueued::New(id));
    }
    // Another connection enqueued the same key between the look-up and the insert.
    let id = existing_job(conn, label, &job.key)?.ok_or_else(|| crate::store::rows::corrupt(label, format!("job `{}`", job.key), "enqueued and gone"))?;
    tracing::debug!(path = %label, job = id, key = %job.key, "job already enqueued");
    Ok(Enqueued::Duplicate(id))
}

/// What [`held`] found about a job whose lease a worker holds.
struct Held {
    attempts: i64,
    max_attempts: i64,
}

/// Checks (and locks, until the transaction ends) that `worker` holds the
/// lease on job `id`.
fn held(conn: &mut impl GenericClient, label: &str, id: i64, worker: &str) -> Result<Held> {
    let row = conn
        .query_opt("SELECT attempts, max_attempts FROM jobs WHERE id = $1 AND status = 'leased' AND lease_owner = $2 FOR UPDATE", &[&id, &worker])
        .map_err(db_err(label))?;
    let row = row.ok_or_else(|| StoreError::LeaseLost { id, worker: worker.to_owned() })?;
    Ok(Held { attempts: col(&row, 0, label)?, max_attempts: col(&row, 1, label)? })
}

/// The oldest due job, locked by this transaction (rows other workers are
/// leasing right now are skipped).
fn next_due(conn: &mut impl GenericClient, label: &str, now_ms: i64) -> Result<Option<DueRow>> {
    let row = conn
        .query_opt(
            "SELECT id, status, attempts, max_attempts, lease_owner FROM jobs
             WHERE (status = 'queued' AND run_after_ms <= $1) OR (status = 'leased' AND lease_expires_ms <= $1)
             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&now_ms],
        )
        .map_err(db_err(label))?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(DueRow {
        id: col(&row, 0, label)?,
        status: col(&row, 1, label)?,
        attempts: col(&row, 2, label)?,
        max_attempts: col(&row, 3, label)?,
        lease_owner: col(&row, 4, label)?,
    }))
}

impl JobStore for Session {
    fn trigger_states(&self) -> Result<Vec<TriggerRecord>> {
        let label = &self.label;
        let rows = self
            .conn
            .borrow_mut()
            .query("SELECT name, state_key, state::text, updated_ms FROM trigger_states ORDER BY name, state_key", &[])
            .map_err(db_err(label))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (name, key): (String, String) = (col(row, 0, label)?, col(row, 1, label)?);
            let state = parse_json(label, format!("trigger state {name}/{key}"), col(row, 2, label)?)?;
            out.push(TriggerRecord { name, key, state, updated_ms: col(row, 3, label)? });
        }
        Ok(out)
    }

    fn save_evaluation(&mut self, states: &[TriggerRecord], jobs: &[NewJob], now_ms: i64) -> Result<Vec<Enqueued>> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        for s in states {
            tx.execute(
                "INSERT INTO trigger_states (name, state_key, state, updated_ms) VALUES ($1, $2, $3::text::json, $4)
                 ON CONFLICT (name, state_key) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
                &[&s.name, &s.key, &s.state.to_string(), &s.updated_ms],
            )
            .map_err(&db)?;
        }
        let mut enqueued = Vec::with_capacity(jobs.len());
        for job in jobs {
            enqueued.push(enqueue_in(&mut tx, label, job, now_ms)?);
        }
        tx.commit().map_err(&db)?;
        Ok(enqueued)
    }

    fn delete_trigger_states(&mut self, keep: &[String]) -> Result<usize> {
        let deleted = self
            .conn
            .get_mut()
            .execute("DELETE FROM trigger_states WHERE NOT (name = ANY($1))", &[&keep])
            .map_err(db_err(&self.label))?;
        if deleted > 0 {
            tracing::info!(path = %self.label, deleted, "states of removed triggers deleted");
        }
        Ok(usize::try_from(deleted).unwrap_or(usize::MAX))
    }

    fn enqueue(&mut self, job: &NewJob, now_ms: i64) -> Result<Enqueued> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        let enqueued = enqueue_in(&mut tx, label, job, now_ms)?;
        tx.commit().map_err(&db)?;
        Ok(enqueued)
    }

    fn lease_job(&mut self, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<Option<Job>> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        let leased = loop {
            let Some(due) = next_due(&mut tx, label, now_ms)? else {
                break None;
            };
            if let Some(error) = due.dead_letter(label, worker) {
                tx.execute(
                    "UPDATE jobs SET status = 'dead', last_error = $2, lease_owner = NULL, lease_expires_ms = NULL, updated_ms = $3 WHERE id = $1",
                    &[&due.id, &error, &now_ms],
                )
                .map_err(&db)?;
                continue;
            }
            tx.execute(
                "UPDATE jobs SET status = 'leased', lease_owner = $2, lease_expires_ms = $3, attempts = attempts + 1, updated_ms = $4 WHERE id = $1",
                &[&due.id, &worker, &now_ms.saturating_add(ttl_ms), &now_ms],
            )
            .map_err(&db)?;
            break read_job(&mut tx, label, due.id)?;
        };
        tx.commit().map_err(&db)?;
        Ok(leased)
    }

    fn heartbeat(&mut self, id: i64, worker: &str, now_ms: i64, ttl_ms: i64) -> Result<()> {
        let renewed = self
            .conn
            .get_mut()
            .execute(
                "UPDATE jobs SET lease_expires_ms = $3 WHERE id = $1 AND status = 'leased' AND lease_owner = $2",
                &[&id, &worker, &now_ms.saturating_add(ttl_ms)],
            )
            .map_err(db_err(&self.label))?;
        if renewed == 0 {
            return Err(StoreError::LeaseLost { id, worker: worker.to_owned() });
        }
        Ok(())
    }

    fn job_progress(&mut self, id: i64, worker: &str, actions_done: u32, result: &serde_json::Value, mutations: &[Mutation]) -> Result<()> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        held(&mut tx, label, id, worker)?;
        tx.execute("UPDATE jobs SET actions_done = $2, result = $3::text::json WHERE id = $1", &[&id, &i64::from(actions_done), &result.to_string()])
            .map_err(&db)?;
        if !mutations.is_empty() {
            let serial = commit_in(&mut tx, label, mutations)?;
            tracing::debug!(path = %label, job = id, serial, "job progress committed with state");
        }
        tx.commit().map_err(&db)
    }

    fn complete_job(&mut self, id: i64, worker: &str, result: &serde_json::Value, now_ms: i64) -> Result<()> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        held(&mut tx, label, id, worker)?;
        tx.execute(
            "UPDATE jobs SET status = 'done', result = $2::text::json, lease_owner = NULL, lease_expires_ms = NULL, updated_ms = $3 WHERE id = $1",
            &[&id, &result.to_string(), &now_ms],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    fn fail_job(&mut self, id: i64, worker: &str, error: &str, retry_at_ms: Option<i64>, now_ms: i64) -> Result<JobStatus> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        let job = held(&mut tx, label, id, worker)?;
        let status = match retry_at_ms {
            Some(at) if job.attempts < job.max_attempts => {
                tx.execute(
                    "UPDATE jobs SET status = 'queued', run_after_ms = $2, last_error = $3, lease_owner = NULL, lease_expires_ms = NULL,
                                     updated_ms = $4 WHERE id = $1",
                    &[&id, &at, &error, &now_ms],
                )
                .map_err(&db)?;
                JobStatus::Queued
            }
            _ => {
                tx.execute(
                    "UPDATE jobs SET status = 'dead', last_error = $2, lease_owner = NULL, lease_expires_ms = NULL, updated_ms = $3 WHERE id = $1",
                    &[&id, &error, &now_ms],
                )
                .map_err(&db)?;
                JobStatus::Dead
            }
        };
        tx.commit().map_err(&db)?;
        Ok(status)
    }

    fn release_job(&mut self, id: i64, worker: &str, now_ms: i64) -> Result<()> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        held(&mut tx, label, id, worker)?;
        tx.execute(
            "UPDATE jobs SET status = 'queued', run_after_ms = $2, attempts = greatest(attempts - 1, 0), lease_owner = NULL,
                             lease_expires_ms = NULL, updated_ms = $2 WHERE id = $1",
            &[&id, &now_ms],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let label = &self.label;
        let limit = filter.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let rows = self
            .conn
            .borrow_mut()
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR trigger_name = $2)
                     AND ($4::text IS NULL OR idem_key = $4) AND ($5::bigint IS NULL OR id < $5)
                     ORDER BY id DESC LIMIT $3"
                ),
                &[&filter.status.map(JobStatus::as_str), &filter.trigger, &limit, &filter.key, &filter.before_id],
            )
            .map_err(db_err(label))?;
        rows.iter().map(|row| job_row(row, label)?.decode(label)).collect()
    }

    fn job(&self, id: i64) -> Result<Option<Job>> {
        read_job(&mut *self.conn.borrow_mut(), &self.label, id)
    }

    fn queue_depth(&self) -> Result<BTreeMap<String, u64>> {
        let label = &self.label;
        let mut depth: BTreeMap<String, u64> = JobStatus::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
        let rows = self.conn.borrow_mut().query("SELECT status, count(*) FROM jobs GROUP BY status", &[]).map_err(db_err(label))?;
        for row in &rows {
            let count: i64 = col(row, 1, label)?;
            depth.insert(col(row, 0, label)?, count.max(0).unsigned_abs());
        }
        Ok(depth)
    }
}
