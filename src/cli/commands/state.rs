//! `scaler state list|show` and `scaler unlock`.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::cli::workspace::{load_config, location};
use crate::cli::{CmdResult, Failure, Ui};
use crate::store::{Location, StateStore};

/// Inspect recorded state.
#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// List every recorded object and node by address.
    #[command(after_help = "Examples:\n  scaler state list examples/quickstart\n  scaler state list --json . | jq -r '.nodes[].name'")]
    List(StateArgs),
    /// Show the state header (lineage, serial, revision, lock), or one address.
    #[command(after_help = "Examples:\n  scaler state show .\n  scaler state show . node.web/web-01\n  scaler state show --json . group.web")]
    Show(ShowArgs),
}

/// Where the state is.
#[derive(Debug, clap::Args)]
pub struct StateArgs {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Use this state database instead of the config's.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `state show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub state: StateArgs,
    /// An address (`group.web`, `node.web/web-01`).
    pub address: Option<String>,
}

/// Break a state lock (lease) on purpose, e.g. after a killed apply when you
/// cannot wait for the lease to expire. Make sure its holder is really gone.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler unlock 3f2a9c1e .          (a unique prefix of at least 8 characters)\n\nThe lock id is printed by the command that found the state locked, and by `scaler state show`.")]
pub struct UnlockArgs {
    /// The lock id (or a unique prefix of at least 8 characters).
    pub id: String,
    #[command(flatten)]
    pub state: StateArgs,
}

fn open(args: &StateArgs, ui: &Ui) -> Result<StateStore, Failure> {
    let at = match &args.state {
        Some(p) => Location::Sqlite(p.clone()),
        None => location(&load_config(args.dir.as_deref(), None, ui)?)?,
    };
    if !at.exists() {
        return Err(Failure::new(format!("no state at `{}` yet; `scaler apply` creates it", at.label())));
    }
    Ok(crate::store::open(&at)?)
}

/// Runs `state ...`.
pub fn run(cmd: StateCommand, ui: &Ui) -> CmdResult {
    match cmd {
        StateCommand::List(args) => {
            let store = open(&args, ui)?;
            let snap = store.run_blocking(|db| db.snapshot())?;
            if args.json {
                let objects: Vec<_> = snap.objects.iter().map(|o| json!({"address": format!("{}.{}", o.kind, o.name), "kind": o.kind, "name": o.name, "serial": o.serial})).collect();
                ui.out(&serde_json::to_string_pretty(&json!({
                    "lineage": snap.meta.lineage, "serial": snap.meta.serial,
                    "objects": objects, "nodes": snap.nodes, "desired": snap.desired,
                }))?);
            } else {
                let mut text = String::new();
                for o in &snap.objects {
                    text.push_str(&format!("{}.{}\n", o.kind, o.name));
                }
                for n in &snap.nodes {
                    text.push_str(&format!(
                        "node.{}/{}  {}  {}\n",
                        n.group,
                        n.name,
                        n.status.as_str(),
                        n.address.as_deref().unwrap_or("-")
                    ));
                }
                if text.is_empty() {
                    text.push_str("(state is empty)\n");
                }
                ui.out(&text);
            }
            Ok(ExitCode::SUCCESS)
        }
        StateCommand::Show(mut args) => {
            // `state show ADDRESS` (no DIR): an address is never a directory
            // (`node.web/web-01`, `group.web`), so it is taken as the address.
            if let Some(dir) = args.state.dir.take_if(|d| args.address.is_none() && !d.is_dir() && looks_like_address(d)) {
                args.address = Some(dir.display().to_string());
            }
            let store = open(&args.state, ui)?;
            let snap = store.run_blocking(|db| db.snapshot())?;
            let value = match &args.address {
                None => json!({
                    "lineage": snap.meta.lineage,
                    "serial": snap.meta.serial,
                    "revision": snap.meta.revision,
                    "config_digest": snap.meta.config_digest,
                    "objects": snap.objects.len(),
                    "nodes": snap.nodes.len(),
                    "desired": snap.desired,
                    "lock": store.run_blocking(|db| db.current_lock())?,
                }),
                Some(addr) => find(&snap, addr).ok_or_else(|| Failure::new(format!("no `{addr}` in state; see `scaler state list`")))?,
            };
            if args.state.json {
                ui.out(&serde_json::to_string_pretty(&value)?);
            } else {
                ui.out(&to_text(&value, 0));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn find(snap: &crate::store::Snapshot, addr: &str) -> Option<serde_json::Value> {
    if let Some(rest) = addr.strip_prefix("node.") {
        let name = rest.rsplit('/').next().unwrap_or(rest);
        return snap.nodes.iter().find(|n| n.name == name).and_then(|n| serde_json::to_value(n).ok());
    }
    let (kind, name) = addr.split_once('.')?;
    let o = snap.objects.iter().find(|o| o.kind == kind && o.name == name)?;
    let mut v = json!({"address": addr, "serial": o.serial, "spec": o.spec});
    if kind == "group" {
        if let Some(d) = snap.desired.get(name) {
            v["desired"] = json!(d);
        }
    }
    Some(v)
}

/// A YAML-like rendering of a JSON value for people.
fn to_text(v: &serde_json::Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::Object(o) if !o.is_empty() => format!("{pad}{k}:\n{}", to_text(v, indent + 2)),
                serde_json::Value::Array(a) if !a.is_empty() => format!("{pad}{k}:\n{}", to_text(v, indent + 2)),
                _ => format!("{pad}{k}: {}\n", scalar(v)),
            })
            .collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|v| match v {
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    let inner = to_text(v, indent + 2);
                    format!("{pad}- {}", inner.trim_start())
                }
                _ => format!("{pad}- {}\n", scalar(v)),
            })
            .collect(),
        _ => format!("{pad}{}\n", scalar(v)),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "~".to_string(),
        other => other.to_string(),
    }
}

/// Runs `unlock`.
pub fn run_unlock(args: UnlockArgs, ui: &Ui) -> CmdResult {
    let store = open(&args.state, ui)?;
    let broken = store.run_blocking(|db| db.force_unlock(&args.id))?;
    if args.state.json {
        ui.out(&serde_json::to_string_pretty(&json!({ "unlocked": broken }))?);
    } else {
        ui.out(&format!(
            "Broke lock {} held by {} for {} since {}.",
            broken.id,
            broken.who(),
            broken.operation,
            broken.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `KIND.NAME` or `node.GROUP/NAME`: what `state show` takes as an address.
fn looks_like_address(p: &std::path::Path) -> bool {
    let text = p.display().to_string();
    text.split_once('.').is_some_and(|(kind, name)| !name.is_empty() && (kind == "node" || crate::model::Kind::parse(kind).is_some()))
}
