//! `put` and `get` steps: files between the config repo and a host through
//! the [`Transport`] (SFTP over SSH, or the local file system), replaced
//! atomically; `put` may render the file (`template: true`), and in check
//! mode shows a diff against the remote file instead of uploading.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;

use super::host::Outcome;
use super::Inner;
use crate::exec::{HostSpec, PutOptions, StepResult, Transport};
use crate::model::{Get, Put};
use crate::template;

impl Inner {
    pub(super) async fn put(&self, p: &Put, vctx: &Value, t: &dyn Transport, r: &mut StepResult, registered: &BTreeSet<String>) -> Outcome {
        let src = match template::render_text(&p.src, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`put.src`", &p.src, e, registered),
        };
        let dest = match template::render_text(&p.dest, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`put.dest`", &p.dest, e, registered),
        };
        // A repository file: never one outside the repo (after `..` and
        // symlinks), and its contents are not shown when refused.
        let raw = match crate::config::repo::read(&self.opts.root, &src) {
            Ok(d) => d,
            Err(e) => return Outcome::Failed(format!("`put.src`: {e}")),
        };
        let data = if p.template {
            let text = match String::from_utf8(raw) {
                Ok(t) => t,
                Err(_) => return Outcome::Failed(format!("`{src}` is not UTF-8 text and cannot be rendered (`template: true`)")),
            };
            let root = self.opts.root.clone();
            let include = move |name: &str| crate::config::repo::read_to_string(&root, name).map_err(|e| e.to_string());
            match template::render_file(&text, vctx, include) {
                Ok(s) => s.into_bytes(),
                Err(e) => return self.render_failure(&format!("`{src}`"), &text, e, registered),
            }
        } else {
            raw
        };
        let mode = p.mode.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok());
        let mut shown = format!("upload {src} -> {dest} ({} bytes", data.len());
        if let Some(m) = &p.mode {
            shown.push_str(&format!(", mode {m}"));
        }
        if let Some(o) = &p.owner {
            shown.push_str(&format!(", owner {o}"));
        }
        shown.push(')');
        r.action = Some(shown);
        if self.opts.check {
            match t.read_if_exists(&dest).await {
                Ok(old) => r.diff = Some(diff(&dest, old.as_deref(), &data)),
                Err(e) => return self.transport_failure(e),
            }
            return Outcome::Skipped("check mode: not uploaded".into());
        }
        match t.put(&data, &dest, &PutOptions { mode, owner: p.owner.clone() }).await {
            Ok(()) => Outcome::Done { changed: true },
            Err(e) => self.transport_failure(e),
        }
    }

    pub(super) async fn get(
        &self,
        host: &HostSpec,
        g: &Get,
        vctx: &Value,
        t: &dyn Transport,
        r: &mut StepResult,
        registered: &BTreeSet<String>,
    ) -> Outcome {
        let src = match template::render_text(&g.src, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`get.src`", &g.src, e, registered),
        };
        let dest = match template::render_text(&g.dest, vctx) {
            Ok(s) => s,
            Err(e) => return self.render_failure("`get.dest`", &g.dest, e, registered),
        };
        r.action = Some(format!("download {src} -> {dest}"));
        if self.opts.check {
            return Outcome::Skipped("check mode: not downloaded".into());
        }
        let data = match t.get(&src).await {
            Ok(d) => d,
            Err(e) => return self.transport_failure(e),
        };
        let dest_path = PathBuf::from(&dest);
        let changed = std::fs::read(&dest_path).map_or(true, |old| old != data);
        match crate::exec::local::write_atomic(&dest_path, &data, None) {
            Ok(()) => Outcome::Done { changed },
            Err(e) => Outcome::Failed(format!("cannot write `{dest}` (from `{}`): {e}", host.name)),
        }
    }
}

/// A unified diff of the remote file against the rendered one.
fn diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let new_text = std::str::from_utf8(new);
    match (old, new_text) {
        (None, Ok(n)) => {
            let d = similar::TextDiff::from_lines("", n);
            format!("{}", d.unified_diff().header("/dev/null", &format!("{path} (new)")))
        }
        (Some(o), Ok(n)) => match std::str::from_utf8(o) {
            Ok(o) if o == n => "no change".to_string(),
            Ok(o) => {
                let d = similar::TextDiff::from_lines(o, n);
                format!("{}", d.unified_diff().header(&format!("{path} (remote)"), &format!("{path} (rendered)")))
            }
            Err(_) => format!("binary remote file ({} bytes) would be replaced ({} bytes)", o.len(), n.len()),
        },
        (Some(o), Err(_)) if o == new => "no change".to_string(),
        (o, Err(_)) => format!(
            "binary file: {} -> {} bytes",
            o.map_or("absent".to_string(), |o| o.len().to_string()),
            new.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs() {
        assert_eq!(diff("/f", Some(b"a\n"), b"a\n"), "no change");
        let d = diff("/f", Some(b"a\nb\n"), b"a\nc\n");
        assert!(d.contains("-b") && d.contains("+c") && d.contains("/f (remote)"), "{d}");
        assert!(diff("/f", None, b"x\n").contains("+x"));
    }
}
