//! The listener: hyper 1 over tokio (HTTP/1.1 and h2c via hyper-util's auto builder),
//! TCP_NODELAY on every accepted socket, path routing, graceful shutdown.

use crate::admin;
use crate::error::{Dialect, GatewayError};
use crate::pipeline::{self, AppState};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The response body type of every handler.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response with a status.
pub fn json_response(status: u16, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// An error response in the dialect, with `Retry-After` when the error carries one.
pub fn error_response(err: &GatewayError, dialect: Dialect) -> Response<Body> {
    let body = serde_json::to_vec(&err.to_json(dialect)).unwrap_or_default();
    let mut response = json_response(err.status(), body);
    if let Some(after) = err.retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = http::HeaderValue::from_str(&secs.to_string()) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
    }
    response
}

/// Route one request to its handler.
async fn route(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    match (method, path.as_str()) {
        (Method::POST, "/v1/chat/completions") => pipeline::chat(state, Dialect::OpenAi, req).await,
        (Method::POST, "/v1/messages") => pipeline::chat(state, Dialect::Anthropic, req).await,
        (Method::POST, "/v1/embeddings") => pipeline::embeddings(state, req).await,
        (Method::GET, "/v1/models") => pipeline::models(&state, &req),
        (Method::GET, "/healthz") => json_response(200, br#"{"status":"ok"}"#.to_vec()),
        (_, p) if p.starts_with("/admin/") => admin::handle(state, req).await,
        (_, "/v1/chat/completions" | "/v1/embeddings" | "/v1/models" | "/v1/messages") => {
            let dialect = if path == "/v1/messages" {
                Dialect::Anthropic
            } else {
                Dialect::OpenAi
            };
            let err = GatewayError::new(
                crate::error::ErrorSource::Client,
                crate::error::ErrorCode::MethodNotAllowed,
                format!("method {} is not allowed on {path}", req.method()),
            );
            error_response(&err, dialect)
        }
        _ => {
            let err = GatewayError::new(
                crate::error::ErrorSource::Client,
                crate::error::ErrorCode::NotFound,
                format!("no route for {} {path}", req.method()),
            );
            error_response(&err, Dialect::OpenAi)
        }
    }
}

/// Serve until `shutdown` resolves, then stop accepting and give in-flight requests
/// `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(err) => {
                        // Out of file descriptors and similar: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(route(state, req).await) }
                });
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    if let Err(err) = conn.await {
                        tracing::debug!(error = %err, "connection ended with error");
                    }
                });
            }
            _ = &mut shutdown => {
                tracing::info!("shutdown requested; no longer accepting connections");
                break;
            }
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
