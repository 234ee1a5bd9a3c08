//! Time-series store benchmarks (not timed tests): ingest rate, bytes per
//! sample on the shared realistic data set, and a 1-week range query
//! downsampled to 1,000 points. Run with `bench/tsdb.sh` (it generates the
//! data with `../shared/bench/tsdb/gen_samples.py`), or:
//!
//! ```text
//! SCALER_BENCH_SAMPLES=/tmp/samples.jsonl cargo bench --bench tsdb
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use scaler::store::{RangeQuery, Retention, Sample, SampleStore, SeriesKey, Selector, SqliteStore};

const T0: i64 = 1_704_067_200_000;

/// One series of the shared data set: kind and samples.
struct Series {
    name: String,
    kind: String,
    ts: Vec<i64>,
    values: Vec<f64>,
}

fn load(path: &str) -> Vec<Series> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}; run bench/tsdb.sh"));
    std::io::BufReader::new(file)
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            Series {
                name: v["metric"]["series"].as_str().unwrap().to_string(),
                kind: v["metric"]["kind"].as_str().unwrap().to_string(),
                ts: v["timestamps"].as_array().unwrap().iter().map(|t| t.as_i64().unwrap()).collect(),
                values: v["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect(),
            }
        })
        .collect()
}

fn samples_of(series: &Series, counter: &str) -> Vec<Sample> {
    let key = SeriesKey::new(counter, &format!("host-{}", series.name));
    series.ts.iter().zip(&series.values).map(|(t, v)| Sample::value(key.clone(), *t, *v)).collect()
}

fn fresh() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let st = SqliteStore::open(&dir.path().join("state.db")).unwrap();
    (dir, st)
}

/// Bytes per sample, per kind, through both paths: bulk batches (sealed at
/// once) and the live path (one sample per series per append, sealed by
/// `maintain` every 1,024 samples).
fn compression(data: &[Series]) {
    for kind in ["counter", "gauge", "const", "all"] {
        let chosen: Vec<&Series> = data.iter().filter(|s| kind == "all" || s.kind == kind).collect();
        let (_dir, mut st) = fresh();
        for s in &chosen {
            st.append(&samples_of(s, "bench")).unwrap();
        }
        // seal what is left in the heads (nothing is past raw retention)
        let newest = chosen.iter().filter_map(|s| s.ts.last()).max().copied().unwrap_or(T0);
        st.maintain(newest + 86_400_000, &Retention::default()).unwrap();
        let stats = st.sample_stats().unwrap();
        println!(
            "compression kind={kind:8} series={:4} samples={:9} chunk_bytes={:9} bytes/sample={:.3}",
            chosen.len(),
            stats.chunk_samples,
            stats.chunk_bytes,
            stats.chunk_bytes as f64 / stats.chunk_samples.max(1) as f64
        );
    }
    // the live path on a subset: 30 series, one sample of each per append
    let chosen: Vec<&Series> = data.iter().take(30).collect();
    let (_dir, mut st) = fresh();
    let n = chosen.iter().map(|s| s.ts.len()).min().unwrap_or(0);
    let keys: Vec<SeriesKey> = chosen.iter().map(|s| SeriesKey::new("live", &format!("host-{}", s.name))).collect();
    for i in 0..n {
        let batch: Vec<Sample> = chosen.iter().zip(&keys).map(|(s, k)| Sample::value(k.clone(), s.ts[i], s.values[i])).collect();
        st.append(&batch).unwrap();
        if i % 1024 == 1023 {
            st.maintain(chosen[0].ts[i], &Retention::default()).unwrap();
        }
    }
    let stats = st.sample_stats().unwrap();
    println!(
        "compression live path: series=30 sealed={} head={} bytes/sample(sealed)={:.3}",
        stats.chunk_samples,
        stats.head_samples,
        stats.chunk_bytes as f64 / stats.chunk_samples.max(1) as f64
    );
}

fn main() {
    // `cargo test --all-targets` runs this binary without `--bench`: the
    // benchmarks need the generated data set and minutes, so they only run
    // under `cargo bench` (bench/tsdb.sh).
    if !std::env::args().any(|a| a == "--bench") {
        println!("tsdb benchmarks run with `bench/tsdb.sh` (cargo bench); skipped");
        return;
    }
    let path = std::env::var("SCALER_BENCH_SAMPLES").unwrap_or_else(|_| "/tmp/scaler-bench-samples.jsonl".into());
    let data = load(&path);
    compression(&data);

    let mut c = Criterion::default().configure_from_args().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));

    // ingest: 1,000,000 samples (100 series x 10,000) in batches of 10,000
    let batches: Vec<Vec<Sample>> = data.iter().take(100).map(|s| samples_of(s, "ingest")).collect();
    let total: usize = batches.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(total as u64));
    g.bench_function(format!("bulk_{total}_samples"), |b| {
        b.iter_batched(
            fresh,
            |(_dir, mut st)| {
                for batch in &batches {
                    st.append(batch).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    // live path: 1,000 series, one sample each per append (head rows)
    let live: Vec<Vec<Sample>> = (0..100i64)
        .map(|i| (0..1000).map(|h| Sample::value(SeriesKey::new("live", &format!("h{h}")), T0 + i * 10_000, (h + i) as f64)).collect())
        .collect();
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("live_100x1000_samples", |b| {
        b.iter_batched(
            fresh,
            |(_dir, mut st)| {
                for batch in &live {
                    st.append(batch).unwrap();
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // query: one series, one week at 10 s (60,480 samples), 1,000 points
    let (_dir, mut st) = fresh();
    let week = 7 * 86_400_000i64;
    let src = data.iter().find(|s| s.kind == "gauge").unwrap();
    let key = SeriesKey::new("week", "h1");
    let samples: Vec<Sample> = (0..60_480i64).map(|i| Sample::value(key.clone(), T0 + i * 10_000, src.values[i as usize % src.values.len()])).collect();
    st.append(&samples).unwrap();
    // and 99 other series of the same counter on other hosts
    for h in 0..99 {
        let k = SeriesKey::new("week", &format!("other{h}"));
        st.append(&(0..2048i64).map(|i| Sample::value(k.clone(), T0 + i * 10_000, 1.0)).collect::<Vec<_>>()).unwrap();
    }
    let q = RangeQuery { selector: Selector::counter("week").host("h1"), from_ms: T0, to_ms: T0 + week - 1, step_ms: week / 1000 };
    let points = st.range(&q).unwrap()[0].points.len();
    c.bench_function(&format!("range_1_week_to_{points}_points"), |b| b.iter(|| st.range(&q).unwrap()));
    c.final_summary();
}
