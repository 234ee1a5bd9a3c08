//! Terraform-like rendering of a plan.

use std::fmt::Write;

use anstyle::{AnsiColor, Style};

use super::{Action, Plan};

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderOptions {
    /// Use ANSI colours.
    pub color: bool,
}

fn paint(color: bool, style: Style, text: &str) -> String {
    if color {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_string()
    }
}

fn style_of(action: Action) -> Style {
    let c = match action {
        Action::Create => AnsiColor::Green,
        Action::Update => AnsiColor::Yellow,
        Action::Replace => AnsiColor::Magenta,
        Action::Delete => AnsiColor::Red,
    };
    Style::new().fg_color(Some(c.into()))
}

/// Renders the plan for people.
pub fn render(plan: &Plan, opts: RenderOptions) -> String {
    let mut out = String::new();
    let bold = Style::new().bold();
    let dim = Style::new().dimmed();
    if !plan.refresh.is_empty() {
        // Unfinished work: never "No changes" while state lists it.
        let _ = writeln!(out, "Unfinished in state (launched, not recorded as running; apply records them):");
        for r in &plan.refresh {
            let symbol = paint(opts.color, style_of(Action::Update), "  ~");
            let _ = writeln!(out, "{symbol} node  {}  {}", paint(opts.color, bold, &format!("{}/{}", r.group, r.name)), paint(opts.color, dim, "(creating -> running)"));
        }
        out.push('\n');
    }
    if !plan.changes.is_empty() {
        let kind_w = plan.changes.iter().map(|c| c.kind.len()).max().unwrap_or(4).max(4);
        let name_w = plan.changes.iter().map(|c| display_name(c).len()).max().unwrap_or(4).clamp(4, 40);
        for c in &plan.changes {
            let style = style_of(c.action);
            let symbol = paint(opts.color, style, &format!("{:>3}", c.action.symbol()));
            let name = display_name(c);
            let mut detail = Vec::new();
            if let Some(s) = &c.summary {
                detail.push(s.clone());
            }
            if let Some(r) = &c.reason {
                detail.push(r.clone());
            }
            let detail = if detail.is_empty() {
                String::new()
            } else {
                format!("  {}", paint(opts.color, dim, &format!("({})", detail.join("; "))))
            };
            let line = format!("{symbol} {:<kind_w$}  {}{}", c.kind, paint(opts.color, bold, &format!("{name:<name_w$}")), detail);
            let _ = writeln!(out, "{}", line.trim_end());
            for line in &c.diff {
                let st = if line.starts_with('-') { style_of(Action::Delete) } else { style_of(Action::Create) };
                let _ = writeln!(out, "        {}", paint(opts.color, st, line));
            }
        }
        out.push('\n');
    }
    out.push_str(&render_summary(plan, opts, true));
    out
}

/// The plan's summary line (`Plan: 2 to add, ...` or `No changes. ...`)
/// and its errors: all that `plan -q` prints. With `warnings`, also the
/// partial-plan warning and the note on left-out groups.
pub fn render_summary(plan: &Plan, opts: RenderOptions, warnings: bool) -> String {
    let mut out = String::new();
    let bold = Style::new().bold();
    let red = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    if plan.changes.is_empty() && !plan.refresh.is_empty() {
        let _ = writeln!(out, "{} 0 to add, 0 to change, 0 to destroy; {} unfinished node record(s) to complete.", paint(opts.color, bold, "Plan:"), plan.refresh.len());
    } else if plan.changes.is_empty() && plan.group_errors.is_empty() {
        out.push_str("No changes. The fleet matches the configuration.\n");
    } else if plan.changes.is_empty() {
        out.push_str("No changes to the groups this build can plan; some groups are left out (below).\n");
    } else {
        let s = plan.summary;
        let _ = writeln!(
            out,
            "{} {} to add, {} to change, {} to destroy.",
            paint(opts.color, bold, "Plan:"),
            s.add,
            s.change,
            s.destroy
        );
    }
    if warnings && plan.filters.is_partial() {
        let _ = writeln!(
            out,
            "\nWarning: this plan is limited by --target/--exclude; the applied revision will not be recorded."
        );
    }
    for e in &plan.errors {
        let _ = writeln!(out, "\n{} {e}", paint(opts.color, red, "Error:"));
    }
    for e in &plan.group_errors {
        let _ = writeln!(out, "\n{} {}", paint(opts.color, red, "Error:"), e.message);
    }
    if warnings && !plan.group_errors.is_empty() && plan.is_allowed() && plan.has_changes() {
        let _ = writeln!(
            out,
            "\nThe changes above can still be applied; while a group is left out, apply does not record the config revision and exits 1."
        );
    }
    for v in &plan.violations {
        let _ = writeln!(
            out,
            "\n{} policy `{}` rule `{}` denies this plan: {}",
            paint(opts.color, red, "Error:"),
            v.policy,
            v.rule,
            v.message
        );
    }
    out
}

fn display_name(c: &super::Change) -> String {
    match &c.node {
        Some(n) => format!("{}/{}", n.group, c.name),
        None => c.name.clone(),
    }
}
