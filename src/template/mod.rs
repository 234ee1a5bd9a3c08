//! minijinja environments used across scaler.
//!
//! - [`shell_env`]: for commands (`run`, `sudo`, `local`, node commands): every
//!   `{{ }}` substitution is shell-quoted unless marked `| safe`, and
//!   undefined variables are errors.
//! - [`expr_env`]: for expressions (`when:`, trigger conditions, policy rules)
//!   and plain text templates (messages, bodies): strict undefined, no
//!   escaping.
//!
//! Must not depend on: any IO.

use minijinja::value::{Serde, Value};
use serde::Deserialize;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};

/// The custom auto-escape name for shell quoting.
const SHELL: &str = "shell";

/// Quotes `s` for a POSIX shell: unchanged when it only has safe characters,
/// else wrapped in single quotes with embedded single quotes as `'\''`.
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b',' | b'+' | b'%')
        });
    if safe {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn shell_formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        // Strict mode already errors on use; this guards `{{ x.missing }}` chains.
        return Err(Error::new(ErrorKind::UndefinedError, "undefined value in command"));
    }
    if value.is_safe() || !matches!(state.auto_escape(), AutoEscape::Custom(name) if name == SHELL) {
        return minijinja::escape_formatter(out, state, value);
    }
    let text = if value.is_none() { String::new() } else { value.to_string() };
    out.write_str(&shell_quote(&text)).map_err(Error::from)
}

/// How many instructions one rendering may run (a bound on loops that
/// would otherwise run until killed); `SCALER_TEMPLATE_FUEL` raises it.
pub const DEFAULT_FUEL: u64 = 1_000_000;

/// The fuel limit in force: `SCALER_TEMPLATE_FUEL`, else the default.
pub fn fuel() -> u64 {
    std::env::var("SCALER_TEMPLATE_FUEL").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(DEFAULT_FUEL)
}

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(fuel()));
    env
}

/// An environment whose templates shell-quote every substitution.
pub fn shell_env() -> Environment<'static> {
    let mut env = base_env();
    env.set_auto_escape_callback(|_| AutoEscape::Custom(SHELL.into()));
    env.set_formatter(shell_formatter);
    env
}

/// An environment for expressions and plain-text templates.
pub fn expr_env() -> Environment<'static> {
    let mut env = base_env();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

/// Renders a command template with shell-quoted substitutions.
pub fn render_command(src: &str, ctx: &serde_json::Value) -> Result<String, String> {
    shell_env().render_str(src, Value::from(Serde(ctx))).map_err(|e| explain(src, ctx, &e))
}

/// Renders a plain-text template (no quoting).
pub fn render_text(src: &str, ctx: &serde_json::Value) -> Result<String, String> {
    expr_env().render_str(src, Value::from(Serde(ctx))).map_err(|e| explain(src, ctx, &e))
}

/// A rendering error; an undefined value names the variable.
fn explain(src: &str, ctx: &serde_json::Value, e: &Error) -> String {
    if e.kind() == ErrorKind::UndefinedError {
        if let Some(name) = undefined_variables(src, ctx).into_iter().next() {
            return format!("undefined value: `{name}` is not defined");
        }
    }
    describe_error(e)
}

/// The variables (dotted: `node.port`) a template uses that `ctx` does not
/// define, in source order of first use. A template that does not compile
/// gives none (its syntax error is reported instead).
pub fn undefined_variables(src: &str, ctx: &serde_json::Value) -> Vec<String> {
    let env = expr_env();
    let Ok(tmpl) = env.template_from_str(src) else { return Vec::new() };
    let mut names: Vec<String> = tmpl.undeclared_variables(true).into_iter().filter_map(|n| missing_prefix(ctx, &n)).collect();
    names.sort();
    names.dedup();
    names
}

/// The shortest prefix of the dotted path `name` that `ctx` does not
/// define, if any (below a value that is not an object, such as a list or a
/// string, members are not checked).
fn missing_prefix(ctx: &serde_json::Value, name: &str) -> Option<String> {
    let mut at = ctx;
    let mut upto = 0;
    for part in name.split('.') {
        upto += part.len() + usize::from(upto > 0);
        match at {
            serde_json::Value::Object(map) => match map.get(part) {
                Some(v) => at = v,
                None => return Some(name[..upto].to_string()),
            },
            _ => return None,
        }
    }
    None
}

/// Checks that a template compiles; returns the error text otherwise.
pub fn check_template(src: &str) -> Result<(), String> {
    let env = expr_env();
    env.template_from_str(src).map(|_| ()).map_err(|e| describe_error(&e))
}

/// Checks that an expression compiles; returns the error text otherwise.
pub fn check_expression(src: &str) -> Result<(), String> {
    let env = expr_env();
    env.compile_expression(src).map(|_| ()).map_err(|e| describe_error(&e))
}

/// The variables an expression uses (top-level names only).
pub fn expression_variables(src: &str) -> Result<std::collections::BTreeSet<String>, String> {
    let env = expr_env();
    let expr = env.compile_expression(src).map_err(|e| describe_error(&e))?;
    Ok(expr.undeclared_variables(false).into_iter().collect())
}

/// The variables a template uses (top-level names only).
pub fn template_variables(src: &str) -> Result<std::collections::BTreeSet<String>, String> {
    let env = expr_env();
    let tmpl = env.template_from_str(src).map_err(|e| describe_error(&e))?;
    Ok(tmpl.undeclared_variables(false).into_iter().collect())
}

/// Evaluates an expression to a JSON value.
pub fn eval_expression(src: &str, ctx: &serde_json::Value) -> Result<serde_json::Value, String> {
    let env = expr_env();
    let expr = env.compile_expression(src).map_err(|e| describe_error(&e))?;
    let v = expr.eval(Value::from(Serde(ctx))).map_err(|e| describe_error(&e))?;
    serde_json::Value::deserialize(v).map_err(|e| e.to_string())
}

/// Renders an uploaded file (`put` with `template: true`): like
/// [`render_text`], keeping a trailing newline; `{% include "NAME" %}` gets
/// the text of NAME from `include` (the caller confines it to the repo).
pub fn render_file(
    text: &str,
    ctx: &serde_json::Value,
    include: impl Fn(&str) -> Result<String, String> + Send + Sync + 'static,
) -> Result<String, String> {
    let mut env = expr_env();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| describe_error(&e))?;
    env.set_syntax(syntax);
    env.set_loader(move |name| include(name).map(Some).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("cannot include: {e}"))));
    env.render_str(text, minijinja::Value::from(minijinja::value::Serde(ctx))).map_err(|e| describe_error(&e))
}

/// A one-line description of a minijinja error: kind detail, without the
/// template name noise.
pub fn describe_error(e: &Error) -> String {
    if e.kind() == ErrorKind::OutOfFuel {
        return format!("the template ran more than {} instructions (a runaway loop?); raise the limit with SCALER_TEMPLATE_FUEL", fuel());
    }
    let mut msg = match e.detail() {
        Some(d) => format!("{}: {}", kind_text(e.kind()), d),
        None => kind_text(e.kind()).to_string(),
    };
    if let Some(line) = e.line() {
        if line > 1 {
            msg.push_str(&format!(" (template line {line})"));
        }
    }
    msg
}

fn kind_text(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::BadEscape => "bad escape",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::TooManyArguments => "too many arguments",
        _ => "template error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_runaway_loop_runs_out_of_fuel_with_a_clear_error() {
        let src = "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x{% endfor %}{% endfor %}{% endfor %}";
        let e = render_text(src, &json!({})).unwrap_err();
        assert!(e.contains("more than 1000000 instructions") && e.contains("SCALER_TEMPLATE_FUEL"), "{e}");
        assert_eq!(render_text("{% for a in range(3) %}{{ a }}{% endfor %}", &json!({})).unwrap(), "012");
    }

    #[test]
    fn an_undefined_value_names_the_variable() {
        let ctx = json!({"node": {"name": "web-01", "port": 18001}});
        assert_eq!(render_text("{{ node.prot }}", &ctx).unwrap_err(), "undefined value: `node.prot` is not defined");
        assert_eq!(render_command("x {{ nodes.port }}", &ctx).unwrap_err(), "undefined value: `nodes` is not defined");
        assert_eq!(undefined_variables("{{ node.name }} {{ node.prot }} {% for x in [1] %}{{ x }}{% endfor %}", &ctx), vec!["node.prot"]);
    }

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("web-01"), "web-01");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("; rm -rf /"), "'; rm -rf /'");
        assert_eq!(shell_quote("$(id)"), "'$(id)'");
    }

    #[test]
    fn commands_quote_substitutions_unless_safe() {
        let ctx = json!({"x": "a; touch /tmp/pwned", "n": 3});
        assert_eq!(render_command("echo {{ x }}", &ctx).unwrap(), "echo 'a; touch /tmp/pwned'");
        assert_eq!(render_command("echo {{ x | safe }}", &ctx).unwrap(), "echo a; touch /tmp/pwned");
        assert_eq!(render_command("sleep {{ n }}", &ctx).unwrap(), "sleep 3");
    }

    #[test]
    fn undefined_is_an_error() {
        let err = render_command("echo {{ nope }}", &json!({})).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(render_text("{{ a.b }}", &json!({"a": {}})).is_err());
    }

    #[test]
    fn expressions() {
        assert_eq!(eval_expression("a > 2 and b", &json!({"a": 3, "b": true})).unwrap(), json!(true));
        assert!(check_expression("a >").is_err());
        let vars = expression_variables("avg(cpu) > limit").unwrap();
        assert!(vars.contains("cpu") && vars.contains("limit") && vars.contains("avg"), "{vars:?}");
    }
}
