//! `prompt` steps: the [`Prompter`] seam that answers them (the terminal, or
//! nobody), and asking once per question for every host of a run.

use std::collections::BTreeSet;
use std::sync::Mutex as StdMutex;

use serde_json::{Map, Value};

use super::host::Outcome;
use super::Inner;
use crate::exec::StepResult;
use crate::model::Prompt;
use crate::template;

/// Answers `prompt` steps.
pub trait Prompter: Send + Sync {
    /// Whether a person can answer.
    fn interactive(&self) -> bool;
    /// Asks; `Err` when no answer can be read.
    fn ask(&self, text: &str, default: Option<&str>) -> Result<String, String>;
}

/// Asks on the terminal (stdin), one question at a time.
pub struct TerminalPrompter {
    lock: StdMutex<()>,
    interactive: bool,
}

impl TerminalPrompter {
    /// Interactive when stdin is a terminal.
    pub fn new() -> TerminalPrompter {
        use std::io::IsTerminal;
        TerminalPrompter { lock: StdMutex::new(()), interactive: std::io::stdin().is_terminal() }
    }
}

impl Default for TerminalPrompter {
    fn default() -> Self {
        TerminalPrompter::new()
    }
}

impl Prompter for TerminalPrompter {
    fn interactive(&self) -> bool {
        self.interactive
    }

    fn ask(&self, text: &str, default: Option<&str>) -> Result<String, String> {
        use std::io::{BufRead, Write};
        let _guard = self.lock.lock().map_err(|_| "prompt lock poisoned".to_string())?;
        let mut err = std::io::stderr().lock();
        let _ = match default {
            Some(d) => write!(err, "{text} [{d}]: "),
            None => write!(err, "{text}: "),
        };
        let _ = err.flush();
        let mut line = String::new();
        let n = std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            return default.map(str::to_string).ok_or_else(|| "no answer (end of input)".to_string());
        }
        let answer = line.trim_end_matches(['\n', '\r']).to_string();
        match (answer.is_empty(), default) {
            (true, Some(d)) => Ok(d.to_string()),
            _ => Ok(answer),
        }
    }
}

/// Nobody to ask (`scaler exec`).
pub struct NonInteractive;
impl Prompter for NonInteractive {
    fn interactive(&self) -> bool {
        false
    }
    fn ask(&self, _: &str, _: Option<&str>) -> Result<String, String> {
        Err("no terminal".into())
    }
}

impl Inner {
    /// A `prompt` step on one host: a value already given (`--var` or an
    /// earlier answer on this host) is kept; otherwise the prompter asks,
    /// once per question text for the whole run, or the default is used.
    pub(super) async fn prompt(
        &self,
        p: &Prompt,
        ctx: &mut Map<String, Value>,
        vctx: &Value,
        r: &mut StepResult,
        registered: &BTreeSet<String>,
    ) -> Outcome {
        if let Some(v) = ctx.get(&p.var) {
            r.action = Some(format!("{} = {}", p.var, v.as_str().map_or_else(|| v.to_string(), str::to_string)));
            return Outcome::Done { changed: false };
        }
        let text = match template::render_text(&p.text, vctx) {
            Ok(t) => t,
            Err(e) => return self.render_failure("the prompt", &p.text, e, registered),
        };
        let answer = if self.prompter.interactive() {
            let key = (p.var.clone(), text.clone());
            let known = self.answers.lock().ok().and_then(|a| a.get(&key).cloned());
            match known {
                Some(a) => Ok(a),
                None => {
                    let prompter = self.prompter.clone();
                    let (q, d) = (text.clone(), p.default.clone());
                    let asked = tokio::task::spawn_blocking(move || prompter.ask(&q, d.as_deref()))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                    if let (Ok(a), Ok(mut map)) = (&asked, self.answers.lock()) {
                        map.insert(key, a.clone());
                    }
                    asked
                }
            }
        } else {
            p.default.clone().ok_or_else(|| format!("prompt `{}` needs an answer: pass `--var {}=VALUE`", p.var, p.var))
        };
        match answer {
            Ok(a) => {
                r.action = Some(format!("{} = {a}", p.var));
                ctx.insert(p.var.clone(), Value::String(a));
                Outcome::Done { changed: false }
            }
            Err(e) => Outcome::Failed(format!("prompt `{}`: {e}", p.var)),
        }
    }
}
