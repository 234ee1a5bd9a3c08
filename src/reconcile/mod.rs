//! Reconcile: one plan-and-apply session over a loaded config, a state
//! store and the providers. The CLI's `plan`/`apply`/`destroy`, the
//! daemon's reconciler (and later the API's `POST /plans`) all call this
//! code, so they make the same plan from the same inputs.
//!
//! ```text
//! Session { config, store, providers }
//!   plan:  store.snapshot (recorded) + providers.describe (observed) + config (desired)
//!          -> plan::diff -> policy::check -> Plan
//!   apply: apply::apply(plan) (lock, stale check, ordered changes, state after each)
//! ```
//!
//! Errors are typed; [`ReconcileError::is_retryable`] tells the daemon
//! whether to requeue with backoff ([`Backoff`]) or wait for a new input.
//!
//! Must not depend on: the CLI, printing, or a concrete backend (the
//! providers and the store are given by a composition root).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::apply::{self, ApplyError, ApplyOptions, Observer, Providers, Report};
use crate::config::Config;
use crate::plan::{self, DiffInput, Filters, Flags, Operation, Plan};
use crate::provider::{ObservedNode, ProviderError};
use crate::store::{StateStore, StoreError};

/// Default lease of the state lock.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(120);
/// Default number of node changes at once.
pub const DEFAULT_PARALLELISM: usize = 4;

/// Why a plan or an apply did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A provider could not say what runs.
    #[error("provider `{provider}`: {source}")]
    Observe {
        /// The provider's name.
        provider: String,
        /// The cause.
        #[source]
        source: ProviderError,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The built-in guardrails do not load (a bug of this build).
    #[error("built-in policies are invalid: {0}")]
    Policies(String),
    /// The apply failed or was refused.
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

impl ReconcileError {
    /// Whether the same reconcile may succeed later without a new config:
    /// a busy or locked store, a provider that did not answer, a plan made
    /// stale by a concurrent apply, a node change that failed. A plan that
    /// errors or that a policy refuses waits for a new input instead.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReconcileError::Observe { source, .. } => source.is_retryable(),
            ReconcileError::Store(e) => store_retryable(e),
            ReconcileError::Policies(_) => false,
            ReconcileError::Apply(ApplyError::Store(e)) => store_retryable(e),
            ReconcileError::Apply(ApplyError::Stale(_) | ApplyError::Failed { .. }) => true,
            ReconcileError::Apply(ApplyError::NotAllowed(_)) => false,
        }
    }
}

fn store_retryable(e: &StoreError) -> bool {
    e.is_retryable() || matches!(e, StoreError::Locked(_) | StoreError::LockLost(_))
}

/// How a session applies.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Node changes at once.
    pub parallelism: usize,
    /// Lease of the state lock.
    pub lock_ttl: Duration,
    /// Who applies (`user@host`, or a daemon id).
    pub owner: String,
}

impl Settings {
    /// The project's `apply.parallelism` and `state.lock_ttl`, else the defaults.
    pub fn from_config(config: &Config, owner: String) -> Settings {
        let project = &config.project.spec;
        Settings {
            parallelism: project
                .apply
                .as_ref()
                .and_then(|a| a.parallelism)
                .map_or(DEFAULT_PARALLELISM, |p| p as usize),
            lock_ttl: project.state.as_ref().and_then(|s| s.lock_ttl.as_ref()).map_or(DEFAULT_LOCK_TTL, |d| d.get()),
            owner,
        }
    }
}

/// One config, its state store and the providers: everything a plan and an
/// apply need.
#[derive(Clone)]
pub struct Session {
    /// The compiled config (the desired state).
    pub config: Arc<Config>,
    /// The state store (the recorded state).
    pub store: StateStore,
    /// The providers by name (the observed state).
    pub providers: Providers,
    /// How to apply.
    pub settings: Settings,
}

/// What [`Session::reconcile`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to change.
    NoChanges,
    /// The plan has errors or a policy refuses it; nothing was changed.
    Refused(String),
    /// The plan was applied.
    Applied {
        /// Changes made (add, change, destroy).
        summary: plan::Summary,
        /// The state serial after it.
        serial: u64,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::NoChanges => f.write_str("no changes"),
            Outcome::Refused(why) => write!(f, "refused: {why}"),
            Outcome::Applied { summary, serial } => write!(
                f,
                "{} added, {} changed, {} destroyed; state serial {serial}",
                summary.add, summary.change, summary.destroy
            ),
        }
    }
}

impl Session {
    /// What the providers report for this project.
    pub async fn observe(&self) -> Result<Vec<ObservedNode>, ReconcileError> {
        let mut all = Vec::new();
        for p in self.providers.values() {
            let nodes = p
                .describe(&self.config.project.spec.name)
                .await
                .map_err(|source| ReconcileError::Observe { provider: p.name().to_string(), source })?;
            all.extend(nodes);
        }
        Ok(all)
    }

    /// For groups that scale in `least-busy`: the last value of their
    /// `scale_in.counter` per host (node name), from the sample store.
    async fn busy(&self) -> Result<BTreeMap<String, BTreeMap<String, f64>>, ReconcileError> {
        let mut out = BTreeMap::new();
        for g in self.config.groups.values() {
            let Some(si) = g.spec.scale_in.as_ref() else { continue };
            let (Some(crate::model::Pick::LeastBusy), Some(counter)) = (si.pick, si.counter.clone()) else { continue };
            let now = Utc::now().timestamp_millis();
            let last = self.store.run(move |db| db.last_value(&crate::store::Selector::counter(&counter), now)).await?;
            let mut values: BTreeMap<String, (i64, f64)> = BTreeMap::new();
            for (key, v) in last {
                let Some((ts, value)) = v else { continue };
                // Several series of one host (labels): the newest value.
                if values.get(&key.host).is_none_or(|(t, _)| *t < ts) {
                    values.insert(key.host, (ts, value));
                }
            }
            out.insert(g.spec.name.clone(), values.into_iter().map(|(h, (_, v))| (h, v)).collect());
        }
        Ok(out)
    }

    /// Reads state, asks the providers, diffs, and checks every policy.
    pub async fn plan(&self, operation: Operation, filters: Filters, flags: Flags) -> Result<Plan, ReconcileError> {
        let snapshot = self.store.snapshot().await?;
        let observed = self.observe().await?;
        let busy = self.busy().await?;
        let input = DiffInput {
            config: &self.config,
            snapshot: &snapshot,
            observed: &observed,
            operation,
            filters,
            flags,
            providers: self.providers.keys().cloned().collect(),
            now: Utc::now(),
            busy,
        };
        let mut plan = plan::diff(&input);
        let mut policies = crate::policy::builtin().map_err(|d| ReconcileError::Policies(d.to_string()))?;
        policies.extend(self.config.policies.values().map(|p| p.spec.clone()));
        plan.violations = crate::policy::check(&plan, &policies);
        Ok(plan)
    }

    /// Applies `plan` (made by [`Session::plan`] from this config, or
    /// loaded from a plan file), reporting progress to `observer`.
    /// `parallelism` overrides the settings; `interrupted` stops scheduling
    /// new changes.
    pub async fn apply(
        &self,
        plan: &Plan,
        parallelism: Option<usize>,
        interrupted: Arc<AtomicBool>,
        observer: &dyn Observer,
    ) -> Result<Report, ReconcileError> {
        let opts = self.apply_options(parallelism, interrupted);
        Ok(apply::apply(plan, &self.config, &self.providers, &opts, observer).await?)
    }

    /// Takes the state lock for `operation` before planning: the plan made
    /// while it is held is the one applied ([`Session::apply_held`]).
    pub async fn lock(&self, operation: Operation) -> Result<apply::Held, ReconcileError> {
        let opts = self.apply_options(None, Arc::new(AtomicBool::new(false)));
        Ok(apply::Held::take(&opts, &format!("{operation:?}").to_lowercase()).await?)
    }

    /// Applies `plan` under a lock taken with [`Session::lock`].
    pub async fn apply_held(
        &self,
        plan: &Plan,
        parallelism: Option<usize>,
        interrupted: Arc<AtomicBool>,
        observer: &dyn Observer,
        held: &apply::Held,
    ) -> Result<Report, ReconcileError> {
        let opts = self.apply_options(parallelism, interrupted);
        Ok(apply::apply_held(plan, &self.config, &self.providers, &opts, observer, held).await?)
    }

    /// The apply options of this session.
    pub fn apply_options(&self, parallelism: Option<usize>, interrupted: Arc<AtomicBool>) -> ApplyOptions {
        ApplyOptions {
            store: self.store.clone(),
            parallelism: parallelism.unwrap_or(self.settings.parallelism),
            lock_ttl: self.settings.lock_ttl,
            owner: self.settings.owner.clone(),
            interrupted,
        }
    }

    /// Plans with `filters` and applies the plan when it has changes and is
    /// allowed: the daemon's unattended path.
    pub async fn reconcile(&self, filters: Filters) -> Result<Outcome, ReconcileError> {
        let held = self.lock(Operation::Apply).await?;
        let outcome = self.reconcile_held(filters, &held).await;
        held.release().await;
        outcome
    }

    async fn reconcile_held(&self, filters: Filters, held: &apply::Held) -> Result<Outcome, ReconcileError> {
        let plan = self.plan(Operation::Apply, filters, Flags::default()).await?;
        for e in &plan.group_errors {
            tracing::warn!(group = %e.group, "{}; the other groups are reconciled", e.message);
        }
        if !plan.has_changes() {
            return Ok(Outcome::NoChanges);
        }
        if !plan.is_allowed() {
            let mut why: Vec<String> = plan.errors.clone();
            why.extend(plan.violations.iter().map(|v| format!("policy `{}` rule `{}`: {}", v.policy, v.rule, v.message)));
            return Ok(Outcome::Refused(why.join("; ")));
        }
        let report = self.apply_held(&plan, None, Arc::new(AtomicBool::new(false)), &apply::Silent, held).await?;
        Ok(Outcome::Applied { summary: plan.summary, serial: report.serial })
    }
}

/// Filters that limit a plan to the nodes of these groups.
pub fn nodes_of(groups: &[String]) -> Filters {
    Filters { targets: groups.iter().map(|g| format!("node.{g}/")).collect(), excludes: Vec::new() }
}

/// Exponential backoff for requeues after retryable failures (kube-rs's
/// error policy): `base`, doubled per consecutive failure, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub base: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` consecutive failures (1 for the first).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.base.saturating_mul(1u32 << shift).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(60) };
        let got: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let stale = ReconcileError::Apply(ApplyError::Stale("serial moved".into()));
        assert!(stale.is_retryable());
        let refused = ReconcileError::Apply(ApplyError::NotAllowed("policy".into()));
        assert!(!refused.is_retryable());
        assert!(!ReconcileError::Policies("bad".into()).is_retryable());
        let lost = ReconcileError::Store(StoreError::LockLost("x".into()));
        assert!(lost.is_retryable());
        let corrupt = ReconcileError::Store(StoreError::Corrupt { path: "p".into(), what: "w".into(), detail: "d".into() });
        assert!(!corrupt.is_retryable());
    }

    #[test]
    fn group_filters_name_their_nodes() {
        assert_eq!(nodes_of(&["web".into()]).targets, vec!["node.web/".to_string()]);
    }
}
