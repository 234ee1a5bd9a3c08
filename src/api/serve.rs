//! Serving the listener: hyper's HTTP/1 connection builder (what
//! `axum::serve` hides) so that the header read timeout and the header
//! buffer size can be set, with a graceful stop.
//!
//! Owns: [`serve`]. Must not depend on: the store, the config loader.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::security::HttpOptions;

/// The most bytes of request head (line and headers) read before the
/// request is refused with 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// How long open connections get to finish when the server stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` turns true. A client that has
/// not sent its whole request head within `opts.header_timeout` is
/// disconnected.
pub async fn serve(listener: TcpListener, app: Router, opts: &HttpOptions, mut stop: watch::Receiver<bool>) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(opts.header_timeout).max_buf_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: the next
                        // accept may work once a connection closes.
                        tracing::warn!(error = %e, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, "HTTP connection closed with an error");
                    }
                });
            }
            () = &mut stopped => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown()).await.is_err() {
        tracing::info!("HTTP connections still open after {}s were dropped", DRAIN.as_secs());
    }
}
