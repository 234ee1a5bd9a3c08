//! scaler: run a fleet of ordinary servers the GitOps way.
//!
//! The architecture follows the data (see `../shared/DESIGN.md` and STYLE.md):
//!
//! ```text
//! reconcile:  gitops source (watched dir | fetched git branch) -> revision
//!             config::load (dir | git@rev) -> YAML with positions -> JSON Schema -> model types
//!             -> config::compile (refs, defaults, ALL diagnostics at once) -> config::Config
//!             store (recorded) + provider::describe (observed) + Config (desired)
//!             -> plan::diff (pure) -> policy::check (pure) -> plan::Plan (a value)
//!             -> apply (lock, stale check, ordered changes, state committed after each)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | the config format: one type per kind, durations, `host[:port]` |
//! | [`config`] | load a repo, YAML with positions, schema check, compile, diagnostics; read secret references; repo-confined paths; warnings about settings this build ignores |
//! | [`gitops`] | config sources yielding revisions: a directory watched with `notify` (+ debouncer), a git branch fetched with `git2` every `poll` |
//! | [`template`] | minijinja environments (strict undefined, shell-quoting) |
//! | [`store`] | the store traits, one async handle for any backend (`store::open(&Location) -> StateStore`), and two backends, SQLite (default) and PostgreSQL, run through one conformance suite: state, serial, lineage, lock lease, samples, trigger states, job queue, trace tasks |
//! | [`fleet`] | which hosts a target names: static `hosts`, or a group's running nodes (one rule, one `host[:port]` parser) |
//! | [`monitor`] | collection: the `Collector` seam, sources, parsers, scheduler |
//! | [`provider`] | the `Provider` seam (describe/launch/terminate) and the `local` provider |
//! | [`plan`] | `diff(desired, recorded, observed) -> Plan`, rendering, plan files |
//! | [`policy`] | guardrails evaluated against a plan (pure) |
//! | [`apply`] | lock, stale check, run changes through providers, commit state |
//! | [`reconcile`] | a plan-and-apply session (config + store + providers) shared by the CLI and the daemon; typed, retryable errors |
//! | [`exec`] | playbook runs (batches, per-host steps, file transfer), rendering, the `Transport` seam (ssh, local), target resolution |
//! | [`jobs`] | job workers: lease, heartbeat, run actions, retry with backoff, dead-letter |
//! | [`inputs`] | passive inputs: push endpoint, Alertmanager webhook, SNMP traps -> samples by receipt time |
//! | [`daemon`] | `scaler daemon`: one loaded config run by the collectors, receivers, evaluator (a pure step on the clock), job workers and reconciler |
//! | [`api`] | the daemon's read API: `/healthz`, `/metrics` (Prometheus text, the daemon's own counters), REST/JSON views under `/api/v1`; bearer token, query-string tokens refused |
//! | [`web`] | the web UI: the page and its assets (built from `ui/` by `build.rs`, embedded), served at `/` by the daemon |
//! | [`rules`] | condition evaluation and the trigger state machine (pure: no IO) |
//! | [`actions`] | what a fired trigger does: scale (a desired-count mutation), run a playbook, notify (webhook, SNS) |
//! | [`import`] | converting older tools' exports (monscale) into scaler YAML, with the groups and project the repo lacks, written all or nothing |
//! | [`ruletest`] | `scaler test`: rule unit tests on a virtual clock (test files, runner, diff) |
//! | [`survey`] | one-shot fleet survey: poll `/status` on many hosts, exact QoS verdict, aggregate, report files |
//! | [`redact`] | secret scrubbing: every secret read is masked (raw and encoded) in output, errors and logs |
//! | [`tls`] | outgoing HTTP clients (one reqwest builder) and their TLS (rustls on `ring`, system CAs) |
//! | [`clock`] | the one clock seam (now + sleep): wall clock, or tokio's pausable time for tests |
//! | [`cli`] | the command line: the only place that constructs backends |

pub mod actions;
pub mod api;
pub mod apply;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod exec;
pub mod fleet;
pub mod gitops;
pub mod import;
pub mod jobs;
pub mod inputs;
pub mod model;
pub mod monitor;
pub mod plan;
pub mod policy;
pub mod provider;
pub mod reconcile;
pub mod rules;
pub mod ruletest;
pub mod store;
pub mod survey;
pub mod template;
pub mod redact;
pub mod tls;
pub mod web;
