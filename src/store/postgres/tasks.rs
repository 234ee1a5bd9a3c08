//! [`TaskStore`] on PostgreSQL: tasks and stored plans. A plan's move
//! locks its row (`FOR UPDATE`); a new plan supersedes the held ones in
//! the transaction that inserts it.

use postgres::GenericClient;

use super::{col, db_err, Session};
use crate::store::tasks::{may_move, superseded_by, tasks_query, PlanMove, PlanRecord, PlanRow, PlanState, TaskFilter, TaskRecord, TaskRow, TaskStore};
use crate::store::Result;

const TASK_SELECT: &str = "id, kind, state, created_ms, started_ms, finished_ms, request::text, result::text, error";
const PLAN_SELECT: &str = "id, revision, state, reason, created_ms, updated_ms, plan::text";

fn task_row(row: &postgres::Row, label: &str) -> Result<TaskRecord> {
    TaskRow {
        id: col(row, 0, label)?,
        kind: col(row, 1, label)?,
        state: col(row, 2, label)?,
        created_ms: col(row, 3, label)?,
        started_ms: col(row, 4, label)?,
        finished_ms: col(row, 5, label)?,
        request: col(row, 6, label)?,
        result: col(row, 7, label)?,
        error: col(row, 8, label)?,
    }
    .decode(label)
}

fn plan_row(row: &postgres::Row, label: &str) -> Result<PlanRecord> {
    PlanRow {
        id: col(row, 0, label)?,
        revision: col(row, 1, label)?,
        state: col(row, 2, label)?,
        reason: col(row, 3, label)?,
        created_ms: col(row, 4, label)?,
        updated_ms: col(row, 5, label)?,
        plan: col(row, 6, label)?,
    }
    .decode(label)
}

fn read_plan(conn: &mut impl GenericClient, label: &str, id: &str, lock: bool) -> Result<Option<PlanRecord>> {
    let q = format!("SELECT {PLAN_SELECT} FROM plans WHERE id = $1{}", if lock { " FOR UPDATE" } else { "" });
    let row = conn.query_opt(&q, &[&id]).map_err(db_err(label))?;
    row.map(|r| plan_row(&r, label)).transpose()
}

/// [`tasks_query`] with the backend's casts of the JSON columns.
fn select_tasks(filter: &TaskFilter) -> (String, bool) {
    let (q, bound) = tasks_query(filter, "$1");
    (q.replacen(crate::store::tasks::TASK_COLUMNS, TASK_SELECT, 1), bound)
}

impl TaskStore for Session {
    fn put_task(&mut self, t: &TaskRecord) -> Result<()> {
        let result = t.result.as_ref().map(|r| r.to_string());
        self.conn
            .get_mut()
            .execute(
                "INSERT INTO tasks (id, kind, state, created_ms, started_ms, finished_ms, request, result, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7::text::json, $8::text::json, $9)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, state = excluded.state, created_ms = excluded.created_ms,
                     started_ms = excluded.started_ms, finished_ms = excluded.finished_ms, request = excluded.request,
                     result = excluded.result, error = excluded.error",
                &[&t.id, &t.kind.as_str(), &t.state.as_str(), &t.created_ms, &t.started_ms, &t.finished_ms, &t.request.to_string(), &result, &t.error],
            )
            .map_err(db_err(&self.label))?;
        Ok(())
    }

    fn task(&self, id: &str) -> Result<Option<TaskRecord>> {
        let label = &self.label;
        let row = self.conn.borrow_mut().query_opt(&format!("SELECT {TASK_SELECT} FROM tasks WHERE id = $1"), &[&id]).map_err(db_err(label))?;
        row.map(|r| task_row(&r, label)).transpose()
    }

    fn tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>> {
        let label = &self.label;
        let (q, bound) = select_tasks(filter);
        let rows = match (bound, &filter.before) {
            (true, Some(b)) => self.conn.borrow_mut().query(&q, &[b]),
            _ => self.conn.borrow_mut().query(&q, &[]),
        }
        .map_err(db_err(label))?;
        rows.iter().map(|r| task_row(r, label)).collect()
    }

    fn end_interrupted_tasks(&mut self, error: &str, now_ms: i64) -> Result<u64> {
        self.conn
            .get_mut()
            .execute("UPDATE tasks SET state = 'failure', error = $1, finished_ms = $2 WHERE state IN ('pending', 'running')", &[&error, &now_ms])
            .map_err(db_err(&self.label))
    }

    fn record_plan(&mut self, p: &PlanRecord) -> Result<Vec<String>> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        let rows = tx
            .query(
                "UPDATE plans SET state = 'superseded', reason = $1, updated_ms = $2 WHERE state = 'held' AND id <> $3 RETURNING id",
                &[&superseded_by(&p.id), &p.created_ms, &p.id],
            )
            .map_err(&db)?;
        let mut superseded = rows.iter().map(|r| col::<String>(r, 0, label)).collect::<Result<Vec<_>>>()?;
        tx.execute(
            "INSERT INTO plans (id, revision, state, reason, created_ms, updated_ms, plan) VALUES ($1, $2, $3, $4, $5, $6, $7::text::json)",
            &[&p.id, &p.revision, &p.state.as_str(), &p.reason, &p.created_ms, &p.updated_ms, &p.plan.to_string()],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)?;
        superseded.sort();
        Ok(superseded)
    }

    fn plan(&self, id: &str) -> Result<Option<PlanRecord>> {
        read_plan(&mut *self.conn.borrow_mut(), &self.label, id, false)
    }

    fn plans(&self, before: Option<&str>, limit: usize) -> Result<Vec<PlanRecord>> {
        let label = &self.label;
        let mut q = format!("SELECT {PLAN_SELECT} FROM plans");
        if before.is_some() {
            q.push_str(" WHERE (created_ms, id) < (SELECT created_ms, id FROM plans WHERE id = $1)");
        }
        q.push_str(&format!(" ORDER BY created_ms DESC, id DESC LIMIT {limit}"));
        let rows = match before {
            Some(b) => self.conn.borrow_mut().query(&q, &[&b]),
            None => self.conn.borrow_mut().query(&q, &[]),
        }
        .map_err(db_err(label))?;
        rows.iter().map(|r| plan_row(r, label)).collect()
    }

    fn move_plan(&mut self, id: &str, from: &[PlanState], to: PlanState, reason: Option<&str>, now_ms: i64) -> Result<PlanMove> {
        let label = &self.label;
        let db = db_err(label);
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        let found = read_plan(&mut tx, label, id, true)?.map(|p| p.state);
        if let Some(refused) = may_move(found, from) {
            return Ok(refused);
        }
        tx.execute("UPDATE plans SET state = $1, reason = COALESCE($2, reason), updated_ms = $3 WHERE id = $4", &[&to.as_str(), &reason, &now_ms, &id])
            .map_err(&db)?;
        let moved = read_plan(&mut tx, label, id, false)?;
        tx.commit().map_err(&db)?;
        Ok(moved.map_or(PlanMove::Missing, PlanMove::Moved))
    }
}
