//! The `notify.webhook` action: one POST with a rendered body, an HMAC
//! signature and an idempotency key.
//!
//! 2xx succeeds; 408, 429, 5xx, timeouts and connection failures are
//! retryable; any other status (4xx, 3xx: redirects are not followed) is not,
//! nor is a server certificate that does not verify (see [`super::tls`]).

use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::Sha256;

use super::{ActionContext, ActionError, ActionOutput, Executor};
use crate::config::read_secret;
use crate::model::{ValueOrSecret, Webhook};

/// `X-Signature` header name.
pub const SIGNATURE_HEADER: &str = "x-signature";
/// `Idempotency-Key` header name.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// `sha256=<hex hmac-sha256(secret, body)>`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

/// The body: the template rendered, or the whole context as JSON.
fn body(ctx: &ActionContext, w: &Webhook) -> Result<String, ActionError> {
    match &w.body {
        Some(t) => super::render("webhook: body", t, ctx),
        None => Ok(ctx.template_context().to_string()),
    }
}

/// JSON when the body parses as JSON, else plain text.
fn content_type(body: &str) -> &'static str {
    if serde_json::from_str::<serde_json::Value>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    }
}

fn headers(ex: &Executor, ctx: &ActionContext, w: &Webhook, body: &str) -> Result<HeaderMap, ActionError> {
    let mut map = HeaderMap::new();
    map.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(body)));
    for (name, value) in &w.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| ActionError::permanent(format!("webhook: `{name}` is not a valid header name")))?;
        let (text, secret) = match value {
            ValueOrSecret::Value(v) => (v.clone(), false),
            ValueOrSecret::Secret(r) => (
                read_secret(&ex.config.root, r)
                    .map_err(|e| ActionError::permanent(format!("webhook: header `{name}`: {e}")))?
                    .expose_secret()
                    .to_string(),
                true,
            ),
        };
        let mut hv = HeaderValue::from_str(&text)
            .map_err(|_| ActionError::permanent(format!("webhook: header `{name}` has a value that is not valid in a header")))?;
        hv.set_sensitive(secret);
        map.insert(header, hv);
    }
    if let Some(r) = &w.secret {
        let secret = read_secret(&ex.config.root, r).map_err(|e| ActionError::permanent(format!("webhook: secret: {e}")))?;
        let sig = signature(secret.expose_secret().as_bytes(), body.as_bytes());
        let hv = HeaderValue::from_str(&sig).map_err(|_| ActionError::permanent("webhook: signature is not a header value"))?;
        map.insert(HeaderName::from_static(SIGNATURE_HEADER), hv);
    }
    let key = HeaderValue::from_str(&ctx.idempotency_key())
        .map_err(|_| ActionError::permanent("webhook: the job key is not valid in a header"))?;
    map.insert(HeaderName::from_static(IDEMPOTENCY_HEADER), key);
    Ok(map)
}

pub(super) async fn execute(ex: &Executor, ctx: &ActionContext, w: &Webhook) -> Result<ActionOutput, ActionError> {
    let url = super::http_url("webhook", &w.url)?;
    let body = body(ctx, w)?;
    let headers = headers(ex, ctx, w, &body)?;
    let what = format!("webhook `{}`", w.url);
    let client = ex.client(&what, &url, w.ca_file.as_deref()).await?;
    let resp = client
        .post(url)
        .timeout(ex.opts.http_timeout)
        .headers(headers)
        .body(body.clone())
        .send()
        .await
        .map_err(|e| ex.http_error(&what, &e))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(ActionOutput {
            result: json!({
                "url": w.url,
                "status": status.as_u16(),
                "bytes": body.len(),
                "signed": w.secret.is_some(),
                "idempotency_key": ctx.idempotency_key(),
            }),
            mutations: Vec::new(),
        });
    }
    let detail = super::snippet(&text, 200);
    let message = format!(
        "{what} answered {}{}",
        status.as_u16(),
        if detail.is_empty() { String::new() } else { format!(": {detail}") }
    );
    let retryable = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
    Err(ActionError { message, retryable, result: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_rfc_4231_case_2() {
        // HMAC-SHA256 test case 2 of RFC 4231: key "Jefe".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn content_type_follows_the_body() {
        assert_eq!(content_type("{\"a\": 1}"), "application/json");
        assert_eq!(content_type("[1, 2]"), "application/json");
        assert_eq!(content_type("web is hot"), "text/plain; charset=utf-8");
    }
}
