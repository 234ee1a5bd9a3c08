//! scaler: run a fleet of ordinary servers the GitOps way.
//!
//! The architecture follows the data (see `../shared/DESIGN.md` and STYLE.md):
//!
//! ```text
//! reconcile:  config::load (dir | git@rev) -> YAML with positions -> JSON Schema -> model types
//!             -> config::compile (refs, defaults, ALL diagnostics at once) -> config::Config
//!             store (recorded) + provider::describe (observed) + Config (desired)
//!             -> plan::diff (pure) -> policy::check (pure) -> plan::Plan (a value)
//!             -> apply (lock, stale check, ordered changes, state committed after each)
//! ```
//!
//! | module | owns |
//! |---|---|
//! | [`model`] | the config format: one type per kind, durations |
//! | [`config`] | load a repo, YAML with positions, schema check, compile, diagnostics |
//! | [`template`] | minijinja environments (strict undefined, shell-quoting) |
//! | [`store`] | the `Store` seam and its SQLite backend: state, serial, lineage, lock lease |
//! | [`monitor`] | collection: the `Collector` seam, sources, parsers, scheduler |
//! | [`provider`] | the `Provider` seam (describe/launch/terminate) and the `local` provider |
//! | [`plan`] | `diff(desired, recorded, observed) -> Plan`, rendering, plan files |
//! | [`policy`] | guardrails evaluated against a plan (pure) |
//! | [`apply`] | lock, stale check, run changes through providers, commit state |
//! | [`exec`] | playbook steps, rendering, the `Transport` seam (ssh, local), target resolution |
//! | [`rules`] | condition evaluation and the trigger state machine (pure: no IO) |
//! | [`ruletest`] | `scaler test`: rule unit tests on a virtual clock (test files, runner, diff) |
//! | [`survey`] | one-shot fleet survey: poll `/status` on many hosts, exact QoS verdict, aggregate, report files |
//! | [`cli`] | the command line: the only place that constructs backends |

pub mod apply;
pub mod cli;
pub mod config;
pub mod exec;
pub mod model;
pub mod monitor;
pub mod plan;
pub mod policy;
pub mod provider;
pub mod rules;
pub mod ruletest;
pub mod store;
pub mod survey;
pub mod template;
