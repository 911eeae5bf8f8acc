//! Serving the routes over TCP (HTTP/1.1) with the time limits axum's `serve` does not set: a
//! request head must arrive within the client timeout (`ServerConfig::client_timeout`: a client
//! that sends half a head and waits is dropped, not held), a body's next bytes too, and a stop
//! lets open requests finish for at most [`SHUTDOWN_GRACE`] before their connections are
//! dropped.
//! The loop is axum's own `serve` loop (axum 0.8 `serve/mod.rs`) with hyper's HTTP/1 builder
//! given a timer, which is what its header timeout needs.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower_http::timeout::RequestBodyTimeout;

/// How long requests still open when a server stops are waited for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` fires (or its sender is dropped), then lets open
/// requests finish for at most [`SHUTDOWN_GRACE`]; `client_timeout` bounds a request head's
/// arrival and each pause in a body.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    client_timeout: Duration,
    mut stop: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // out of file descriptors, a connection reset before it was accepted: as axum
                // does, wait a moment and accept the next
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let timed = RequestBodyTimeout::new(app.clone(), client_timeout);
        let service = TowerToHyperService::new(timed);
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(client_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
}
