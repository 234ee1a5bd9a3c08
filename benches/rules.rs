//! Trigger evaluator benchmark (not a timed test): one `Engine::evaluate`
//! tick of 10,000 triggers over 1,000 series (100 hosts x 10 counters, one
//! sample every 10 s for 10 minutes). Target: under 50 ms per tick. Run with
//! `bench/rules.sh`, or:
//!
//! ```text
//! cargo bench --bench rules
//! ```
//!
//! The trigger mix: `last`, `avg` over 1m and 5m, `max`, `rate`, host and
//! group scope, `any`/`all` over a group, `and`/`or` inside one expression
//! and lists of conditions (`when: [a, b]`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use scaler::model::{Condition, Duration as Dur, Trigger};
use scaler::rules::{Engine, HostSet, Record, StateKind, Window};
use scaler::store::{Sample, SeriesKey};

const HOSTS: usize = 100;
const COUNTERS: usize = 10;
const GROUPS: usize = 10;
const TRIGGERS: usize = 10_000;
const STEP_MS: i64 = 10_000;
const SAMPLES: i64 = 60;
const NOW_MS: i64 = (SAMPLES - 1) * STEP_MS;

fn host(h: usize) -> String {
    format!("web-{h:03}")
}

/// 1,000 series, 60 samples each; counter `c0`..`c9`, hosts in 10 groups
/// `g0`..`g9` of 10 (plus each host's group alias), declared the way the
/// daemon declares them (lookback 3 x 10 s).
fn window() -> Arc<Window> {
    let mut w = Window::new();
    for c in 0..COUNTERS {
        w.declare(&format!("c{c}"), Some(3 * STEP_MS));
    }
    for g in 0..GROUPS {
        let members = (0..HOSTS).filter(|h| h % GROUPS == g).map(|h| vec![host(h)]).collect();
        w.groups.insert(format!("g{g}"), HostSet::new(members));
    }
    for c in 0..COUNTERS {
        for h in 0..HOSTS {
            let key = SeriesKey::new(&format!("c{c}"), &host(h));
            for i in 0..SAMPLES {
                // Monotonic-ish values between 0 and ~100, different per series.
                let v = ((h * 7 + c * 13) as f64 + i as f64 * 1.5) % 100.0;
                w.insert(&Sample::value(key.clone(), i * STEP_MS, v));
            }
        }
    }
    Arc::new(w)
}

/// The `i`-th trigger's condition(s): a realistic mix.
fn when(i: usize) -> Condition {
    let c = format!("c{}", i % COUNTERS);
    let h = host(i % HOSTS);
    let g = format!("g{}", i % GROUPS);
    let x = 20 + (i * 37) % 70;
    match i % 10 {
        0 => Condition::One(format!("last({c}, host=\"{h}\") > {x}")),
        1 => Condition::One(format!("avg({c}, over=\"1m\", host=\"{h}\") > {x}")),
        2 => Condition::One(format!("avg({c}, over=\"5m\", group=\"{g}\") > {x}")),
        3 => Condition::One(format!("max({c}, over=\"5m\", host=\"{h}\") >= {x}")),
        4 => Condition::One(format!("rate({c}, over=\"1m\", host=\"{h}\") > 1")),
        5 => Condition::One(format!("any({c}, gt={x}, group=\"{g}\")")),
        6 => Condition::One(format!("last({c}, host=\"{h}\") > {x} and avg({c}, over=\"1m\", host=\"{h}\") > {}", x / 2)),
        7 => Condition::One(format!("last({c}, host=\"{h}\") < 5 or max({c}, over=\"5m\", host=\"{h}\") > {x}")),
        8 => Condition::All(vec![format!("avg({c}, over=\"5m\", group=\"{g}\") > {x}"), format!("all({c}, ge=1, group=\"{g}\", agg=\"min\")")]),
        _ => Condition::All(vec![format!("last({c}, host=\"{h}\") > {x}"), format!("count({c}, over=\"1m\", host=\"{h}\") >= 5")]),
    }
}

fn triggers() -> Vec<Trigger> {
    (0..TRIGGERS)
        .map(|i| Trigger {
            name: format!("t{i:05}"),
            description: None,
            when: when(i),
            for_: Dur::parse("1m").ok(),
            cooldown: Dur::parse("5m").ok(),
            cooldown_up: None,
            cooldown_down: None,
            min_coverage: None,
            then: vec![],
        })
        .collect()
}

/// Mean wall and CPU (user + system) milliseconds of `f` over `n` runs.
fn timed(n: u32, mut f: impl FnMut()) -> (f64, f64) {
    let cpu_now = || {
        let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 * 1e3 + tv.tv_usec() as f64 / 1e3;
        t(u.user_time()) + t(u.system_time())
    };
    let (w0, c0) = (Instant::now(), cpu_now());
    for _ in 0..n {
        f();
    }
    (w0.elapsed().as_secs_f64() * 1e3 / f64::from(n), (cpu_now() - c0) / f64::from(n))
}

fn main() {
    let started = Instant::now();
    let w = window();
    let list = triggers();
    let engine = Engine::compile(&list).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    println!(
        "setup: {} series, {} points, {} triggers in {:.2?}",
        HOSTS * COUNTERS,
        w.len(),
        engine.triggers.len(),
        started.elapsed()
    );

    // The state a running daemon would hold: the records of the previous tick.
    let prev: HashMap<String, Record> = engine
        .evaluate(NOW_MS - STEP_MS, &w, &HashMap::new())
        .into_iter()
        .map(|ev| (engine.triggers[ev.index].name.clone(), ev.record))
        .collect();

    // A sanity check that the bench measures evaluation, not error paths.
    let evals = engine.evaluate(NOW_MS, &w, &prev);
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for ev in &evals {
        *by_state.entry(format!("{:?}", ev.record.state.state)).or_default() += 1;
    }
    let states: Vec<String> = by_state.iter().map(|(k, n)| format!("{k}={n}")).collect();
    println!("states after one tick: {}", states.join(" "));
    let bad = evals.iter().filter(|e| matches!(e.record.state.state, StateKind::Error | StateKind::NoData)).count();
    assert_eq!(bad, 0, "every trigger should evaluate to a value: {:?}", evals.iter().find(|e| e.record.state.reason.is_some()));

    // `cargo test --all-targets` runs this binary without `--bench`: one
    // tick above is the smoke test; the timing needs `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("rules benchmark runs with `bench/rules.sh` (cargo bench); skipped the timing");
        return;
    }
    // CPU time per tick (the machine is shared: wall time includes waiting
    // for a core), for the whole mix and per kind of trigger (i % 10).
    let ticks = 20;
    let (wall, cpu) = timed(ticks, || drop(engine.evaluate(NOW_MS, &w, &prev)));
    println!("whole mix: {wall:.1} ms wall, {cpu:.1} ms CPU per tick (mean of {ticks})");
    for kind in 0..10 {
        let part: Vec<&Trigger> = list.iter().enumerate().filter(|(i, _)| i % 10 == kind).map(|(_, t)| t).collect();
        let e = Engine::compile(part.iter().copied()).unwrap_or_else(|e| panic!("{}", e.join("\n")));
        let (wall, cpu) = timed(ticks, || drop(e.evaluate(NOW_MS, &w, &prev)));
        println!("kind {kind} ({} triggers, e.g. {:?}): {wall:.2} ms wall, {cpu:.2} ms CPU per tick", e.triggers.len(), e.triggers[0].spec.when);
    }

    let mut c = Criterion::default().configure_from_args().sample_size(20).warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(10));
    c.bench_function("evaluate_10000_triggers_1000_series", |b| b.iter(|| engine.evaluate(NOW_MS, &w, &prev)));
    c.final_summary();
}
