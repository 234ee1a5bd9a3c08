//! The read API behind the web UI, over real HTTP on loopback (not timed
//! tests): the series endpoint for one week of one series downsampled to
//! 1,000 points, and the five calls of the UI's overview with 1,000 nodes and
//! 1,000 triggers. Run with:
//!
//! ```text
//! cargo bench --bench api
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use criterion::Criterion;
use scaler::api::{ApiState, DaemonInfo, Metrics};
use scaler::store::{Location, Mutation, NodeRecord, NodeStatus, Sample, SeriesKey};

const TOKEN: &str = "bench-token-0123456789";
const WEEK: i64 = 7 * 86_400_000;

fn config(dir: &std::path::Path) {
    let mut y = String::from(
        "kind: Project\nname: bench\n---\nkind: NodeTemplate\nname: t\nprovider: local\nlocal: { command: exec sleep 600 }\n---\n\
         kind: Group\nname: web\ntemplate: t\nmin: 0\nmax: 1000\ndesired: 1000\n---\nkind: Target\nname: web\ngroup: web\n---\n\
         kind: Counter\nname: week\nsource: { push: {} }\n---\nkind: Counter\nname: q\nsource: { push: {} }\n",
    );
    for i in 0..1000 {
        y.push_str(&format!("---\nkind: Trigger\nname: t{i:04}\nwhen: last(q) > {i}\nfor: 1m\nthen:\n  - scale: {{ group: web, by: 1 }}\n"));
    }
    std::fs::write(dir.join("scaler.yaml"), y).unwrap();
}

/// One GET on a new connection; the body's length (after checking the status).
fn get(port: u16, path: &str) -> usize {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nauthorization: Bearer {TOKEN}\r\nconnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200"), "{path}: {}", String::from_utf8_lossy(&raw[..raw.len().min(300)]));
    raw.len()
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    config(dir.path());
    let cfg = scaler::config::load(dir.path()).unwrap_or_else(|d| panic!("{d:?}"));
    let store = scaler::store::open(&Location::parse(None, dir.path()).unwrap()).unwrap();
    let now = chrono::Utc::now();
    let nodes: Vec<Mutation> = (1..=1000u32)
        .map(|i| {
            Mutation::PutNode(NodeRecord {
                name: format!("web-{i:04}"),
                group: "web".into(),
                index: i,
                provider: "local".into(),
                provider_id: Some(i.to_string()),
                status: NodeStatus::Running,
                created_at: now,
                template_digest: "d".into(),
                address: Some(format!("127.0.0.1:{}", 20000 + i)),
                attrs: serde_json::json!({}),
            })
        })
        .collect();
    store.run_blocking(|db| db.commit(&nodes)).unwrap();
    // one week at 10 s of one series (60,480 samples), ending now
    let t_end = now.timestamp_millis();
    let t0 = t_end - WEEK;
    let key = SeriesKey::new("week", "h1");
    let samples: Vec<Sample> = (0..60_480i64).map(|i| Sample::value(key.clone(), t0 + i * 10_000, (i % 97) as f64)).collect();
    store.run_blocking(|db| db.append(&samples)).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = ApiState {
        config: Arc::new(cfg),
        store,
        token: TOKEN.to_string().into(),
        read_token: None,
        clock: scaler::clock::system(),
        metrics: Arc::new(Metrics::default()),
        daemon: Arc::new(DaemonInfo { started_ms: t_end, roles: vec!["evaluate"], workers: 1, listen: format!("127.0.0.1:{port}") }),
        work: None,
        hooks: None,
        fetches: None,
    };
    let app = scaler::api::guard(scaler::api::router(state.clone()), &state);
    rt.spawn(async move { axum::serve(listener, app).await });

    let mut c = Criterion::default().configure_from_args();
    let series = format!("/api/v1/series?counter=week&host=h1&from={t0}&to={t_end}&step={}", WEEK / 1000);
    let body = get(port, &series);
    c.bench_function(&format!("series_1_week_to_1000_points ({body} bytes)"), |b| b.iter(|| get(port, &series)));
    // what the overview page asks for (it pages through 500 at a time)
    let overview = [
        "/api/v1/status",
        "/api/v1/groups?limit=500",
        "/api/v1/nodes?limit=500",
        "/api/v1/nodes?limit=500&after=web-0500",
        "/api/v1/triggers?limit=500",
        "/api/v1/triggers?limit=500&after=t0499",
        "/api/v1/jobs?limit=10",
    ];
    let bytes: usize = overview.iter().map(|p| get(port, p)).sum();
    c.bench_function(&format!("overview_1000_nodes_1000_triggers ({} calls, {bytes} bytes)", overview.len()), |b| {
        b.iter(|| overview.iter().map(|p| get(port, p)).sum::<usize>())
    });
    c.final_summary();
}
