//! The web UI: the page and its assets, built by `build.rs` from `ui/` and
//! embedded into the binary, served by the daemon's listener.
//!
//! ```text
//! GET /                      index.html (no-cache: it names the assets of this build)
//! GET /assets/NAME.HASH.EXT  app.js, style.css, uPlot.js, uPlot.css (immutable: the name holds the content hash)
//! ```
//!
//! The assets are public (no token): the page asks for the token and sends
//! it as `Authorization: Bearer` on every `/api/v1` call, which is where
//! the data is. The page uses the HTTP API and nothing else.
//!
//! Owns: [`router`]. Must not depend on: the store, the config, the API's state.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// What the page may load: only this origin; no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Whether this binary holds the UI (and not the page saying how to build it).
pub fn built() -> bool {
    ASSETS.iter().any(|(name, _)| name.ends_with(".js"))
}

/// The embedded file `name`.
fn asset(name: &str) -> Option<&'static [u8]> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn file(name: &str, bytes: &'static [u8], cache: &'static str) -> Response {
    let mut resp = bytes.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(name)));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

async fn index(headers: HeaderMap) -> Response {
    let Some(bytes) = asset("index.html") else {
        return (StatusCode::NOT_FOUND, "no web UI in this build").into_response();
    };
    // The page changes with each build: an ETag lets a reload revalidate cheaply.
    let etag = format!("\"{}-{}\"", env!("CARGO_PKG_VERSION"), bytes.len());
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let mut resp = file("index.html", bytes, "no-cache");
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

async fn assets(Path(name): Path<String>) -> Response {
    match asset(&name).filter(|_| name != "index.html") {
        Some(bytes) => file(&name, bytes, "public, max-age=31536000, immutable"),
        // JSON like every other error of the listener (the OpenAPI document says so)
        None => (StatusCode::NOT_FOUND, axum::Json(serde_json::json!({ "error": format!("no asset `{name}` in this build") }))).into_response(),
    }
}

/// `GET /` and `GET /assets/{name}`; no state, no side effects.
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/assets/{name}", get(assets))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_have_their_content_types() {
        assert_eq!(content_type("app.0123.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("uPlot.0123.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert!(asset("index.html").is_some(), "the page (or the one saying how to build it) is always there");
    }
}
