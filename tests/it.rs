//! The one integration test binary. Tests talk to the real `scaler` binary and
//! to real servers started by `harness` on 127.0.0.1.

// Test code may unwrap: a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod actions;
mod api;
mod api_tasks;
mod api_security;
mod api_tools;
mod cli;
mod architecture;
mod collect;
mod collect_secrets;
mod config_fixtures;
mod daemon;
mod daemon_timing;
mod exec;
mod fleet;
mod gitops;
mod gitops_webhook;
mod harness_smoke;
mod ignored_settings;
mod import;
mod jobs;
mod limits;
mod inputs;
mod plan_apply;
mod readme;
mod provision;
mod provider_local;
mod ruletest;
mod store_conformance;
mod store_postgres;
mod store_sqlite;
mod survey;
mod trace;
mod trace_ssh;
mod ui;
