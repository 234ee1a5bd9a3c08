//! Provisioning a new node over SSH, between `reachable` and `provisioned`:
//! the template's Puppet manifest (and module directory) uploaded and run
//! with `puppet apply --detailed-exitcodes` (0 and 2 are success; 1, 4 and
//! 6 fail the node with Puppet's output), then its bootstrap playbook on
//! this node only.
//!
//! Must not depend on: CLI printing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::exec::{
    CommandRequest, HostSpec, NoProgress, NonInteractive, PutOptions, RunOptions, Runner, SshParams, SshTransport, Status, Transport,
};
use crate::model::{HostPort, NodeTemplate, Puppet};
use crate::store::NodeRecord;

/// The most Puppet output kept in an error (its tail).
const OUTPUT_TAIL: usize = 4000;
/// Command timeout of the playbook's steps when neither step nor project sets one.
const PLAYBOOK_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// Files of a module directory uploaded at most (a bound on a mistaken path).
const MAX_MODULE_FILES: usize = 10_000;

/// Waits until `true` runs over SSH; a refused or timed-out connection is
/// tried again every `every` (the caller bounds the wait), anything else
/// (a host key refused, authentication) fails at once.
pub(super) async fn wait_for_ssh(name: &str, params: SshParams, every: Duration) -> Result<(), String> {
    loop {
        let t = SshTransport::new(name, params.clone());
        let probe = CommandRequest { command: "true".into(), timeout: Some(params.connect_timeout), ..Default::default() };
        let result = t.run(&probe).await;
        t.close().await;
        match result {
            Ok(out) if out.exit_code == Some(0) => return Ok(()),
            Ok(out) => return Err(format!("`true` over SSH exited {:?}: {}", out.exit_code, out.stderr.trim())),
            Err(e) if e.is_retryable() => {
                tracing::debug!(node = name, error = %e, "not reachable yet");
                tokio::time::sleep(every).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Provisions the node `rec` from its template: nothing to do without a
/// `provision` block.
pub(super) async fn provision(config: Arc<Config>, template: NodeTemplate, rec: NodeRecord) -> Result<(), String> {
    let Some(p) = &template.provision else {
        return Ok(());
    };
    let address = rec.address.clone().ok_or("it has no address")?;
    let endpoint = HostPort::parse(&address).map_err(|e| format!("address `{address}`: {e}"))?;
    let params = crate::exec::node_ssh_params(&config, template.ssh.as_ref(), endpoint.host.clone(), endpoint.port);
    if let Some(puppet) = &p.puppet {
        let t = SshTransport::new(rec.name.clone(), params.clone());
        let result = apply_puppet(&t, &config.root, puppet, &rec.name).await;
        t.close().await;
        result?;
    }
    if let Some(name) = &p.playbook {
        bootstrap(&config, name, &rec.name, params).await?;
    }
    Ok(())
}

/// Runs playbook `name` on the recorded node only (the drain before a
/// scale-in), reached like provisioning reaches it.
pub(super) async fn run_on_node(config: &Config, ssh: Option<&crate::model::SshSettings>, name: &str, rec: &NodeRecord) -> Result<(), String> {
    let address = rec.address.clone().ok_or("it has no address")?;
    let endpoint = HostPort::parse(&address).map_err(|e| format!("address `{address}`: {e}"))?;
    let params = crate::exec::node_ssh_params(config, ssh, endpoint.host.clone(), endpoint.port);
    bootstrap(config, name, &rec.name, params).await
}

/// Uploads the manifest (and modules) to a private directory and applies it.
async fn apply_puppet(t: &SshTransport, root: &Path, puppet: &Puppet, node: &str) -> Result<(), String> {
    let dir = private_dir(t).await?;
    let result = run_puppet(t, root, puppet, node, &dir).await;
    let _ = t.run(&CommandRequest { command: format!("rm -rf {}", crate::template::shell_quote(&dir)), ..Default::default() }).await;
    result
}

/// A private directory of its own on the node (several nodes may share a host).
async fn private_dir(t: &SshTransport) -> Result<String, String> {
    let made = t
        .run(&CommandRequest { command: "mktemp -d /tmp/scaler-provision-XXXXXXXX".into(), ..Default::default() })
        .await
        .map_err(|e| format!("make a directory for the manifest: {e}"))?;
    let dir = made.stdout.trim().to_string();
    if made.exit_code != Some(0) || !dir.starts_with("/tmp/scaler-provision-") {
        return Err(format!("`mktemp -d` exited {:?}: {}", made.exit_code, made.stderr.trim()));
    }
    Ok(dir)
}

async fn run_puppet(t: &SshTransport, root: &Path, puppet: &Puppet, node: &str, dir: &str) -> Result<(), String> {
    let manifest = crate::config::repo::read(root, &puppet.manifest).map_err(|e| format!("manifest `{}`: {}", puppet.manifest, e.reason()))?;
    let site = format!("{dir}/site.pp");
    t.put(&manifest, &site, &PutOptions { mode: Some(0o600), owner: None }).await.map_err(|e| format!("upload the manifest: {e}"))?;
    let mut command = String::from("puppet apply --detailed-exitcodes --color=false");
    if let Some(modules) = &puppet.modulepath {
        let remote = format!("{dir}/modules");
        upload_tree(t, root, modules, &remote).await?;
        command.push_str(&format!(" --modulepath {}", crate::template::shell_quote(&remote)));
    }
    command.push_str(&format!(" {}", crate::template::shell_quote(&site)));
    let out = t.run(&CommandRequest { command, ..Default::default() }).await.map_err(|e| format!("`puppet apply`: {e}"))?;
    match out.exit_code {
        // 0: nothing changed; 2: changes applied.
        Some(0 | 2) => {
            tracing::info!(node, exit = ?out.exit_code, "puppet manifest applied");
            Ok(())
        }
        code => {
            let text = format!("{}{}", out.stdout, out.stderr);
            let from = text.len().saturating_sub(OUTPUT_TAIL);
            let from = (from..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
            let status = code.map_or_else(|| "was killed".to_string(), |c| format!("exited {c}"));
            Err(format!("`puppet apply {}` {status}:\n{}", puppet.manifest, text[from..].trim_end()))
        }
    }
}

async fn run_ok(t: &SshTransport, command: &str) -> Result<(), String> {
    let out = t.run(&CommandRequest { command: command.to_string(), ..Default::default() }).await.map_err(|e| e.to_string())?;
    if out.exit_code == Some(0) {
        return Ok(());
    }
    Err(format!("`{command}` exited {:?}: {}", out.exit_code, out.stderr.trim()))
}

/// Uploads every file below the repo directory `rel` to `remote`.
async fn upload_tree(t: &SshTransport, root: &Path, rel: &str, remote: &str) -> Result<(), String> {
    let base = crate::config::repo::resolve(root, rel).map_err(|e| format!("module path `{rel}`: {}", e.reason()))?;
    let mut files = Vec::new();
    let mut dirs = vec![base.clone()];
    while let Some(d) = dirs.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("module path `{rel}`: {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("module path `{rel}`: {e}"))?;
            let kind = entry.file_type().map_err(|e| format!("module path `{rel}`: {e}"))?;
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
            if files.len() > MAX_MODULE_FILES {
                return Err(format!("module path `{rel}` has more than {MAX_MODULE_FILES} files"));
            }
        }
    }
    files.sort();
    let mut made = std::collections::BTreeSet::new();
    for f in files {
        let Ok(inner) = f.strip_prefix(&base) else { continue };
        let inner = inner.to_string_lossy().to_string();
        let dest = format!("{remote}/{inner}");
        if let Some((parent, _)) = dest.rsplit_once('/') {
            if made.insert(parent.to_string()) {
                run_ok(t, &format!("mkdir -p {}", crate::template::shell_quote(parent))).await?;
            }
        }
        let rel_file = format!("{}/{inner}", rel.trim_end_matches('/'));
        let data = crate::config::repo::read(root, &rel_file).map_err(|e| format!("`{rel_file}`: {}", e.reason()))?;
        t.put(&data, &dest, &PutOptions { mode: Some(0o600), owner: None }).await.map_err(|e| format!("upload `{rel_file}`: {e}"))?;
    }
    Ok(())
}

/// Runs a playbook (bootstrap, drain) on this node only.
async fn bootstrap(config: &Config, name: &str, node: &str, params: SshParams) -> Result<(), String> {
    let pb = config.playbooks.get(name).map(|p| p.spec.clone()).ok_or_else(|| format!("no playbook `{name}` in the config"))?;
    let timeout = config.project.spec.defaults.as_ref().and_then(|d| d.timeout.as_ref()).map_or(PLAYBOOK_STEP_TIMEOUT, |d| d.get());
    let opts = RunOptions {
        root: config.root.clone(),
        target: node.to_string(),
        vars: BTreeMap::new(),
        check: false,
        forks: None,
        default_timeout: Some(timeout),
        delegates: BTreeMap::new(),
    };
    let runner = Runner::new(&pb, opts, Arc::new(NoProgress), Arc::new(NonInteractive)).map_err(|e| format!("playbook `{name}`: {e}"))?;
    let result = runner.run(vec![HostSpec { name: node.to_string(), ssh: Some(params) }]).await;
    match result.status {
        Status::Ok | Status::Changed | Status::Skipped => Ok(()),
        status => {
            let why = result.hosts.first().and_then(|h| h.message.clone()).unwrap_or_default();
            Err(format!("playbook `{name}` {}: {why}", status.as_str()))
        }
    }
}
