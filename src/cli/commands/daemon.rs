//! `scaler daemon`: collect, evaluate triggers, run action jobs, reconcile.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use secrecy::{ExposeSecret, SecretString};

use crate::cli::workspace::{runtime, warn_ignored, Workspace};
use crate::cli::{CmdResult, Failure, Ui};
use crate::api::GitHooks;
use crate::daemon::{self, Follow, Options};
use crate::gitops::{ConfigSource, Credentials, DirSource, GitSettings, GitSource};

/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// Run collection, trigger evaluation, the action workers, the receivers
/// for pushed values, Alertmanager alerts and SNMP traps, and the read API
/// with `/metrics`, until Ctrl-C.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  scaler daemon examples/quickstart                 everything, on 127.0.0.1:7878
  scaler daemon --evaluation-interval 1s .          evaluate triggers every second
  scaler daemon --role worker --workers 8 .         only work the job queue (scale out workers)
  curl -X PUT -H \"Authorization: Bearer $(cat .scaler/daemon.token)\" \\
       --data 42 http://127.0.0.1:7878/api/v1/push/queue-depth
  curl -H \"Authorization: Bearer $(cat .scaler/daemon.token)\" http://127.0.0.1:7878/api/v1/triggers

Receivers (changing state needs `Authorization: Bearer TOKEN`; the token is the project's
`daemon.token`, else a random one written to .scaler/daemon.token, mode 0600; the optional
`daemon.read_token` reads the API and /metrics and gets 403 on every change):
  PUT  /api/v1/push/NAME    a number for a counter with source `push`
  POST /api/v1/alerts       Alertmanager webhook (payload version 4)
  UDP  daemon.traps.listen  SNMP v1/v2c traps for counters with source `trap`
  POST /hooks/git           push webhook of a git source (no token: signed with
                            `daemon.source.webhook_secret`; GitHub, GitLab, generic)

Read API on the same listener (JSON; the same token, never in the URL; only /healthz and
/api/v1/openapi.json, the OpenAPI document of every route, are open):
  GET /healthz  GET /api/v1/openapi.json  GET /metrics (Prometheus text)  GET /api/v1/status
  GET /api/v1/{targets,counters,triggers,jobs,nodes,groups}[/NAME]  (?limit=&after=)
  GET /api/v1/series?counter=NAME&host=H&from=now-1h&to=now&step=1m   (points in [from, to))

The listener serves plain HTTP: a non-loopback --listen needs --insecure-listen (put a TLS
proxy in front). The Host header must name the listen address (`daemon.http.allowed_hosts`
adds names), changes from another browser origin get 403, bodies are capped and slow
clients dropped (`daemon.http`).

Config source: the directory is watched, or with `daemon.source.git` the branch is fetched
every `poll` (default 60s) into .scaler/source/, and at once on a signed push webhook.
Every new valid revision is run at once
(collectors, triggers, receivers and workers restart on it; trigger states are kept), and is
applied when `daemon.auto_apply` is true, else planned and held (`scaler approve` has the
daemon apply it; `scaler apply` applies directly). An invalid revision is logged with its
diagnostics and the last good one keeps running; a failed fetch is logged and retried with
backoff.

Trigger states are saved on every transition and a fire is saved with its job in one
transaction, so a restart resumes pending triggers and never fires twice for one instant.
`scaler status` shows every trigger and recent jobs.
After the start-up line, one `warning:` line per setting this build ignores
(`provision`, `provider: ec2`, an `https` git remote, ...); see `scaler validate`.
Exit codes: 0 stopped by Ctrl-C/SIGTERM, 1 error (config, state, a listener could not start).")]
pub struct Args {
    /// The config repo (default: `-C DIR`, SCALER_DIR, else found from here up).
    pub dir: Option<PathBuf>,
    /// HTTP listen address (default: project `daemon.listen`, else 127.0.0.1:7878).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Trigger evaluation tick (default: project `daemon.evaluation_interval`, else 10s).
    #[arg(long, value_name = "DURATION")]
    pub evaluation_interval: Option<String>,
    /// What this process does: `all` (collect, evaluate, work jobs, reconcile) or `worker` (only jobs).
    #[arg(long, value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Job workers (default: project `daemon.jobs.workers`, else 4).
    #[arg(long, value_name = "N")]
    pub workers: Option<u32>,
    /// Do not collect counters (only passive inputs feed the triggers).
    #[arg(long)]
    pub no_collect: bool,
    /// Listen on a non-loopback address although this build serves plain
    /// HTTP (no TLS): tokens cross the network in clear unless a TLS proxy
    /// is in front.
    #[arg(long)]
    pub insecure_listen: bool,
}

/// What a daemon process does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Collect, evaluate, receive, work jobs, reconcile.
    All,
    /// Only work the job queue.
    Worker,
}

/// The listener's limits: `daemon.http`, else the defaults.
fn http_options(s: Option<&crate::model::ListenerSettings>, insecure_listen: bool) -> crate::api::HttpOptions {
    let d = crate::api::HttpOptions::default();
    let Some(s) = s else { return crate::api::HttpOptions { insecure_listen, ..d } };
    crate::api::HttpOptions {
        allowed_hosts: s.allowed_hosts.clone(),
        body_limit: s.body_limit.map_or(d.body_limit, |b| usize::try_from(b).unwrap_or(usize::MAX)),
        header_timeout: s.header_timeout.as_ref().map_or(d.header_timeout, |t| t.get()),
        request_timeout: s.request_timeout.as_ref().map_or(d.request_timeout, |t| t.get()),
        insecure_listen,
    }
}

fn ms(d: &crate::model::Duration) -> i64 {
    i64::try_from(d.get().as_millis()).unwrap_or(i64::MAX)
}

/// The daemon's token: the project's `daemon.token`, else one kept in
/// `STATE_DIR/daemon.token` (created with mode 0600 on first start).
pub(crate) fn token(ws: &Workspace) -> Result<(SecretString, Option<PathBuf>), Failure> {
    if let Some(r) = ws.config.project.spec.daemon.as_ref().and_then(|d| d.token.as_ref()) {
        let s = crate::config::read_secret(&ws.config.root, r).map_err(|e| Failure::new(format!("daemon.token: {e}")))?;
        return Ok((s, None));
    }
    let path = ws.state_dir.join("daemon.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok((SecretString::from(t.trim().to_string()), Some(path))),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Failure::new(format!("cannot read `{}`: {e}", path.display()))),
    }
    let t = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    write_private(&path, &t).map_err(|e| Failure::new(format!("cannot write `{}`: {e}", path.display())))?;
    Ok((SecretString::from(t), Some(path)))
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Runs the command.
pub fn run(args: Args, ui: &Ui) -> CmdResult {
    let ws = Workspace::load(args.dir.as_deref(), None, ui)?;
    let settings = ws.config.project.spec.daemon.clone();
    let interval_ms = match &args.evaluation_interval {
        Some(text) => ms(&crate::model::Duration::parse(text).map_err(|e| Failure { code: 2, message: format!("--evaluation-interval: {e}") })?),
        None => settings.as_ref().and_then(|d| d.evaluation_interval.as_ref()).map_or(10_000, ms),
    };
    if interval_ms < 10 {
        return Err(Failure { code: 2, message: "--evaluation-interval must be at least 10ms".into() });
    }
    let listen = args
        .listen
        .clone()
        .or_else(|| settings.as_ref().and_then(|d| d.listen.clone()))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let workers = args
        .workers
        .unwrap_or_else(|| crate::jobs::worker_count(settings.as_ref().and_then(|d| d.jobs.as_ref())));
    let (token, token_file) = token(&ws)?;
    let read_token = match settings.as_ref().and_then(|d| d.read_token.as_ref()) {
        Some(r) => Some(crate::config::read_secret(&ws.config.root, r).map_err(|e| Failure::new(format!("daemon.read_token: {e}")))?),
        None => None,
    };
    if read_token.as_ref().is_some_and(|r| r.expose_secret() == token.expose_secret()) {
        return Err(Failure::new("daemon.read_token must differ from daemon.token (the read-only token would make changes)"));
    }
    if let Some(p) = token_file {
        ui.info(&format!("receivers and the API need `Authorization: Bearer <token>`; the token is in {}", p.display()));
    }
    let all = args.role == Role::All;
    let session = ws.session()?;
    let clock = crate::clock::system();
    let opts = Options {
        clock: clock.clone(),
        samples: None,
        listen,
        evaluation_interval_ms: interval_ms,
        collect: all && !args.no_collect,
        evaluate: all,
        workers,
        token,
        read_token,
        revision: Some(ws.config.revision.clone()),
        reconcile: all,
        http: http_options(settings.as_ref().and_then(|d| d.http.as_ref()), args.insecure_listen),
        hooks: None,
        fetches: None,
    };
    if all {
        ui.info(&format!(
            "scaler daemon: {} triggers, {} counters, evaluated every {}; receivers and API on http://{}; {} job workers; Ctrl-C stops (`-v` shows each fire and job)",
            ws.config.triggers.len(),
            ws.config.counters.len(),
            crate::rules::engine::human_ms(interval_ms),
            opts.listen,
            opts.workers
        ));
    } else {
        ui.info(&format!("scaler daemon: {} job workers on {}; Ctrl-C stops", opts.workers, session.store.label()));
    }
    warn_ignored(&ws.config, ui);
    let auto_apply = settings.as_ref().and_then(|d| d.auto_apply).unwrap_or(false);
    let mut git = settings.as_ref().and_then(|d| d.source.as_ref()).map(|s| GitSettings::from_model(s, &ws.state_dir.join("source")));
    if let (Some(g), Some(c)) = (git.as_mut(), settings.as_ref().and_then(|d| d.source.as_ref()).and_then(|s| s.credentials.as_ref())) {
        if g.url.to_ascii_lowercase().starts_with("http://") {
            let password = crate::config::read_secret(&ws.config.root, &c.password).map_err(|e| Failure::new(format!("daemon.source.credentials.password: {e}")))?;
            g.credentials = Some(Credentials { username: c.username.clone(), password: std::sync::Arc::new(password) });
        }
    }
    let webhook_secret = match settings.as_ref().and_then(|d| d.source.as_ref()).and_then(|s| s.webhook_secret.as_ref()) {
        Some(r) => Some(crate::config::read_secret(&ws.config.root, r).map_err(|e| Failure::new(format!("daemon.source.webhook_secret: {e}")))?),
        None => None,
    };
    let mut opts = opts;
    let root = ws.config.root.clone();
    let state_dir = Some(ws.state_dir.clone());
    let rt = runtime()?;
    rt.block_on(async move {
        let source: Box<dyn ConfigSource> = match git {
            Some(g) => Box::new(GitSource::new(g, clock.clone())),
            None => Box::new(DirSource::new(&root, clock.clone())),
        };
        opts.fetches = source.handle();
        if let (Some(secret), Some(handle)) = (webhook_secret, source.handle()) {
            opts.hooks = Some(std::sync::Arc::new(GitHooks::new(secret, handle).map_err(daemon::DaemonError::Other)?));
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
            }
            tracing::info!("stopping");
            let _ = stop_tx.send(true);
        });
        daemon::follow(session, opts, Follow { source, auto_apply, state_dir }, stop_rx).await
    })
    .map_err(|e| Failure::new(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
