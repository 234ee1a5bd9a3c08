//! Apply a plan: take the state lock (a lease kept alive by a heartbeat),
//! refuse a stale plan, run the changes in dependency order with bounded
//! parallelism through providers, and commit state after every finished
//! change so that a crash at any instant leaves state telling the truth.
//!
//! A new node is driven through its life cycle ([`lifecycle`]: running,
//! reachable, provisioned over SSH by [`provision`], ready), each stage
//! recorded as it is reached; a node left at an earlier stage is resumed.
//!
//! Must not depend on: CLI printing (progress goes through [`Observer`]).

mod lifecycle;
mod provision;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::model::NodeTemplate;
use crate::plan::{Action, Change, Plan};
use crate::provider::{LaunchRequest, Provider};
use lifecycle::{LifecycleError, NodeLife};
use crate::store::{LockInfo, LockRequest, Mutation, NodeRecord, NodeStatus, StateStore, StoreError};

/// Errors that stop an apply before or while it runs.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The plan was made against other state or config.
    #[error("plan is stale: {0}; make a new plan")]
    Stale(String),
    /// The plan has errors or policy denials.
    #[error("plan cannot be applied: {0}")]
    NotAllowed(String),
    /// Some changes failed; state records exactly what was done.
    #[error("apply failed: {done} of {total} changes done; {failed}")]
    Failed {
        /// Changes done.
        done: usize,
        /// Changes in the plan.
        total: usize,
        /// What failed and why.
        failed: String,
        /// The report.
        report: Box<Report>,
    },
}

/// Progress callbacks (the CLI draws them).
pub trait Observer: Send + Sync {
    /// The apply starts with this many changes.
    fn begin(&self, _total: usize) {}
    /// A change starts.
    fn started(&self, _change: &Change) {}
    /// A change finished (`Err` carries the error text).
    fn finished(&self, _change: &Change, _result: &Result<(), String>, _elapsed: Duration) {}
}

/// An observer that shows nothing.
#[derive(Debug, Default)]
pub struct Silent;
impl Observer for Silent {}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Report {
    /// Addresses of finished changes, in order.
    pub done: Vec<String>,
    /// Changes that failed, with the error.
    pub failed: Vec<(String, String)>,
    /// Changes not started because an earlier one failed or the apply was interrupted.
    pub skipped: Vec<String>,
    /// The state serial at the end.
    pub serial: u64,
    /// The lock that was held.
    pub lock_id: String,
}

/// The providers by name (`local`, `ec2`).
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// How to apply.
#[derive(Clone)]
pub struct ApplyOptions {
    /// The state store.
    pub store: StateStore,
    /// Node changes running at once.
    pub parallelism: usize,
    /// Lease length of the state lock.
    pub lock_ttl: Duration,
    /// Who applies (`user@host`).
    pub owner: String,
    /// Set to stop scheduling new changes (Ctrl-C).
    pub interrupted: Arc<AtomicBool>,
}

/// The idempotency token of a node slot (EC2 `ClientToken`).
pub fn launch_token(lineage: &str, node: &str, index: u32) -> String {
    let digest = Sha256::digest(format!("{lineage}:{node}:{index}").as_bytes());
    hex::encode(&digest[..16])
}

fn digest_of(v: &impl serde::Serialize) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..16])
}

/// Keeps the lease alive from its own task (each renewal on a connection
/// of its own, so a long commit never delays it).
struct Heartbeat {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
}

impl Heartbeat {
    fn start(store: StateStore, lock_id: String, ttl: Duration) -> Heartbeat {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let every = (ttl / 3).max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let id = lock_id.clone();
                if let Err(e) = store.run(move |db| db.renew(&id, ttl)).await {
                    tracing::error!(error = %e, "state lock lost");
                    flag.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        Heartbeat { task, lost }
    }

    fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes the state lock for `operation`.
pub async fn take_lock(store: &StateStore, opts: &ApplyOptions, operation: &str) -> Result<LockInfo, StoreError> {
    let req = LockRequest { owner: opts.owner.clone(), operation: operation.to_string(), ttl: opts.lock_ttl };
    store.run(move |db| db.lock(&req)).await
}

/// The state lock, held (its lease kept alive) until [`Held::release`]:
/// taken before planning, so that two applies never both decide.
pub struct Held {
    store: StateStore,
    lock: LockInfo,
    heartbeat: Heartbeat,
    released: bool,
}

impl Held {
    /// Takes the state lock for `operation` (`apply`, `destroy`) and keeps
    /// it alive from its own task.
    pub async fn take(opts: &ApplyOptions, operation: &str) -> Result<Held, ApplyError> {
        let store = opts.store.clone();
        let lock = take_lock(&store, opts, operation).await?;
        let heartbeat = Heartbeat::start(store.clone(), lock.id.clone(), opts.lock_ttl);
        Ok(Held { store, lock, heartbeat, released: false })
    }

    /// The lock's id.
    pub fn id(&self) -> &str {
        &self.lock.id
    }

    /// Releases the lock (a failure is logged: the lease expires by itself).
    pub async fn release(mut self) {
        self.released = true;
        self.heartbeat.task.abort();
        let id = self.lock.id.clone();
        if let Err(e) = self.store.run(move |db| db.unlock(&id)).await {
            tracing::warn!(error = %e, lock = %self.lock.id, "could not release the state lock; it expires by itself");
        }
    }
}

impl Drop for Held {
    /// A holder cancelled before [`Held::release`] (a daemon stopping
    /// mid-reconcile) still gives the lock back, so the next apply does not
    /// wait for the lease to expire.
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.heartbeat.task.abort();
        let id = self.lock.id.clone();
        if let Err(e) = self.store.run_blocking(|db| db.unlock(&id)) {
            tracing::warn!(error = %e, lock = %self.lock.id, "could not release the state lock; it expires by itself");
        }
    }
}

/// Applies `plan`: takes the state lock, applies, releases it. The caller
/// made the plan from `config` (whose digest is checked again here) and
/// gives the providers it needs.
pub async fn apply(
    plan: &Plan,
    config: &Config,
    providers: &Providers,
    opts: &ApplyOptions,
    observer: &dyn Observer,
) -> Result<Report, ApplyError> {
    let held = Held::take(opts, &format!("{:?}", plan.operation).to_lowercase()).await?;
    let result = apply_held(plan, config, providers, opts, observer, &held).await;
    held.release().await;
    result
}

/// Applies `plan` under a lock already held (taken before the plan was made).
pub async fn apply_held(
    plan: &Plan,
    config: &Config,
    providers: &Providers,
    opts: &ApplyOptions,
    observer: &dyn Observer,
    held: &Held,
) -> Result<Report, ApplyError> {
    run(plan, config, providers, opts, observer, &held.store, &held.heartbeat, &held.lock).await
}

#[allow(clippy::too_many_arguments)]
async fn run(
    plan: &Plan,
    config: &Config,
    providers: &Providers,
    opts: &ApplyOptions,
    observer: &dyn Observer,
    store: &StateStore,
    heartbeat: &Heartbeat,
    lock: &LockInfo,
) -> Result<Report, ApplyError> {
    let snap = store.snapshot().await?;
    if snap.meta.lineage != plan.lineage {
        return Err(ApplyError::Stale(format!(
            "it was made for state lineage `{}`, this state is `{}`",
            plan.lineage, snap.meta.lineage
        )));
    }
    if snap.meta.serial != plan.serial {
        return Err(ApplyError::Stale(format!(
            "state serial moved from {} to {} since the plan was made",
            plan.serial, snap.meta.serial
        )));
    }
    if config.digest != plan.config_digest {
        return Err(ApplyError::Stale("the config changed since the plan was made".to_string()));
    }
    if !plan.is_allowed() {
        let mut why: Vec<String> = plan.errors.clone();
        why.extend(plan.violations.iter().map(|v| format!("policy `{}` rule `{}`: {}", v.policy, v.rule, v.message)));
        return Err(ApplyError::NotAllowed(why.join("; ")));
    }

    let mut report = Report { serial: snap.meta.serial, lock_id: lock.id.clone(), ..Report::default() };
    let total = plan.changes.len();
    observer.begin(total);

    // Launches that finished without being recorded.
    if !plan.refresh.is_empty() {
        let muts: Vec<Mutation> = plan.refresh.iter().cloned().map(Mutation::PutNode).collect();
        report.serial = store.commit(muts).await?;
    }

    // 1. Config objects created or changed, and desired counts: records only.
    let (objects_first, rest): (Vec<&Change>, Vec<&Change>) =
        plan.changes.iter().partition(|c| c.node.is_none() && c.action != Action::Delete);
    let (nodes, objects_last): (Vec<&Change>, Vec<&Change>) = rest.into_iter().partition(|c| c.node.is_some());
    let mut muts = Vec::new();
    for c in &objects_first {
        if let Some(after) = &c.after {
            muts.push(Mutation::PutObject { kind: c.kind.clone(), name: c.name.clone(), spec: after.clone() });
        }
    }
    if plan.operation == crate::plan::Operation::Apply && !plan.filters.is_partial() {
        for g in &plan.groups {
            let now = (snap.desired.get(&g.name).copied(), snap.desired_base.get(&g.name).copied());
            let want = (!g.removed).then_some(g.desired);
            let base = want.and(config.groups.get(&g.name)).map(|l| crate::plan::desired::config_value(&l.spec));
            if now != (want, base) {
                muts.push(Mutation::SetDesired { group: g.name.clone(), desired: want, base });
            }
        }
    }
    if !muts.is_empty() {
        let t0 = Instant::now();
        for c in &objects_first {
            observer.started(c);
        }
        report.serial = store.commit(muts).await?;
        for c in &objects_first {
            observer.finished(c, &Ok(()), t0.elapsed());
            report.done.push(c.address.clone());
        }
    }

    // 2. Nodes, with bounded parallelism; state committed around each.
    let project = config.project.spec.name.clone();
    let mut queue: VecDeque<Change> = nodes.into_iter().cloned().collect();
    let mut running = tokio::task::JoinSet::new();
    let mut records: BTreeMap<String, NodeRecord> = snap.nodes.iter().map(|n| (n.name.clone(), n.clone())).collect();
    records.extend(plan.refresh.iter().map(|n| (n.name.clone(), n.clone())));
    let shared = Arc::new(config.clone());
    let parallelism = opts.parallelism.max(1);
    loop {
        while report.failed.is_empty()
            && running.len() < parallelism
            && !heartbeat.is_lost()
            && !opts.interrupted.load(Ordering::SeqCst)
        {
            let Some(change) = queue.pop_front() else { break };
            let ctx = JobContext { config: &shared, plan, project: &project, providers, store };
            let job = match prepare(&change, &ctx, records.get(&change.name)) {
                Ok(job) => job,
                Err(e) => {
                    observer.finished(&change, &Err(e.clone()), Duration::ZERO);
                    report.failed.push((change.address.clone(), e));
                    break;
                }
            };
            if let Some(m) = &job.before {
                report.serial = store.commit(vec![m.clone()]).await?;
            }
            observer.started(&change);
            running.spawn(async move {
                let t0 = Instant::now();
                let result = job.run().await;
                (change, result, t0.elapsed())
            });
        }
        let Some(joined) = running.join_next().await else { break };
        let (change, result, elapsed) = match joined {
            Ok(v) => v,
            Err(e) => {
                report.failed.push(("(worker)".to_string(), format!("a worker task failed: {e}")));
                continue;
            }
        };
        match result {
            Ok(after) => {
                report.serial = store.commit(vec![after]).await?;
                observer.finished(&change, &Ok(()), elapsed);
                report.done.push(change.address.clone());
            }
            Err(e) => {
                let msg = e.to_string();
                observer.finished(&change, &Err(msg.clone()), elapsed);
                report.failed.push((change.address.clone(), msg));
            }
        }
    }
    report.skipped.extend(queue.iter().map(|c| c.address.clone()));

    if heartbeat.is_lost() {
        report.skipped.extend(objects_last.iter().map(|c| c.address.clone()));
        return Err(failed(total, report, "the state lock was lost; stopped".to_string()));
    }
    if opts.interrupted.load(Ordering::SeqCst) && !report.skipped.is_empty() {
        report.skipped.extend(objects_last.iter().map(|c| c.address.clone()));
        return Err(failed(total, report, "interrupted".to_string()));
    }
    if let Some((addr, e)) = report.failed.first().cloned() {
        report.skipped.extend(objects_last.iter().map(|c| c.address.clone()));
        return Err(failed(total, report, format!("`{addr}`: {e}")));
    }

    // 3. Config objects removed, then the revision.
    let mut muts: Vec<Mutation> = objects_last
        .iter()
        .map(|c| Mutation::DeleteObject { kind: c.kind.clone(), name: c.name.clone() })
        .collect();
    // The revision is applied only when the whole config is (no filters, no
    // group left out).
    if plan.operation == crate::plan::Operation::Apply && plan.is_complete() {
        muts.push(Mutation::SetRevision { revision: plan.revision.clone(), config_digest: plan.config_digest.clone() });
    }
    if !muts.is_empty() {
        let t0 = Instant::now();
        report.serial = store.commit(muts).await?;
        for c in &objects_last {
            observer.finished(c, &Ok(()), t0.elapsed());
            report.done.push(c.address.clone());
        }
    }
    Ok(report)
}

fn failed(total: usize, report: Report, why: String) -> ApplyError {
    ApplyError::Failed { done: report.done.len(), total, failed: why, report: Box::new(report) }
}

/// One node change ready to run: what to record before, and the work.
struct NodeJob {
    before: Option<Mutation>,
    provider: Arc<dyn Provider>,
    project: String,
    name: String,
    action: Action,
    /// A new node: the launch, and its record (`creating`).
    launch: Option<(LaunchRequest, NodeRecord)>,
    /// A node whose life cycle is resumed from its recorded stage.
    resume: Option<NodeRecord>,
    life: Option<NodeLife>,
    /// A live node of a group with `scale_in.drain`: drained first.
    drain: Option<Drain>,
    template: Option<NodeTemplate>,
}

/// How long a drain playbook may take by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

/// The drain of one node before it is terminated.
struct Drain {
    playbook: String,
    record: NodeRecord,
    timeout: Duration,
    /// `drain_failure: terminate`.
    terminate_anyway: bool,
    config: Arc<Config>,
    ssh: Option<crate::model::SshSettings>,
    store: StateStore,
}

impl Drain {
    /// Runs the drain playbook on the node within its deadline; on success
    /// (or a failure the group tolerates) records it `terminating`.
    async fn run(self) -> Result<(), LifecycleError> {
        let name = self.record.name.clone();
        let work = provision::run_on_node(&self.config, self.ssh.as_ref(), &self.playbook, &self.record);
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!("playbook `{}` did not finish within {}", self.playbook, humantime::format_duration(self.timeout))),
        };
        match result {
            Ok(()) => tracing::info!(node = %name, playbook = %self.playbook, "node drained"),
            Err(detail) if self.terminate_anyway => {
                tracing::warn!(node = %name, error = %detail, "drain failed; terminating anyway (`drain_failure: terminate`)");
            }
            Err(detail) => return Err(LifecycleError::Drain { node: name, detail }),
        }
        let mut rec = self.record;
        rec.status = NodeStatus::Terminating;
        self.store.commit(vec![Mutation::PutNode(rec)]).await?;
        Ok(())
    }
}

impl NodeJob {
    async fn run(self) -> Result<Mutation, LifecycleError> {
        if let Some(drain) = self.drain {
            drain.run().await?;
        }
        if matches!(self.action, Action::Delete | Action::Replace) {
            self.provider.terminate(&self.project, &self.name, self.template.as_ref()).await?;
        }
        let Some(life) = &self.life else {
            return Ok(Mutation::DeleteNode { name: self.name });
        };
        let ready = match (&self.launch, self.resume) {
            (Some((req, rec)), _) => life.drive(rec.clone(), Some(req)).await?,
            (None, Some(rec)) => life.drive(rec, None).await?,
            (None, None) => return Ok(Mutation::DeleteNode { name: self.name }),
        };
        Ok(Mutation::PutNode(ready))
    }
}

/// What every node job of one apply shares.
struct JobContext<'a> {
    config: &'a Arc<Config>,
    plan: &'a Plan,
    project: &'a str,
    providers: &'a Providers,
    store: &'a StateStore,
}

fn prepare(change: &Change, ctx: &JobContext<'_>, record: Option<&NodeRecord>) -> Result<NodeJob, String> {
    let JobContext { config, plan, project, providers, store } = *ctx;
    let node = change.node.as_ref().ok_or_else(|| format!("`{}` is not a node", change.address))?;
    let provider = providers
        .get(&node.provider)
        .cloned()
        .ok_or_else(|| format!("provider `{}` is not available in this scaler build", node.provider))?;
    let template = node
        .template
        .as_ref()
        .and_then(|t| config.templates.get(t))
        .map(|t| t.spec.clone());
    let group = config.groups.get(&node.group).map(|g| &g.spec);
    let scale_in = group.and_then(|g| g.scale_in.as_ref());
    let drain = match (change.action, scale_in.and_then(|s| s.drain.clone())) {
        (Action::Delete, Some(playbook)) if node.was_alive => {
            let rec = record.ok_or_else(|| format!("`{}`: no recorded node to drain", change.address))?;
            Some(Drain {
                playbook,
                record: rec.clone(),
                timeout: scale_in.and_then(|s| s.drain_timeout.as_ref()).map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.get()),
                terminate_anyway: scale_in.and_then(|s| s.drain_failure) == Some(crate::model::DrainFailure::Terminate),
                config: config.clone(),
                ssh: template.as_ref().and_then(|t| t.ssh.clone()),
                store: store.clone(),
            })
        }
        _ => None,
    };
    let life = |template: &NodeTemplate| NodeLife {
        store: store.clone(),
        provider: provider.clone(),
        config: config.clone(),
        template: template.clone(),
    };
    match change.action {
        Action::Create | Action::Replace => {
            let template = template.ok_or_else(|| format!("group `{}` has no usable template", node.group))?;
            let rec = NodeRecord {
                name: change.name.clone(),
                group: node.group.clone(),
                index: node.index,
                provider: node.provider.clone(),
                provider_id: None,
                status: NodeStatus::Creating,
                created_at: Utc::now(),
                template_digest: digest_of(&template),
                address: None,
                attrs: serde_json::Value::Null,
            };
            let req = LaunchRequest {
                project: project.to_string(),
                group: node.group.clone(),
                name: change.name.clone(),
                index: node.index,
                token: launch_token(&plan.lineage, &change.name, node.index),
                template: template.clone(),
            };
            Ok(NodeJob {
                before: Some(Mutation::PutNode(rec.clone())),
                provider: provider.clone(),
                project: project.to_string(),
                name: change.name.clone(),
                action: change.action,
                launch: Some((req, rec)),
                resume: None,
                life: Some(life(&template)),
                drain: None,
                template: Some(template),
            })
        }
        Action::Update => {
            let template = template.ok_or_else(|| format!("group `{}` has no usable template", node.group))?;
            let rec = record.cloned().ok_or_else(|| format!("`{}`: no recorded node to resume", change.address))?;
            Ok(NodeJob {
                before: None,
                provider: provider.clone(),
                project: project.to_string(),
                name: change.name.clone(),
                action: change.action,
                launch: None,
                resume: Some(rec),
                life: Some(life(&template)),
                drain: None,
                template: Some(template),
            })
        }
        Action::Delete => {
            // A node that is drained first is marked only once the drain is done.
            let before = record.filter(|_| drain.is_none()).map(|r| {
                let mut r = r.clone();
                r.status = NodeStatus::Terminating;
                Mutation::PutNode(r)
            });
            Ok(NodeJob {
                before,
                provider: provider.clone(),
                project: project.to_string(),
                name: change.name.clone(),
                action: change.action,
                launch: None,
                resume: None,
                life: None,
                drain,
                template,
            })
        }
    }
}
