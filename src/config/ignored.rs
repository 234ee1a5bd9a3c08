//! Settings the config format accepts but this build does not act on: one
//! warning per setting, at the setting's `file:line:column`, saying what the
//! build does instead. `scaler validate`, `plan`, `apply` and the daemon's
//! start-up show them (see [`super::Config::warnings`]); a warning never makes
//! a config invalid.
//!
//! Owns: the list of ignored settings (one function per kind that has any).
//! Remove an entry here when the issue that implements the setting lands.
//! Must not depend on: IO, the store, providers.

use super::checks::At;
use super::diag::Diagnostic;
use super::document::place;
use super::yaml::Segment;
use crate::model::{Group, NodeTemplate, Project, ProviderKind};

/// The code of every warning about an ignored setting.
pub const CODE: &str = "ignored";

fn warn(at: At<'_>, path: &[&str], message: String, help: Option<&str>) -> Diagnostic {
    let segments: Vec<Segment> = path.iter().map(|s| Segment::Key((*s).to_string())).collect();
    let d = place(CODE, message, at.file, at.root, &segments);
    match help {
        Some(h) => d.help(h),
        None => d,
    }
}

/// The Project's ignored settings: a `daemon.source.git` remote over a
/// transport this build cannot fetch; credentials for a remote that is not
/// `http://`.
pub fn project(at: At<'_>, p: &Project) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let Some(source) = p.daemon.as_ref().and_then(|d| d.source.as_ref()) else { return out };
    if let Some(transport) = unfetchable(&source.git) {
        out.push(warn(
            at,
            &["daemon", "source", "git"],
            format!("`daemon.source.git` is an {transport} remote, which this build cannot fetch (libgit2 is built without https and ssh): every fetch fails and the daemon keeps running the config it has"),
            Some("use a local path, a `file://`, `git://` or `http://` remote"),
        ));
    }
    if source.credentials.is_some() && !source.git.to_ascii_lowercase().starts_with("http://") {
        out.push(warn(
            at,
            &["daemon", "source", "credentials"],
            "`daemon.source.credentials` is ignored: this build sends credentials only to an `http://` remote".to_string(),
            None,
        ));
    }
    out
}

/// The transport of a git remote this build has no support for: `https`,
/// `http`, `ssh` (also `user@host:path`).
fn unfetchable(url: &str) -> Option<&'static str> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => Some("https"),
        Some("ssh" | "git+ssh" | "ssh+git") => Some("ssh"),
        Some(_) => None,
        // `user@host:path`, as git reads it: a colon before any slash.
        None => url.split_once(':').filter(|(host, _)| !host.contains('/') && host.contains('@')).map(|_| "ssh"),
    }
}

/// A NodeTemplate's ignored settings: `provider: ec2`.
pub fn node_template(at: At<'_>, t: &NodeTemplate) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if t.provider == ProviderKind::Ec2 {
        out.push(warn(
            at,
            &["provider"],
            format!(
                "`provider: ec2` is not in this build: `plan` reports an error for every group made from template `{}` and leaves its nodes out; the other groups are planned and applied",
                t.name
            ),
            Some("use `provider: local` to try the group on this machine"),
        ));
    }
    out
}

/// A Group's ignored settings: none today (`scale_in.pick: least-busy` is
/// built).
pub fn group(_at: At<'_>, _g: &Group) -> Vec<Diagnostic> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::compile::{compile, Input};
    use super::super::source::SourceFile;

    fn warnings(files: &[(&str, &str)]) -> Vec<String> {
        let mut files: Vec<SourceFile> =
            files.iter().map(|(p, t)| SourceFile { path: (*p).to_string(), text: (*t).to_string() }).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let config = compile(Input { root: Path::new("repo"), files: &files, revision: "none".into(), diags: Vec::new() })
            .unwrap_or_else(|d| panic!("{}", d.render(false)));
        config.warnings.0.iter().map(|d| format!("{} {} {}", d.location(), d.field, d.source_line.as_deref().unwrap_or(""))).collect()
    }

    const TEMPLATE: &str = "kind: NodeTemplate\nname: n\nprovider: local\nlocal: { command: run }\n";

    #[test]
    fn each_ignored_setting_is_named_at_its_key() {
        let project = "kind: Project\nname: p\ndaemon:\n  auto_apply: true\n  source: { git: https://h/r.git, webhook_secret: { env: H } }\n";
        let ec2 = "kind: NodeTemplate\nname: e\nprovider: ec2\nec2: { region: r, image: i, instance_type: t }\n";
        let group = "kind: Group\nname: g\ntemplate: n\nmin: 0\nmax: 2\nscale_in: { pick: least-busy, counter: c }\n---\nkind: Counter\nname: c\nsource: { push: {} }\n";
        assert_eq!(
            warnings(&[("scaler.yaml", project), ("e.yaml", ec2), ("n.yaml", TEMPLATE), ("g.yaml", group)]),
            vec![
                "e.yaml:3:1 provider provider: ec2",
                "scaler.yaml:5:13 daemon.source.git   source: { git: https://h/r.git, webhook_secret: { env: H } }",
            ]
        );
    }

    #[test]
    fn watching_and_auto_apply_are_built_and_have_no_warning() {
        for git in ["file:///srv/fleet.git", "/srv/fleet.git", "../fleet", "git://127.0.0.1/fleet.git"] {
            let project = format!("kind: Project\nname: p\ndaemon:\n  auto_apply: true\n  source: {{ git: \"{git}\", branch: prod, path: fleet, poll: 5s }}\n");
            assert_eq!(warnings(&[("scaler.yaml", &project)]), Vec::<String>::new(), "{git}");
        }
    }

    #[test]
    fn remotes_this_build_cannot_fetch_are_named() {
        assert_eq!(super::unfetchable("https://git.example/fleet.git"), Some("https"));
        assert_eq!(super::unfetchable("HTTPS://git.example/fleet.git"), Some("https"));
        assert_eq!(super::unfetchable("ssh://git@git.example/fleet.git"), Some("ssh"));
        assert_eq!(super::unfetchable("git@git.example:fleet.git"), Some("ssh"));
        for ok in ["file:///srv/fleet.git", "/srv/fleet.git", "fleet", "./a:b", "git://127.0.0.1:9418/fleet.git", "http://127.0.0.1:8080/fleet.git"] {
            assert_eq!(super::unfetchable(ok), None, "{ok}");
        }
    }

    #[test]
    fn a_config_without_them_has_no_warning() {
        let project = "kind: Project\nname: p\ndaemon: { listen: 127.0.0.1:1, evaluation_interval: 5s }\n";
        let group = "kind: Group\nname: g\ntemplate: n\nmin: 0\nmax: 2\nscale_in: { pick: oldest }\n";
        assert!(warnings(&[("scaler.yaml", project), ("n.yaml", TEMPLATE), ("g.yaml", group)]).is_empty());
    }
}
