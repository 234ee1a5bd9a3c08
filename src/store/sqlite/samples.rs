//! [`SampleStore`] on SQLite.
//!
//! Appends go to `sample_head` (one row per sample, durable on commit: WAL,
//! so a `kill -9` keeps every committed sample). [`SampleStore::maintain`]
//! seals a series' head into a pco-compressed chunk once it holds
//! [`CHUNK_MAX`] samples or its oldest is [`SEAL_AGE_MS`] old. A batch that
//! brings at least [`CHUNK_MAX`] newer-than-stored samples of one series
//! (backfill, bulk import) is sealed at once instead. Past raw retention,
//! chunks are downsampled into `sample_rollups` buckets and deleted.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::{db_err, SqliteStore};
use crate::store::codec;
use crate::store::samples::{bucketize, by_series, Event, Latest, MaintainReport, RangeQuery, Retention, Sample, SampleStore, SampleValue, SeriesKey, SeriesPoints, Selector};
use crate::store::{Result, StoreError};

/// Samples per sealed chunk (at most).
pub const CHUNK_MAX: usize = 1024;
/// A head older than this is sealed even when short (ms).
pub const SEAL_AGE_MS: i64 = 3 * 3600 * 1000;

fn codec_err(label: &str) -> impl Fn(codec::CodecError) -> StoreError + '_ {
    move |source| StoreError::Codec { path: label.to_owned(), source }
}

fn labels_json(key: &SeriesKey) -> String {
    serde_json::to_string(&key.labels).unwrap_or_else(|_| "{}".into())
}

fn series_id(tx: &Transaction<'_>, label: &str, known: &HashMap<SeriesKey, i64>, key: &SeriesKey, fresh: &mut HashMap<SeriesKey, i64>) -> Result<i64> {
    if let Some(id) = known.get(key).or_else(|| fresh.get(key)) {
        return Ok(*id);
    }
    let db = db_err(label);
    let labels = labels_json(key);
    tx.execute(
        "INSERT INTO series (counter, host, labels) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        params![key.counter, key.host, labels],
    )
    .map_err(&db)?;
    let id: i64 = tx
        .query_row(
            "SELECT id FROM series WHERE counter = ?1 AND host = ?2 AND labels = ?3",
            params![key.counter, key.host, labels],
            |r| r.get(0),
        )
        .map_err(&db)?;
    fresh.insert(key.clone(), id);
    Ok(id)
}

fn stored_last_ts(tx: &Transaction<'_>, label: &str, known: &HashMap<i64, i64>, id: i64) -> Result<i64> {
    if let Some(ts) = known.get(&id) {
        return Ok(*ts);
    }
    let db = db_err(label);
    let head: Option<i64> = tx.query_row("SELECT max(ts) FROM sample_head WHERE series = ?1", [id], |r| r.get(0)).map_err(&db)?;
    let chunk: Option<i64> = tx.query_row("SELECT max(end_ts) FROM sample_chunks WHERE series = ?1", [id], |r| r.get(0)).map_err(&db)?;
    Ok(head.max(chunk).unwrap_or(i64::MIN))
}

impl SqliteStore {
    /// The ids and keys of the series a selector matches.
    fn select(&self, selector: &Selector) -> Result<Vec<(i64, SeriesKey)>> {
        select(&self.conn, &self.label, selector)
    }

    /// Numeric samples of one series in `[from, to]`: chunks and head, sorted.
    fn raw_of(&self, id: i64, from: i64, to: i64) -> Result<Vec<(i64, f64)>> {
        raw_of(&self.conn, &self.label, id, from, to)
    }
}

fn select(conn: &Connection, label: &str, selector: &Selector) -> Result<Vec<(i64, SeriesKey)>> {
    let db = db_err(label);
    let mut stmt = conn
        .prepare_cached("SELECT id, host, labels FROM series WHERE counter = ?1 ORDER BY host, labels")
        .map_err(&db)?;
    let rows = stmt
        .query_map([&selector.counter], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .map_err(&db)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, host, labels) = row.map_err(&db)?;
        let labels: BTreeMap<String, String> = serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt {
            path: label.to_owned(),
            what: format!("series {id}"),
            detail: e.to_string(),
        })?;
        let key = SeriesKey { counter: selector.counter.clone(), host, labels };
        if selector.matches(&key) {
            out.push((id, key));
        }
    }
    Ok(out)
}

fn raw_of(conn: &Connection, label: &str, id: i64, from: i64, to: i64) -> Result<Vec<(i64, f64)>> {
    let db = db_err(label);
    let cerr = codec_err(label);
    let mut out = Vec::new();
    let mut chunks = conn
        .prepare_cached("SELECT ts, vals FROM sample_chunks WHERE series = ?1 AND end_ts >= ?2 AND start_ts <= ?3 ORDER BY start_ts")
        .map_err(&db)?;
    let mut rows = chunks.query(params![id, from, to]).map_err(&db)?;
    while let Some(row) = rows.next().map_err(&db)? {
        let ts = codec::decode_ts(row.get_ref(0).map_err(&db)?.as_blob().map_err(|e| db(e.into()))?).map_err(&cerr)?;
        let vals = codec::decode_values(row.get_ref(1).map_err(&db)?.as_blob().map_err(|e| db(e.into()))?).map_err(&cerr)?;
        out.extend(ts.into_iter().zip(vals).filter(|(t, _)| *t >= from && *t <= to));
    }
    let mut head = conn
        .prepare_cached("SELECT ts, value FROM sample_head WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts")
        .map_err(&db)?;
    let rows = head.query_map(params![id, from, to], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&db)?;
    let before = out.len();
    for row in rows {
        out.push(row.map_err(&db)?);
    }
    if before > 0 && out.len() > before {
        out.sort_by_key(|p| p.0);
    }
    Ok(out)
}

fn write_chunks(tx: &Transaction<'_>, label: &str, id: i64, pts: &[(i64, f64)]) -> Result<()> {
    let db = db_err(label);
    let cerr = codec_err(label);
    let mut stmt = tx
        .prepare_cached("INSERT INTO sample_chunks (series, start_ts, end_ts, count, ts, vals) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        .map_err(&db)?;
    for chunk in pts.chunks(CHUNK_MAX) {
        let ts: Vec<i64> = chunk.iter().map(|p| p.0).collect();
        let vals: Vec<f64> = chunk.iter().map(|p| p.1).collect();
        let (start, end) = (ts.iter().min().copied().unwrap_or(0), ts.iter().max().copied().unwrap_or(0));
        stmt.execute(params![id, start, end, chunk.len() as i64, codec::encode_ts(&ts).map_err(&cerr)?, codec::encode_values(&vals).map_err(&cerr)?])
            .map_err(&db)?;
    }
    Ok(())
}

impl SampleStore for SqliteStore {
    fn append(&mut self, samples: &[Sample]) -> Result<()> {
        self.append_events(&[], samples)
    }

    fn append_events(&mut self, events: &[Event], samples: &[Sample]) -> Result<()> {
        let SqliteStore { conn, label, series_ids, last_ts, .. } = self;
        let label = label.as_str();
        let db = db_err(label);
        let groups = by_series(samples);
        let mut fresh = HashMap::new();
        let mut last = HashMap::new();
        {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&db)?;
            for (key, (values, failures)) in groups {
                let id = series_id(&tx, label, series_ids, key, &mut fresh)?;
                if !failures.is_empty() {
                    let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO sample_failures (series, ts, error) VALUES (?1, ?2, ?3)").map_err(&db)?;
                    for (ts, e) in failures {
                        stmt.execute(params![id, ts, e]).map_err(&db)?;
                    }
                }
                if values.is_empty() {
                    continue;
                }
                let stored = stored_last_ts(&tx, label, last_ts, id)?;
                let increasing = values.windows(2).all(|w| w[0].0 < w[1].0);
                let newest = values.iter().map(|p| p.0).max().unwrap_or(i64::MIN);
                if values.len() >= CHUNK_MAX && increasing && values[0].0 > stored {
                    write_chunks(&tx, label, id, &values)?;
                } else {
                    let mut stmt = tx.prepare_cached("INSERT OR REPLACE INTO sample_head (series, ts, value) VALUES (?1, ?2, ?3)").map_err(&db)?;
                    for (ts, v) in &values {
                        stmt.execute(params![id, ts, v]).map_err(&db)?;
                    }
                }
                last.insert(id, stored.max(newest));
            }
            if !events.is_empty() {
                let mut stmt = tx.prepare_cached("INSERT INTO events (source, host, ts, text) VALUES (?1, ?2, ?3, ?4)").map_err(&db)?;
                for e in events {
                    stmt.execute(params![e.source, e.host, e.ts_ms, e.text]).map_err(&db)?;
                }
            }
            tx.commit().map_err(&db)?;
        }
        // Only committed ids and times enter the caches.
        series_ids.extend(fresh);
        last_ts.extend(last);
        Ok(())
    }

    fn series(&self, selector: &Selector) -> Result<Vec<SeriesKey>> {
        Ok(self.select(selector)?.into_iter().map(|(_, k)| k).collect())
    }

    fn range(&self, query: &RangeQuery) -> Result<Vec<SeriesPoints>> {
        let db = db_err(&self.label);
        // `[from, to)`: the last millisecond read is `to - 1`.
        let end = query.to_ms.saturating_sub(1);
        let mut out = Vec::new();
        for (id, key) in self.select(&query.selector)? {
            let raw = self.raw_of(id, query.from_ms, end)?;
            let mut stmt = self
                .conn
                .prepare_cached("SELECT ts, sum, count FROM sample_rollups WHERE series = ?1 AND ts >= ?2 AND ts <= ?3")
                .map_err(&db)?;
            let rolled = stmt
                .query_map(params![id, query.from_ms, end], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)))
                .map_err(&db)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(&db)?;
            out.push(SeriesPoints { series: key, points: bucketize(query, &raw, &rolled) });
        }
        Ok(out)
    }

    fn raw(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, crate::store::samples::Points)>> {
        self.select(selector)?
            .into_iter()
            .map(|(id, key)| Ok((key, self.raw_of(id, from_ms, to_ms)?)))
            .collect()
    }

    fn failures(&self, selector: &Selector, from_ms: i64, to_ms: i64) -> Result<Vec<(SeriesKey, i64, String)>> {
        let db = db_err(&self.label);
        let mut out = Vec::new();
        for (id, key) in self.select(selector)? {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT ts, error FROM sample_failures WHERE series = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts")
                .map_err(&db)?;
            let rows = stmt.query_map(params![id, from_ms, to_ms], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&db)?;
            for row in rows {
                let (ts, e) = row.map_err(&db)?;
                out.push((key.clone(), ts, e));
            }
        }
        Ok(out)
    }

    fn latest(&self, selector: &Selector, at_ms: i64) -> Result<Vec<Latest>> {
        let db = db_err(&self.label);
        let cerr = codec_err(&self.label);
        let mut out = Vec::new();
        for (id, key) in self.select(selector)? {
            let head: Option<(i64, f64)> = self
                .conn
                .query_row("SELECT ts, value FROM sample_head WHERE series = ?1 AND ts <= ?2 ORDER BY ts DESC LIMIT 1", params![id, at_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(&db)?;
            let mut best: Option<(i64, SampleValue)> = head.map(|(t, v)| (t, SampleValue::Value(v)));
            let chunk: Option<(Vec<u8>, Vec<u8>)> = self
                .conn
                .query_row(
                    "SELECT ts, vals FROM sample_chunks WHERE series = ?1 AND start_ts <= ?2 ORDER BY end_ts DESC LIMIT 1",
                    params![id, at_ms],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(&db)?;
            if let Some((ts, vals)) = chunk {
                let ts = codec::decode_ts(&ts).map_err(&cerr)?;
                let vals = codec::decode_values(&vals).map_err(&cerr)?;
                if let Some((t, v)) = ts.into_iter().zip(vals).filter(|(t, _)| *t <= at_ms).max_by_key(|p| p.0) {
                    if best.as_ref().is_none_or(|b| t > b.0) {
                        best = Some((t, SampleValue::Value(v)));
                    }
                }
            }
            let failure: Option<(i64, String)> = self
                .conn
                .query_row("SELECT ts, error FROM sample_failures WHERE series = ?1 AND ts <= ?2 ORDER BY ts DESC LIMIT 1", params![id, at_ms], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
                .map_err(&db)?;
            if let Some((t, e)) = failure {
                if best.as_ref().is_none_or(|b| t >= b.0) {
                    best = Some((t, SampleValue::Error(e)));
                }
            }
            if let Some((ts_ms, value)) = best {
                out.push(Latest { series: key, ts_ms, value });
            }
        }
        Ok(out)
    }

    fn events(&self, source: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Event>> {
        let db = db_err(&self.label);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT source, host, ts, text FROM events WHERE source = ?1 AND ts >= ?2 AND ts <= ?3 ORDER BY ts, id LIMIT ?4")
            .map_err(&db)?;
        let rows = stmt
            .query_map(params![source, from_ms, to_ms, limit as i64], |r| {
                Ok(Event { source: r.get(0)?, host: r.get(1)?, ts_ms: r.get(2)?, text: r.get(3)? })
            })
            .map_err(&db)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&db)
    }

    fn maintain(&mut self, now_ms: i64, retention: &Retention) -> Result<MaintainReport> {
        let label = self.label.clone();
        let db = db_err(&label);
        let cerr = codec_err(&label);
        let mut report = MaintainReport::default();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(&db)?;
        // 1. seal heads that are long or old enough
        let due: Vec<i64> = {
            let mut stmt = tx
                .prepare("SELECT series FROM sample_head GROUP BY series HAVING count(*) >= ?1 OR min(ts) <= ?2")
                .map_err(&db)?;
            let rows = stmt.query_map(params![CHUNK_MAX as i64, now_ms - SEAL_AGE_MS], |r| r.get(0)).map_err(&db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&db)?
        };
        for id in due {
            let pts: Vec<(i64, f64)> = {
                let mut stmt = tx.prepare_cached("SELECT ts, value FROM sample_head WHERE series = ?1 ORDER BY ts").map_err(&db)?;
                let rows = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?))).map_err(&db)?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&db)?
            };
            write_chunks(&tx, &label, id, &pts)?;
            tx.execute("DELETE FROM sample_head WHERE series = ?1", [id]).map_err(&db)?;
            report.sealed += pts.len() as u64;
        }
        // 2. downsample raw data past retention
        let cutoff = now_ms.saturating_sub(retention.raw.as_millis() as i64);
        let step = (retention.rollup_step.as_millis() as i64).max(1);
        let old: Vec<(i64, i64, Vec<u8>, Vec<u8>)> = {
            let mut stmt = tx.prepare("SELECT id, series, ts, vals FROM sample_chunks WHERE end_ts < ?1").map_err(&db)?;
            let rows = stmt.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).map_err(&db)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(&db)?
        };
        for (chunk, series, ts, vals) in old {
            let ts = codec::decode_ts(&ts).map_err(&cerr)?;
            let vals = codec::decode_values(&vals).map_err(&cerr)?;
            let mut buckets: BTreeMap<i64, (f64, f64, f64, i64)> = BTreeMap::new();
            for (t, v) in ts.iter().zip(&vals) {
                let b = buckets.entry(t.div_euclid(step) * step).or_insert((f64::INFINITY, f64::NEG_INFINITY, 0.0, 0));
                b.0 = b.0.min(*v);
                b.1 = b.1.max(*v);
                b.2 += v;
                b.3 += 1;
            }
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO sample_rollups (series, ts, min, max, sum, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (series, ts) DO UPDATE SET min = min(min, excluded.min), max = max(max, excluded.max),
                     sum = sum + excluded.sum, count = count + excluded.count",
                )
                .map_err(&db)?;
            for (b, (mn, mx, sum, n)) in buckets {
                stmt.execute(params![series, b, mn, mx, sum, n]).map_err(&db)?;
            }
            tx.execute("DELETE FROM sample_chunks WHERE id = ?1", [chunk]).map_err(&db)?;
            report.rolled_up += ts.len() as u64;
        }
        // 3. drop what is past retention
        report.dropped += tx.execute("DELETE FROM sample_failures WHERE ts < ?1", [cutoff]).map_err(&db)? as u64;
        report.dropped += tx.execute("DELETE FROM events WHERE ts < ?1", [cutoff]).map_err(&db)? as u64;
        let rollup_cutoff = now_ms.saturating_sub(retention.rollup.as_millis() as i64);
        report.rollups_dropped = tx.execute("DELETE FROM sample_rollups WHERE ts < ?1", [rollup_cutoff]).map_err(&db)? as u64;
        tx.commit().map_err(&db)?;
        tracing::debug!(path = %label, ?report, "sample store maintained");
        Ok(report)
    }
}

/// Storage figures of the sample tables, for benchmarks and `scaler query --stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SampleStats {
    /// Samples in sealed chunks.
    pub chunk_samples: u64,
    /// Bytes of the compressed chunk columns.
    pub chunk_bytes: u64,
    /// Samples in the head.
    pub head_samples: u64,
}

impl SqliteStore {
    /// Storage figures of the sample tables.
    pub fn sample_stats(&self) -> Result<SampleStats> {
        let db = db_err(&self.label);
        let (chunk_samples, chunk_bytes): (i64, i64) = self
            .conn
            .query_row("SELECT coalesce(sum(count), 0), coalesce(sum(length(ts) + length(vals)), 0) FROM sample_chunks", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(&db)?;
        let head: i64 = self.conn.query_row("SELECT count(*) FROM sample_head", [], |r| r.get(0)).map_err(&db)?;
        Ok(SampleStats { chunk_samples: chunk_samples as u64, chunk_bytes: chunk_bytes as u64, head_samples: head as u64 })
    }
}

fn trace_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(crate::store::TraceTask, String)> {
    let status: String = r.get(8)?;
    Ok((
        crate::store::TraceTask {
            id: r.get(0)?,
            counter: r.get(1)?,
            host: r.get(2)?,
            command: r.get(3)?,
            worker_pid: r.get(4)?,
            pid: r.get(5)?,
            started_ms: r.get(6)?,
            ended_ms: r.get(7)?,
            status: crate::store::TraceStatus::Running,
            detail: r.get(9)?,
        },
        status,
    ))
}

impl crate::store::TraceStore for SqliteStore {
    fn put_trace(&mut self, t: &crate::store::TraceTask) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO trace_tasks (id, counter, host, command, worker_pid, pid, started_ms, ended_ms, status, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![t.id, t.counter, t.host, t.command, t.worker_pid, t.pid, t.started_ms, t.ended_ms, t.status.as_str(), t.detail],
            )
            .map_err(db_err(&self.label))?;
        Ok(())
    }

    fn traces(&self) -> Result<Vec<crate::store::TraceTask>> {
        let db = db_err(&self.label);
        let mut stmt = self
            .conn
            .prepare("SELECT id, counter, host, command, worker_pid, pid, started_ms, ended_ms, status, detail FROM trace_tasks ORDER BY started_ms DESC, id")
            .map_err(&db)?;
        let rows = stmt.query_map([], trace_row).map_err(&db)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut task, status) = row.map_err(&db)?;
            task.status = crate::store::rows::parse_trace_status(&self.label, &task.id, &status)?;
            out.push(task);
        }
        Ok(out)
    }

    fn find_trace(&self, id: &str) -> Result<crate::store::TraceTask> {
        crate::store::traces::pick(self.traces()?, id)
    }
}
