//! The boolean layer of a condition: the lexer splits the top level into
//! `and`/`or`/`not`, parentheses, comparisons and operand text; the parser
//! builds the [`Node`] tree; each operand compiles to a minijinja
//! expression, plus the native form of a plainly written call.

use std::fmt;

use super::calls::{native_call, overs_in};
use super::eval::ENV;
use super::{Condition, Operand};
use crate::rules::condition::Op;

/// A parsed condition.
pub(super) enum Node {
    Or(Vec<Node>),
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp(Box<Operand>, Op, Box<Operand>),
    Bool(Box<Operand>),
}

impl Node {
    /// The longest `over` of any call below (ms), 0 when none.
    pub(super) fn lookback_ms(&self) -> i64 {
        match self {
            Node::Or(list) | Node::And(list) => list.iter().map(Node::lookback_ms).max().unwrap_or(0),
            Node::Not(inner) => inner.lookback_ms(),
            Node::Cmp(l, _, r) => l.lookback_ms().max(r.lookback_ms()),
            Node::Bool(operand) => operand.lookback_ms(),
        }
    }
}

impl Node {
    /// Every name the operands below use (counter names among them).
    pub(super) fn names(&self, out: &mut std::collections::BTreeSet<String>) {
        match self {
            Node::Or(list) | Node::And(list) => list.iter().for_each(|n| n.names(out)),
            Node::Not(inner) => inner.names(out),
            Node::Cmp(l, _, r) => {
                out.extend(l.names());
                out.extend(r.names());
            }
            Node::Bool(operand) => out.extend(operand.names()),
        }
    }
}

impl Condition {
    /// Parses and compiles an expression.
    pub fn compile(src: &str) -> Result<Condition, String> {
        let tokens = lex(src)?;
        let mut p = Parser { tokens: &tokens, pos: 0 };
        let node = p.or()?;
        if let Some(t) = p.tokens.get(p.pos) {
            return Err(format!("unexpected {t} after a complete condition"));
        }
        Ok(Condition { src: src.to_string(), node })
    }
}

impl Operand {
    /// Compiles one operand (also used for `target_value.metric`).
    pub fn compile(text: &str) -> Result<Operand, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("expected a value".into());
        }
        let expr = ENV
            .compile_expression_owned(text.to_string())
            .map_err(|e| crate::template::describe_error(&e))?;
        Ok(Operand { text: text.to_string(), literal: text.parse::<f64>().ok(), native: native_call(text), over_ms: overs_in(text), expr })
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    And,
    Or,
    Not,
    Cmp(Op),
    Text(String),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Open => f.write_str("`(`"),
            Tok::Close => f.write_str("`)`"),
            Tok::And => f.write_str("`and`"),
            Tok::Or => f.write_str("`or`"),
            Tok::Not => f.write_str("`not`"),
            Tok::Cmp(op) => write!(f, "`{op}`"),
            Tok::Text(t) => write!(f, "`{t}`"),
        }
    }
}

/// Splits the top level of an expression into boolean tokens and operand
/// text. Brackets, strings and function calls stay inside operands; a
/// parenthesis opens a group only when it holds a comparison or a boolean
/// word at its own top level.
fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let b = src.as_bytes();
    let mut toks = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let flush = |text: &mut String, toks: &mut Vec<Tok>| {
        let t = text.trim();
        if !t.is_empty() {
            toks.push(Tok::Text(t.to_string()));
        }
        text.clear();
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' {
            let end = skip_string(b, i)?;
            text.push_str(&src[i..end]);
            i = end;
            continue;
        }
        if c == b'(' || c == b'[' || c == b'{' {
            let end = matching(b, i)?;
            let prev = text.trim_end().chars().last();
            let call = c != b'(' || prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == ')' || p == ']');
            if !call && has_boolean_top(&src[i + 1..end - 1]) {
                flush(&mut text, &mut toks);
                toks.push(Tok::Open);
                toks.extend(lex(&src[i + 1..end - 1])?);
                toks.push(Tok::Close);
            } else {
                text.push_str(&src[i..end]);
            }
            i = end;
            continue;
        }
        if c == b')' || c == b']' || c == b'}' {
            return Err(format!("unbalanced `{}` at column {}", c as char, i + 1));
        }
        if let Some((op, len)) = cmp_at(b, i) {
            flush(&mut text, &mut toks);
            toks.push(Tok::Cmp(op));
            i += len;
            continue;
        }
        if let Some((tok, len)) = word_at(src, i) {
            flush(&mut text, &mut toks);
            toks.push(tok);
            i += len;
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or(' ');
        text.push(ch);
        i += ch.len_utf8();
    }
    flush(&mut text, &mut toks);
    Ok(toks)
}

pub(super) fn skip_string(b: &[u8], start: usize) -> Result<usize, String> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == q => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(format!("unterminated string starting at column {}", start + 1))
}

pub(super) fn matching(b: &[u8], start: usize) -> Result<usize, String> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                i = skip_string(b, i)?;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Err(format!("`{}` at column {} is never closed", b[start] as char, start + 1))
}

fn cmp_at(b: &[u8], i: usize) -> Option<(Op, usize)> {
    let two = b.get(i..i + 2);
    for (s, op) in [(">=", Op::Ge), ("<=", Op::Le), ("==", Op::Eq), ("!=", Op::Ne)] {
        if two == Some(s.as_bytes()) {
            return Some((op, 2));
        }
    }
    match b[i] {
        b'>' => Some((Op::Gt, 1)),
        b'<' => Some((Op::Lt, 1)),
        _ => None,
    }
}

fn word_at(src: &str, i: usize) -> Option<(Tok, usize)> {
    let b = src.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    if i > 0 && ident(b[i - 1]) {
        return None;
    }
    for (w, tok) in [("and", Tok::And), ("or", Tok::Or), ("not", Tok::Not)] {
        if src[i..].starts_with(w) && !b.get(i + w.len()).is_some_and(|c| ident(*c) || *c == b'(') {
            return Some((tok, w.len()));
        }
    }
    None
}

fn has_boolean_top(inner: &str) -> bool {
    lex(inner).is_ok_and(|t| t.iter().any(|t| !matches!(t, Tok::Text(_))))
}

struct Parser<'a> {
    tokens: &'a [Tok],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos)
    }

    fn or(&mut self) -> Result<Node, String> {
        let mut list = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            list.push(self.and()?);
        }
        Ok(if list.len() == 1 { list.remove(0) } else { Node::Or(list) })
    }

    fn and(&mut self) -> Result<Node, String> {
        let mut list = vec![self.not()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            list.push(self.not()?);
        }
        Ok(if list.len() == 1 { list.remove(0) } else { Node::And(list) })
    }

    fn not(&mut self) -> Result<Node, String> {
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Node, String> {
        match self.peek().cloned() {
            Some(Tok::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err("expected `)`".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Text(t)) => {
                self.pos += 1;
                let left = Operand::compile(&t)?;
                if let Some(Tok::Cmp(op)) = self.peek().cloned() {
                    self.pos += 1;
                    let right = match self.peek().cloned() {
                        Some(Tok::Text(r)) => {
                            self.pos += 1;
                            Operand::compile(&r)?
                        }
                        Some(other) => return Err(format!("expected a value after `{op}`, found {other}")),
                        None => return Err(format!("expected a value after `{op}`")),
                    };
                    if let Some(Tok::Cmp(op2)) = self.peek() {
                        return Err(format!("chained comparison `{op}` ... `{op2}`: join two comparisons with `and`"));
                    }
                    return Ok(Node::Cmp(Box::new(left), op, Box::new(right)));
                }
                Ok(Node::Bool(Box::new(left)))
            }
            Some(other) => Err(format!("expected a condition, found {other}")),
            None => Err("expected a condition, found the end".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_boolean_structure() {
        for ok in [
            "last(cpu) > 80",
            "avg(cpu, over=\"2m\") >= 80 and last(q) < 3",
            "not (last(cpu) > 80 or last(q) == 0)",
            "(avg(cpu) + max(cpu)) / 2 > 50",
            "any(cpu, gt=80, group=\"web\")",
            "last(\"web-ok\") != 1",
            "max(cpu, over='1m') <= 10 or (last(q) > 1 and last(q) < 5)",
        ] {
            assert!(Condition::compile(ok).is_ok(), "{ok}");
        }
        for (bad, msg) in [
            ("last(cpu) >", "expected a value after `>`"),
            ("1 < last(cpu) < 3", "chained comparison"),
            ("(last(cpu) > 1", "never closed"),
            ("last(cpu) > 1)", "unbalanced"),
            ("and last(cpu) > 1", "expected a condition"),
            ("last(cpu) > 1 last(q)", "unexpected"),
        ] {
            let e = Condition::compile(bad).err().unwrap_or_default();
            assert!(e.contains(msg), "{bad}: {e}");
        }
    }
}
