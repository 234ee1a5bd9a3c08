//! Terminal output: colours only on a terminal, progress for long work.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use anstyle::{AnsiColor, Style};
use indicatif::{ProgressBar, ProgressStyle};

use crate::apply::Observer;
use crate::plan::{Action, Change};

/// Output settings of one command run.
#[derive(Debug, Clone)]
pub struct Ui {
    /// Colour on stdout.
    pub color: bool,
    /// Colour on stderr.
    pub err_color: bool,
    /// Only errors.
    pub quiet: bool,
}

impl Ui {
    /// Settings from the global flags: colours on a terminal unless
    /// `NO_COLOR` is set, or as `--color` says.
    pub fn new(choice: super::ColorChoice, quiet: bool) -> Ui {
        let env_allows = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let decide = |tty: bool| match choice {
            super::ColorChoice::Always => true,
            super::ColorChoice::Never => false,
            super::ColorChoice::Auto => env_allows && tty,
        };
        Ui { color: decide(std::io::stdout().is_terminal()), err_color: decide(std::io::stderr().is_terminal()), quiet }
    }

    fn paint(&self, on: bool, style: Style, text: &str) -> String {
        if on {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }

    /// `error: message` on stderr.
    pub fn error(&self, message: &str) {
        let tag = self.paint(self.err_color, Style::new().fg_color(Some(AnsiColor::Red.into())).bold(), "error:");
        eprintln!("{tag} {message}");
    }

    /// `warning: message` on stderr.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            let tag = self.paint(self.err_color, Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold(), "warning:");
            eprintln!("{tag} {message}");
        }
    }

    /// A status line on stderr.
    pub fn info(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Data on stdout.
    pub fn out(&self, text: &str) {
        let mut o = std::io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = o.write_all(b"\n");
        }
        let _ = o.flush();
    }

    /// Bold text when colours are on.
    pub fn bold(&self, text: &str) -> String {
        self.paint(self.color, Style::new().bold(), text)
    }

    /// Green text when colours are on.
    pub fn green(&self, text: &str) -> String {
        self.paint(self.color, Style::new().fg_color(Some(AnsiColor::Green.into())).bold(), text)
    }
}

/// `-o json` is a habit from other tools: a format, not a file name. Every
/// flag that takes a path where a format could be meant refuses the
/// format words with a hint (exit 2); `./json` is a file of that name.
pub fn not_a_format(flag: &str, what: &str, path: &std::path::Path) -> Result<(), super::Failure> {
    match path.to_str().filter(|p| matches!(*p, "json" | "yaml" | "yml" | "text" | "wide" | "table")) {
        Some(word) => Err(super::Failure {
            code: 2,
            message: format!("`{flag} {word}` looks like an output format; `{flag}` {what} (use `--json` for JSON on stdout, or `./{word}` for a path of that name)"),
        }),
        None => Ok(()),
    }
}

/// `1 host`, `2 hosts`, `0 hosts`: a count and its noun (plural by `s`).
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The one duration format of the command line: `250ms` under a second,
/// `6.0s` under a minute, then `1m2s`, `1h2m` (`1h0m5s` keeps its seconds).
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let secs = (ms + 500) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, s) {
        (0, _) => format!("{m}m{s}s"),
        (_, 0) => format!("{h}h{m}m"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// Apply progress: a bar on a terminal, one line per event otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    lock: Mutex<()>,
}

impl Progress {
    /// Progress on stderr.
    pub fn new(ui: &Ui) -> Progress {
        let bar = (!ui.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, quiet: ui.quiet, lock: Mutex::new(()) }
    }

    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        let _guard = self.lock.lock();
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn verb(action: Action, done: bool) -> &'static str {
    match (action, done) {
        (Action::Create, false) => "creating...",
        (Action::Create, true) => "created",
        (Action::Update, false) => "updating...",
        (Action::Update, true) => "updated",
        (Action::Replace, false) => "replacing...",
        (Action::Replace, true) => "replaced",
        (Action::Delete, false) => "destroying...",
        (Action::Delete, true) => "destroyed",
    }
}

impl Observer for Progress {
    fn begin(&self, total: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
        }
    }

    fn started(&self, change: &Change) {
        if let Some(bar) = &self.bar {
            bar.set_message(change.address.clone());
        }
        if change.node.is_some() {
            self.line(format!("{}: {}", change.address, verb(change.action, false)));
        }
    }

    fn finished(&self, change: &Change, result: &Result<(), String>, elapsed: Duration) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        match result {
            // Config objects are records: no time worth showing.
            Ok(()) if change.node.is_none() => self.line(format!("{}: {}", change.address, verb(change.action, true))),
            Ok(()) => self.line(format!("{}: {} ({})", change.address, verb(change.action, true), duration(elapsed))),
            Err(e) => self.line(format!("{}: failed after {}: {e}", change.address, duration(elapsed))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_duration_format() {
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_millis(0)), "0ms");
        assert_eq!(duration(Duration::from_millis(6_040)), "6.0s");
        assert_eq!(duration(Duration::from_millis(59_940)), "59.9s");
        assert_eq!(duration(Duration::from_millis(62_000)), "1m2s");
        assert_eq!(duration(Duration::from_secs(3_600 + 120)), "1h2m");
        assert_eq!(duration(Duration::from_secs(3_605)), "1h0m5s");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "host"), "1 host");
        assert_eq!(plural(0, "host"), "0 hosts");
        assert_eq!(plural(3, "host"), "3 hosts");
    }
}
