//! Secret scrubbing: every secret value scaler reads is registered here, and
//! captured output, error texts and log lines pass through [`scrub`] before
//! they are shown or stored, so a command that echoes its password, or a
//! server that answers with the request's headers, cannot leak it.
//!
//! Each secret is matched as written and in its common encodings: base64
//! (standard and URL-safe, with and without padding), percent-encoding,
//! lower- and upper-case hex, JSON string escaping, and shell quoting (as a
//! rendered command shows it). Matches become
//! [`MASK`]. Values shorter than [`MIN_LEN`] bytes are not scrubbed (masking
//! every `a` would garble all output); `validate` cannot see secret values,
//! so this limit is documented in docs/config.md.
//!
//! Must not depend on: any scaler module but `template` (shell quoting).

use std::sync::{Arc, RwLock};

use base64::Engine;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The shortest value that is scrubbed.
pub const MIN_LEN: usize = 3;

/// The known secrets, longest form first (so that a longer encoding is
/// replaced before a shorter one inside it).
#[derive(Debug, Default)]
struct Known {
    forms: Vec<String>,
}

static KNOWN: RwLock<Option<Arc<Known>>> = RwLock::new(None);

/// Every form of `secret` that output may carry.
fn forms_of(secret: &str) -> Vec<String> {
    let b = secret.as_bytes();
    let mut out = vec![
        secret.to_string(),
        base64::engine::general_purpose::STANDARD.encode(b),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(b),
        base64::engine::general_purpose::URL_SAFE.encode(b),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC).to_string(),
        hex::encode(b),
        hex::encode_upper(b),
        crate::template::shell_quote(secret),
    ];
    if let Ok(json) = serde_json::to_string(secret) {
        out.push(json.trim_matches('"').to_string());
    }
    out.retain(|f| f.len() >= MIN_LEN);
    out
}

/// Registers a secret value: from now on [`scrub`] masks it.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut guard = KNOWN.write().unwrap_or_else(|p| p.into_inner());
    let mut forms = guard.as_ref().map(|k| k.forms.clone()).unwrap_or_default();
    if forms.iter().any(|f| f == secret) {
        return;
    }
    forms.extend(forms_of(secret));
    forms.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    forms.dedup();
    *guard = Some(Arc::new(Known { forms }));
}

/// `text` with every known secret (in every form) masked.
pub fn scrub(text: &str) -> String {
    let known = KNOWN.read().unwrap_or_else(|p| p.into_inner()).clone();
    let Some(known) = known else { return text.to_string() };
    let mut out = text.to_string();
    for f in &known.forms {
        if out.contains(f.as_str()) {
            out = out.replace(f.as_str(), MASK);
        }
    }
    out
}

/// Scrubs every string inside a JSON value, in place.
pub fn scrub_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => {
            let clean = scrub(s);
            if clean != *s {
                *s = clean;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(scrub_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(scrub_json),
        _ => {}
    }
}

/// Whether any secret is registered (lets hot paths skip work).
pub fn any() -> bool {
    KNOWN.read().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// A writer that scrubs each write (for the log output).
pub struct ScrubWriter<W> {
    inner: W,
}

impl<W> ScrubWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> ScrubWriter<W> {
        ScrubWriter { inner }
    }
}

impl<W: std::io::Write> std::io::Write for ScrubWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // tracing-subscriber writes one whole event per call.
        let text = String::from_utf8_lossy(buf);
        let clean = scrub(&text);
        self.inner.write_all(clean.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_masked_as_written_and_encoded() {
        let s = "hunter2-Sekret/+=";
        register(s);
        let b64 = base64::engine::general_purpose::STANDARD.encode(s);
        let url = percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string();
        let text = format!("pw={s} auth=Basic {b64} q={url} hex={} json={}", hex::encode(s), serde_json::to_string(s).unwrap());
        let clean = scrub(&text);
        assert!(!clean.contains(s) && !clean.contains(&b64) && !clean.contains(&url) && !clean.contains(&hex::encode(s)), "{clean}");
        assert!(clean.starts_with("pw=*** auth=Basic *** q=*** hex=*** json="), "{clean}");
        let mut v = serde_json::json!({"out": [format!("x {s} y")], "n": 1});
        scrub_json(&mut v);
        assert_eq!(v, serde_json::json!({"out": ["x *** y"], "n": 1}));
    }

    #[test]
    fn short_values_and_unknown_text_are_left_alone() {
        register("ab");
        assert_eq!(scrub("ab cd ab"), "ab cd ab");
    }

    #[test]
    fn the_writer_scrubs_what_it_writes() {
        register("writer-secret-9");
        let mut out = Vec::new();
        std::io::Write::write_all(&mut ScrubWriter::new(&mut out), b"token writer-secret-9 end\n").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "token *** end\n");
    }
}
