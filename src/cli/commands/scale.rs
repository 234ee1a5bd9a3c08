//! `scaler scale`.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::workspace::Workspace;
use crate::cli::{CmdResult, Failure, Ui};
use crate::store::{LockRequest, Mutation};

/// Set a group's desired node count in state (within min..max). Nothing is
/// launched or retired until `scaler apply` (or the daemon) reconciles.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  scaler scale web --to 4 .\n  scaler scale web --by -1 .\n\nA group at its max refuses to grow (exit 1, nothing recorded).")]
pub struct Args {
    /// The group.
    pub group: String,
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// Set the desired count.
    #[arg(long, conflicts_with = "by", required_unless_present = "by")]
    pub to: Option<u32>,
    /// Change the desired count by N (may be negative).
    #[arg(long, allow_negative_numbers = true)]
    pub by: Option<i64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
    let group = ws
        .config
        .groups
        .get(&args.group)
        .map(|g| g.spec.clone())
        .ok_or_else(|| Failure::new(crate::config::unknown_name("group", &args.group, ws.config.groups.keys().map(String::as_str))))?;
    let store = ws.store()?;
    let snap = store.run_blocking(|db| db.snapshot())?;
    let current = crate::plan::desired::current(&group, &snap);
    let wanted: i64 = match (args.to, args.by) {
        (Some(t), _) => i64::from(t),
        (None, Some(b)) => i64::from(current) + b,
        (None, None) => i64::from(current),
    };
    if wanted > i64::from(group.max) {
        return Err(Failure::new(format!(
            "group `{}` is at its limit: {wanted} nodes asked, max is {} (now {current}); nothing recorded",
            group.name, group.max
        )));
    }
    if wanted < i64::from(group.min) {
        return Err(Failure::new(format!(
            "group `{}` cannot shrink to {wanted}: min is {} (now {current}); nothing recorded",
            group.name, group.min
        )));
    }
    let wanted = u32::try_from(wanted).map_err(|_| Failure::new("desired count out of range"))?;
    let settings = crate::reconcile::Settings::from_config(&ws.config, crate::cli::workspace::owner());
    let serial = store.run_blocking_as(|db| -> Result<u64, Failure> {
        let lock = db.lock(&LockRequest { owner: settings.owner.clone(), operation: "scale".into(), ttl: settings.lock_ttl })?;
        let base = Some(crate::plan::desired::config_value(&group));
        let result = db.commit(&[Mutation::SetDesired { group: group.name.clone(), desired: Some(wanted), base }]);
        db.unlock(&lock.id)?;
        Ok(result?)
    })?;
    if args.json {
        ui.out(&serde_json::to_string_pretty(&serde_json::json!({"group": group.name, "from": current, "to": wanted, "serial": serial}))?);
    } else {
        ui.out(&format!(
            "Group `{}` desired: {current} -> {wanted}. Run `scaler apply` to launch or retire nodes.",
            group.name
        ));
    }
    Ok(ExitCode::SUCCESS)
}
