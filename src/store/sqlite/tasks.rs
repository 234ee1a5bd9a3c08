//! [`TaskStore`] on SQLite: tasks and stored plans. A plan's move and a
//! new plan's superseding of the older ones each run in one `BEGIN
//! IMMEDIATE` transaction.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{db_err, SqliteStore};
use crate::store::tasks::{may_move, superseded_by, tasks_query, PlanMove, PlanRecord, PlanRow, PlanState, TaskFilter, TaskRecord, TaskRow, TaskStore, PLAN_COLUMNS, TASK_COLUMNS};
use crate::store::Result;

fn task_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        state: row.get(2)?,
        created_ms: row.get(3)?,
        started_ms: row.get(4)?,
        finished_ms: row.get(5)?,
        request: row.get(6)?,
        result: row.get(7)?,
        error: row.get(8)?,
    })
}

fn plan_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PlanRow> {
    Ok(PlanRow {
        id: row.get(0)?,
        revision: row.get(1)?,
        state: row.get(2)?,
        reason: row.get(3)?,
        created_ms: row.get(4)?,
        updated_ms: row.get(5)?,
        plan: row.get(6)?,
    })
}

fn read_plan(conn: &Connection, label: &str, id: &str) -> Result<Option<PlanRecord>> {
    let row = conn
        .query_row(&format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = ?1"), [id], plan_row)
        .optional()
        .map_err(db_err(label))?;
    row.map(|r| r.decode(label)).transpose()
}

impl TaskStore for SqliteStore {
    fn put_task(&mut self, t: &TaskRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO tasks (id, kind, state, created_ms, started_ms, finished_ms, request, result, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    t.id,
                    t.kind.as_str(),
                    t.state.as_str(),
                    t.created_ms,
                    t.started_ms,
                    t.finished_ms,
                    t.request.to_string(),
                    t.result.as_ref().map(|r| r.to_string()),
                    t.error
                ],
            )
            .map_err(db_err(&self.label))?;
        Ok(())
    }

    fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let row = self
            .conn
            .query_row(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"), [id], task_row)
            .optional()
            .map_err(db_err(&self.label))?;
        row.map(|r| r.decode(&self.label)).transpose()
    }

    fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        let db = db_err(&self.label);
        let (q, bound) = tasks_query(filter, "?1");
        let mut stmt = self.conn.prepare(&q).map_err(&db)?;
        let rows = match (bound, &filter.before) {
            (true, Some(b)) => stmt.query_map([b], task_row),
            _ => stmt.query_map([], task_row),
        }
        .map_err(&db)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(&db)?.decode(&self.label)?);
        }
        Ok(out)
    }

    fn end_interrupted_tasks(&mut self, error: &str, now_ms: i64) -> Result<u64> {
        let n = self
            .conn
            .execute(
                "UPDATE tasks SET state = 'failure', error = ?1, finished_ms = ?2 WHERE state IN ('pending', 'running')",
                params![error, now_ms],
            )
            .map_err(db_err(&self.label))?;
        Ok(n as u64)
    }

    fn record_plan(&mut self, p: &PlanRecord) -> Result<Vec<String>> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&db)?;
        let superseded: Vec<String> = {
            let mut stmt = tx
                .prepare("UPDATE plans SET state = 'superseded', reason = ?1, updated_ms = ?2 WHERE state = 'held' AND id <> ?3 RETURNING id")
                .map_err(&db)?;
            let rows = stmt.query_map(params![superseded_by(&p.id), p.created_ms, p.id], |r| r.get::<_, String>(0)).map_err(&db)?;
            rows.collect::<rusqlite::Result<Vec<String>>>().map_err(&db)?
        };
        tx.execute(
            "INSERT INTO plans (id, revision, state, reason, created_ms, updated_ms, plan) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![p.id, p.revision, p.state.as_str(), p.reason, p.created_ms, p.updated_ms, p.plan.to_string()],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        let mut superseded = superseded;
        superseded.sort();
        Ok(superseded)
    }

    fn plan(&self, id: &str) -> Result<Option<PlanRecord>> {
        read_plan(&self.conn, &self.label, id)
    }

    fn plans(&self, before: Option<&str>, limit: usize) -> Result<Vec<PlanRecord>> {
        let db = db_err(&self.label);
        let mut q = format!("SELECT {PLAN_COLUMNS} FROM plans");
        if before.is_some() {
            q.push_str(" WHERE (created_ms, id) < (SELECT created_ms, id FROM plans WHERE id = ?1)");
        }
        q.push_str(&format!(" ORDER BY created_ms DESC, id DESC LIMIT {limit}"));
        let mut stmt = self.conn.prepare(&q).map_err(&db)?;
        let rows = match before {
            Some(b) => stmt.query_map([b], plan_row),
            None => stmt.query_map([], plan_row),
        }
        .map_err(&db)?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(&db)?.decode(&self.label)?);
        }
        Ok(out)
    }

    fn move_plan(&mut self, id: &str, from: &[PlanState], to: PlanState, reason: Option<&str>, now_ms: i64) -> Result<PlanMove> {
        let label = self.label.clone();
        let db = db_err(&label);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&db)?;
        let found = read_plan(&tx, &label, id)?.map(|p| p.state);
        if let Some(refused) = may_move(found, from) {
            return Ok(refused);
        }
        tx.execute(
            "UPDATE plans SET state = ?1, reason = COALESCE(?2, reason), updated_ms = ?3 WHERE id = ?4",
            params![to.as_str(), reason, now_ms, id],
        )
        .map_err(&db)?;
        let moved = read_plan(&tx, &label, id)?;
        tx.commit().map_err(&db)?;
        Ok(moved.map_or(PlanMove::Missing, PlanMove::Moved))
    }
}
