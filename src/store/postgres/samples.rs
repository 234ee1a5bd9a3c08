//! [`SampleStore`] and [`TraceStore`] on PostgreSQL.
//!
//! Samples are one row each in `samples` (series, ts, value), keyed (and so
//! indexed) by series and time, durable once committed; a batch goes in as
//! one statement per series (arrays unnested by the server). Past raw
//! retention, [`SampleStore::maintain`] folds them into `sample_rollups`
//! buckets and deletes them in one statement. There are no compressed
//! chunks (yet): [`MaintainReport::sealed`] stays 0.
//!
//! What a query returns is defined by the pure functions of
//! [`crate::store::samples`], as for SQLite; this module only fetches.

use std::collections::BTreeMap;

use postgres::GenericClient;

use super::{col, db_err, Session};
use crate::store::rows::{corrupt, parse_trace_status, parse_u32};
use crate::store::samples::{bucketize, by_series, Event, Latest, MaintainReport, Points, RangeQuery, Retention, Sample, SampleStore, SampleValue, SeriesKey, SeriesPoints, Selector};
use crate::store::{Result, TraceStore, TraceTask};

fn labels_json(key: &SeriesKey) -> String {
    serde_json::to_string(&key.labels).unwrap_or_else(|_| "{}".into())
}

/// The id of `key`'s series, created if new.
fn series_id(conn: &mut impl GenericClient, label: &str, key: &SeriesKey) -> Result<i64> {
    let db = db_err(label);
    let labels = labels_json(key);
    let find = "SELECT id FROM series WHERE counter = $1 AND host = $2 AND labels = $3";
    if let Some(row) = conn.query_opt(find, &[&key.counter, &key.host, &labels]).map_err(&db)? {
        return col(&row, 0, label);
    }
    let created = conn
        .query_opt(
            "INSERT INTO series (counter, host, labels) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING id",
            &[&key.counter, &key.host, &labels],
        )
        .map_err(&db)?;
    let row = match created {
        Some(row) => row,
        // created by another connection in the meantime
        None => conn.query_one(find, &[&key.counter, &key.host, &labels]).map_err(&db)?,
    };
    col(&row, 0, label)
}

/// The ids and keys of the series a selector matches, sorted by host then labels.
fn select(conn: &mut impl GenericClient, label: &str, selector: &Selector) -> Result<Vec<(i64, SeriesKey)>> {
    let rows = conn
        .query("SELECT id, host, labels FROM series WHERE counter = $1 ORDER BY host, labels", &[&selector.counter])
        .map_err(db_err(label))?;
    let mut out = Vec::new();
    for row in &rows {
        let id: i64 = col(row, 0, label)?;
        let labels: BTreeMap<String, String> = serde_json::from_str(col(row, 2, label)?).map_err(|e| corrupt(label, format!("series {id}"), e))?;
        let key = SeriesKey { counter: selector.counter.clone(), host: col(row, 1, label)?, labels };
        if selector.matches(&key) {
            out.push((id, key));
        }
    }
    Ok(out)
}

/// Numeric samples of one series in `[from, to]`, sorted by time.
fn raw_of(conn: &mut impl GenericClient, label: &str, id: i64, from: i64, to: i64) -> Result<Points> {
    let rows = conn
        .query("SELECT ts, value FROM samples WHERE series = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts", &[&id, &from, &to])
        .map_err(db_err(label))?;
    rows.iter().map(|r| Ok((col(r, 0, label)?, col(r, 1, label)?))).collect()
}

impl SampleStore for Session {
    fn append(&mut self, samples: &[Sample]) -> Result<()> {
        self.append_events(&[], samples)
    }

    fn append_events(&mut self, events: &[Event], samples: &[Sample]) -> Result<()> {
        let Session { conn, label, series_ids, .. } = self;
        let label = label.as_str();
        let db = db_err(label);
        let mut fresh = Vec::new();
        let mut tx = conn.get_mut().transaction().map_err(&db)?;
        for (key, (values, failures)) in by_series(samples) {
            let id = match series_ids.get(key) {
                Some(id) => *id,
                None => {
                    let id = series_id(&mut tx, label, key)?;
                    fresh.push((key.clone(), id));
                    id
                }
            };
            // One row per instant: a later sample at the same instant
            // replaces an earlier one, as a later append does.
            if !failures.is_empty() {
                let (ts, errors): (Vec<i64>, Vec<&str>) = failures.into_iter().collect::<BTreeMap<_, _>>().into_iter().unzip();
                tx.execute(
                    "INSERT INTO sample_failures (series, ts, error) SELECT $1, t, e FROM unnest($2::bigint[], $3::text[]) AS u(t, e)
                     ON CONFLICT (series, ts) DO UPDATE SET error = excluded.error",
                    &[&id, &ts, &errors],
                )
                .map_err(&db)?;
            }
            if !values.is_empty() {
                let (ts, vals): (Vec<i64>, Vec<f64>) = values.into_iter().collect::<BTreeMap<_, _>>().into_iter().unzip();
                tx.execute(
                    "INSERT INTO samples (series, ts, value) SELECT $1, t, v FROM unnest($2::bigint[], $3::float8[]) AS u(t, v)
                     ON CONFLICT (series, ts) DO UPDATE SET value = excluded.value",
                    &[&id, &ts, &vals],
                )
                .map_err(&db)?;
            }
        }
        if !events.is_empty() {
            // One row per event in the order given: ids (the order among
            // events of one instant) follow the array order.
            let sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
            let hosts: Vec<&str> = events.iter().map(|e| e.host.as_str()).collect();
            let ts: Vec<i64> = events.iter().map(|e| e.ts_ms).collect();
            let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
            tx.execute(
                "INSERT INTO events (source, host, ts, text)
                 SELECT s, h, t, x FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY AS u(s, h, t, x, n) ORDER BY n",
                &[&sources, &hosts, &ts, &texts],
            )
            .map_err(&db)?;
        }
        tx.commit().map_err(&db)?;
        // Only committed ids enter the cache.
        series_ids.extend(fresh);
        Ok(())
    }

    fn series(&self, selector: &Selector) -> Result<Vec<SeriesKey>> {
        Ok(select(&mut *self.conn.borrow_mut(), &self.label, selector)?.into_iter().map(|(_, k)| k).collect())
    }

    fn range(&self, query: &RangeQuery) -> Result<Vec<SeriesPoints>> {
        let label = &self.label;
        let conn = &mut *self.conn.borrow_mut();
        let end = query.to_ms.saturating_add(query.step_ms.max(1) - 1);
        let mut out = Vec::new();
        for (id, key) in select(conn, label, &query.selector)? {
            let raw = raw_of(conn, label, id, query.from_ms, end)?;
            let rows = conn
                .query("SELECT ts, sum, count FROM sample_rollups WHERE series = $1 AND ts >= $2 AND ts <= $3", &[&id, &query.from_ms, &end])
                .map_err(db_err(label))?;
            let rolled = rows
                .iter()
                .map(|r| Ok((col(r, 0, label)?, col(r, 1, label)?, col::<i64>(r, 2, label)?.max(0).unsigned_abs())))
                .collect::<Result<Vec<_>>>()?;
            out.push(SeriesPoints { series: key, points: bucketize(query, &raw, &rolled) });
        }
        Ok(out)
    }

    fn raw(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, Points)>> {
        let conn = &mut *self.conn.borrow_mut();
        select(conn, &self.label, selector)?.into_iter().map(|(id, key)| Ok((key, raw_of(conn, &self.label, id, from_ms, to_ms)?))).collect()
    }

    fn failures(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, i64, String)>> {
        let label = &self.label;
        let conn = &mut *self.conn.borrow_mut();
        let mut out = Vec::new();
        for (id, key) in select(conn, label, selector)? {
            let rows = conn
                .query("SELECT ts, error FROM sample_failures WHERE series = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts", &[&id, &from_ms, &to_ms])
                .map_err(db_err(label))?;
            for row in &rows {
                out.push((key.clone(), col(row, 0, label)?, col(row, 1, label)?));
            }
        }
        Ok(out)
    }

    fn latest(&self, selector: &Selector, at_ms: i64) -> Result<Vec<Latest>> {
        let label = &self.label;
        let db = db_err(label);
        let conn = &mut *self.conn.borrow_mut();
        let mut out = Vec::new();
        for (id, key) in select(conn, label, selector)? {
            let value = conn
                .query_opt("SELECT ts, value FROM samples WHERE series = $1 AND ts <= $2 ORDER BY ts DESC LIMIT 1", &[&id, &at_ms])
                .map_err(&db)?;
            let mut best = match value {
                Some(r) => Some((col::<i64>(&r, 0, label)?, SampleValue::Value(col(&r, 1, label)?))),
                None => None,
            };
            let failure = conn
                .query_opt("SELECT ts, error FROM sample_failures WHERE series = $1 AND ts <= $2 ORDER BY ts DESC LIMIT 1", &[&id, &at_ms])
                .map_err(&db)?;
            if let Some(r) = failure {
                let t: i64 = col(&r, 0, label)?;
                // at the same instant, the failure is what is shown
                if best.as_ref().is_none_or(|b| t >= b.0) {
                    best = Some((t, SampleValue::Error(col(&r, 1, label)?)));
                }
            }
            if let Some((ts_ms, value)) = best {
                out.push(Latest { series: key, ts_ms, value });
            }
        }
        Ok(out)
    }

    fn events(&self, source: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Event>> {
        let label = &self.label;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .conn
            .borrow_mut()
            .query(
                "SELECT source, host, ts, text FROM events WHERE source = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts, id LIMIT $4",
                &[&source, &from_ms, &to_ms, &limit],
            )
            .map_err(db_err(label))?;
        rows.iter()
            .map(|r| Ok(Event { source: col(r, 0, label)?, host: col(r, 1, label)?, ts_ms: col(r, 2, label)?, text: col(r, 3, label)? }))
            .collect()
    }

    fn maintain(&mut self, now_ms: i64, retention: &Retention) -> Result<MaintainReport> {
        let label = &self.label;
        let db = db_err(label);
        let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(millis(retention.raw));
        let step = millis(retention.rollup_step).max(1);
        let rollup_cutoff = now_ms.saturating_sub(millis(retention.rollup));
        let mut tx = self.conn.get_mut().transaction().map_err(&db)?;
        // Raw samples past retention become rollup buckets (merged into
        // buckets already there), in one statement.
        let row = tx
            .query_one(
                "WITH old AS (DELETE FROM samples WHERE ts < $1 RETURNING series, ts, value),
                      rolled AS (
                          INSERT INTO sample_rollups (series, ts, min, max, sum, count)
                          SELECT series, ts - ((ts % $2) + $2) % $2, min(value), max(value), sum(value), count(*) FROM old GROUP BY 1, 2
                          ON CONFLICT (series, ts) DO UPDATE SET
                              min = least(sample_rollups.min, excluded.min), max = greatest(sample_rollups.max, excluded.max),
                              sum = sample_rollups.sum + excluded.sum, count = sample_rollups.count + excluded.count
                          RETURNING 1)
                 SELECT (SELECT count(*) FROM old), (SELECT count(*) FROM rolled)",
                &[&cutoff, &step],
            )
            .map_err(&db)?;
        let count = |n: i64| n.max(0).unsigned_abs();
        let mut report = MaintainReport { rolled_up: count(col(&row, 0, label)?), ..MaintainReport::default() };
        report.dropped += tx.execute("DELETE FROM sample_failures WHERE ts < $1", &[&cutoff]).map_err(&db)?;
        report.dropped += tx.execute("DELETE FROM events WHERE ts < $1", &[&cutoff]).map_err(&db)?;
        report.rollups_dropped = tx.execute("DELETE FROM sample_rollups WHERE ts < $1", &[&rollup_cutoff]).map_err(&db)?;
        tx.commit().map_err(&db)?;
        tracing::debug!(path = %label, ?report, "sample store maintained");
        Ok(report)
    }
}

impl TraceStore for Session {
    fn put_trace(&mut self, t: &TraceTask) -> Result<()> {
        self.conn
            .get_mut()
            .execute(
                "INSERT INTO trace_tasks (id, counter, host, command, worker_pid, pid, started_ms, ended_ms, status, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET counter = excluded.counter, host = excluded.host, command = excluded.command,
                     worker_pid = excluded.worker_pid, pid = excluded.pid, started_ms = excluded.started_ms, ended_ms = excluded.ended_ms,
                     status = excluded.status, detail = excluded.detail",
                &[
                    &t.id,
                    &t.counter,
                    &t.host,
                    &t.command,
                    &t.worker_pid.map(i64::from),
                    &t.pid.map(i64::from),
                    &t.started_ms,
                    &t.ended_ms,
                    &t.status.as_str(),
                    &t.detail,
                ],
            )
            .map_err(db_err(&self.label))?;
        Ok(())
    }

    fn traces(&self) -> Result<Vec<TraceTask>> {
        let label = &self.label;
        let rows = self
            .conn
            .borrow_mut()
            .query(
                "SELECT id, counter, host, command, worker_pid, pid, started_ms, ended_ms, status, detail FROM trace_tasks ORDER BY started_ms DESC, id",
                &[],
            )
            .map_err(db_err(label))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: String = col(r, 0, label)?;
            let pid = |idx: usize| -> Result<Option<u32>> { col::<Option<i64>>(r, idx, label)?.map(|p| parse_u32(label, format!("trace task {id}"), p)).transpose() };
            out.push(TraceTask {
                counter: col(r, 1, label)?,
                host: col(r, 2, label)?,
                command: col(r, 3, label)?,
                worker_pid: pid(4)?,
                pid: pid(5)?,
                started_ms: col(r, 6, label)?,
                ended_ms: col(r, 7, label)?,
                status: parse_trace_status(label, &id, col(r, 8, label)?)?,
                detail: col(r, 9, label)?,
                id,
            });
        }
        Ok(out)
    }

    fn find_trace(&self, id: &str) -> Result<TraceTask> {
        crate::store::traces::pick(self.traces()?, id)
    }
}
