//! The trigger evaluator: on every tick of the evaluation interval, and at
//! every receipt instant of a passive sample (for the triggers that read
//! one), one pure [`step`] (records + window + now -> new records, states to
//! save, jobs to enqueue), then one store transaction that saves the states
//! with the jobs of the fires.
//!
//! Time comes from the injected [`crate::clock::Clock`], so the loop runs
//! on paused tokio time in tests.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::{next_tick, DaemonError, SharedWindow};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::fleet::Fleet;
use crate::rules::{Engine, Record, Window};
use crate::store::{Backend, NewJob, StateStore, TriggerRecord};

/// What every job of a fire carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    /// The config revision the fire happened under.
    pub revision: Option<String>,
    /// Tries before a job is dead-lettered.
    pub max_attempts: u32,
}

/// The result of one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// The record of every evaluated trigger after the step.
    pub records: HashMap<String, Record>,
    /// The trigger states to save (changed, fired, or never saved).
    pub states: Vec<TriggerRecord>,
    /// The jobs of the fires, saved in the same transaction.
    pub jobs: Vec<NewJob>,
}

/// Evaluates every trigger at `now` over `window`, from `records` (the
/// last saved state). Pure: no IO, no clock.
pub fn step(engine: &Engine, window: &Arc<Window>, records: &HashMap<String, Record>, now: i64, job: &JobSettings) -> Step {
    step_where(engine, window, records, now, job, |_| true)
}

/// [`step`] for the triggers `which` picks (at a receipt instant: those that
/// read a passive counter).
pub fn step_where(
    engine: &Engine,
    window: &Arc<Window>,
    records: &HashMap<String, Record>,
    now: i64,
    job: &JobSettings,
    which: impl Fn(&crate::rules::CompiledTrigger) -> bool,
) -> Step {
    let mut out = Step::default();
    for ev in engine.evaluate_where(now, window, records, which) {
        let t = &engine.triggers[ev.index];
        let saved_before = records.contains_key(&t.name);
        if ev.changed || ev.fire.is_some() || !saved_before {
            out.states.push(TriggerRecord {
                name: t.name.clone(),
                key: String::new(),
                state: serde_json::to_value(&ev.record).unwrap_or(serde_json::Value::Null),
                updated_ms: now,
            });
        }
        if let Some(why) = &ev.fire {
            out.jobs.push(NewJob {
                key: format!("{}@{}", t.name, why.at_ms),
                trigger: t.name.clone(),
                fired_at_ms: why.at_ms,
                revision: job.revision.clone(),
                payload: json!({
                    "trigger": t.name,
                    "fired_at_ms": why.at_ms,
                    "actions": t.spec.then,
                    "values": why,
                }),
                max_attempts: job.max_attempts,
            });
        }
        out.records.insert(t.name.clone(), ev.record);
    }
    out
}

/// Trigger records from the store, by trigger name; unreadable records are
/// reported and start fresh.
pub fn load_records(store: &dyn Backend) -> Result<HashMap<String, Record>, crate::store::StoreError> {
    Ok(crate::rules::records_from(store.trigger_states()?))
}

/// The evaluator task.
pub(super) struct Evaluator {
    pub engine: Arc<Engine>,
    pub window: SharedWindow,
    pub store: StateStore,
    pub clock: SharedClock,
    pub interval_ms: i64,
    pub job: JobSettings,
    pub keep_ms: i64,
    pub config: Arc<Config>,
    /// Receipt instants of passive samples: the triggers that read them are
    /// evaluated at each, in order, between the ticks (DESIGN §3).
    pub receipts: mpsc::UnboundedReceiver<i64>,
    pub metrics: Arc<crate::api::Metrics>,
}

impl Evaluator {
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), DaemonError> {
        let names: Vec<String> = self.engine.triggers.iter().map(|t| t.name.clone()).collect();
        let store = self.store.clone();
        let mut records = store
            .run(move |db| {
                let records = load_records(db)?;
                let dropped = db.delete_trigger_states(&names)?;
                if dropped > 0 {
                    tracing::info!(dropped, "forgot the state of triggers no longer in the config");
                }
                Ok(records)
            })
            .await?;
        let passive = self.engine.passive_triggers(&self.window.snapshot());
        tracing::info!(triggers = self.engine.triggers.len(), passive = passive.len(), resumed = records.len(), interval_ms = self.interval_ms, "trigger evaluator started");
        let mut tick = next_tick(self.clock.now_ms(), self.interval_ms);
        let mut ticks: u64 = 0;
        // The last instant evaluated: evaluations never go back in time.
        let mut last = i64::MIN;
        let mut pending: BTreeSet<i64> = BTreeSet::new();
        let mut receipts_open = true;
        loop {
            let at_tick = tokio::select! {
                _ = self.clock.sleep_until_ms(tick) => true,
                r = self.receipts.recv(), if receipts_open => {
                    match r {
                        Some(r) => {
                            pending.insert(r);
                            while let Ok(r) = self.receipts.try_recv() {
                                pending.insert(r);
                            }
                        }
                        None => receipts_open = false,
                    }
                    false
                }
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            // Receipts before the tick, in receipt order, then the tick.
            while let Some(r) = pending.first().copied().filter(|r| *r < tick) {
                pending.remove(&r);
                if passive.is_empty() {
                    continue;
                }
                let at = r.max(last);
                self.evaluate(&mut records, at, |t| passive.contains(&t.name)).await;
                last = at;
            }
            if !at_tick {
                continue;
            }
            self.evaluate(&mut records, tick, |_| true).await;
            last = tick;
            ticks += 1;
            if ticks % 60 == 0 {
                let keep = self.keep_ms;
                self.window.with(|w| w.prune(tick, keep));
                if let Ok(snap) = store.snapshot().await {
                    match Fleet::new(&self.config, &snap.nodes).host_sets() {
                        Ok(sets) => self.window.with(|w| w.set_hosts(sets)),
                        Err(e) => tracing::error!(error = %e, "cannot refresh the host sets; keeping the last ones"),
                    }
                }
            }
            tick = next_tick(self.clock.now_ms().max(tick + 1), self.interval_ms);
        }
    }

    /// One evaluation at `at` of the triggers `which` picks, saved with the
    /// jobs of its fires in one transaction.
    async fn evaluate(&self, records: &mut HashMap<String, Record>, at: i64, which: impl Fn(&crate::rules::CompiledTrigger) -> bool) {
        let window = self.window.snapshot();
        let out = step_where(&self.engine, &window, records, at, &self.job, which);
        drop(window);
        for j in &out.jobs {
            tracing::info!(trigger = %j.trigger, at_ms = j.fired_at_ms, "trigger fired");
        }
        let fired: Vec<String> = out.jobs.iter().map(|j| j.trigger.clone()).collect();
        let saved = if out.states.is_empty() {
            Ok(())
        } else {
            let (states, jobs) = (out.states, out.jobs);
            self.store.run(move |db| db.save_evaluation(&states, &jobs, at).map(|_| ())).await
        };
        self.metrics.evaluated(saved.is_ok());
        match saved {
            Ok(()) => {
                fired.iter().for_each(|t| self.metrics.fired(t));
                records.extend(out.records);
            }
            // Not saved: the records stay as they were, so the next
            // evaluation starts from the last saved state (nothing fires unsaved).
            Err(e) => tracing::error!(error = %e, "cannot save trigger states; will retry at the next evaluation"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Condition as When, Duration, Trigger};
    use crate::store::{Sample, SeriesKey};

    fn engine() -> Engine {
        let t = Trigger {
            name: "hot".into(),
            description: None,
            when: When::One("last(cpu) > 80".into()),
            for_: Duration::parse("2s").ok(),
            cooldown: Duration::parse("1m").ok(),
            cooldown_up: None,
            cooldown_down: None,
            min_coverage: None,
            then: vec![],
        };
        Engine::compile([&t]).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_step_saves_new_and_changed_states_and_the_jobs_of_fires() {
        let engine = engine();
        let mut w = Window::new();
        w.declare("cpu", Some(30_000));
        for s in 0..5 {
            w.insert(&Sample::value(SeriesKey::new("cpu", "h1"), s * 1_000, 90.0));
        }
        let w = Arc::new(w);
        let job = JobSettings { revision: Some("abc".into()), max_attempts: 3 };
        let first = step(&engine, &w, &HashMap::new(), 0, &job);
        assert_eq!(first.states.len(), 1, "a trigger never saved is saved");
        assert!(first.jobs.is_empty());
        let second = step(&engine, &w, &first.records, 1_000, &job);
        assert!(second.states.is_empty(), "nothing changed: {:?}", second.states);
        let third = step(&engine, &w, &second.records, 2_000, &job);
        assert_eq!(third.states.len(), 1);
        assert_eq!(third.states[0].updated_ms, 2_000);
        assert_eq!(third.jobs.len(), 1);
        let j = &third.jobs[0];
        assert_eq!((j.key.as_str(), j.fired_at_ms, j.revision.as_deref(), j.max_attempts), ("hot@2000", 2_000, Some("abc"), 3));
        // The same inputs give the same step: no clock, no IO.
        assert_eq!(step(&engine, &w, &second.records, 2_000, &job), third);
    }
}
