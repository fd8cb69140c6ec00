//! The listener: hyper 1 over tokio (HTTP/1.1 and h2c via hyper-util's auto builder), path
//! routing, connection hygiene and graceful shutdown. It only listens and routes: handlers
//! live in `pipeline`, `admin` and `observe` (the dashboard page).
//!
//! Connection hygiene, as nginx does it:
//! - `header_read_timeout_ms` (60 s): a client must send a request's headers within it
//!   (hyper's own timer);
//! - `body_read_timeout_ms` (60 s): enforced where the body is read (`pipeline::ingress`);
//! - `idle_timeout_ms` (75 s): a connection with no request in flight and no bytes moving is
//!   closed (before its first request too, so a client that connects and sends nothing, or
//!   only part of an HTTP/2 preface, is closed);
//! - `max_connections` (10,000, shared by every request thread): at the cap, accepting pauses
//!   until a connection closes (the kernel's backlog holds new ones), so an idle flood cannot
//!   exhaust memory or descriptors;
//! - when `accept` fails (out of file descriptors), accepting backs off (10 ms doubling to
//!   1 s) and the condition is logged once per episode.

use crate::admin;
use crate::error::{Dialect, ErrorCode, ErrorSource, GatewayError};
use crate::http::{error_response, json_response, Body};
use crate::observe;
use crate::pipeline::{self, AppState};
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Where a request goes, decided from its method and path alone.
enum Target {
    Chat(Dialect),
    Embeddings,
    Models,
    Health,
    Metrics,
    Dashboard,
    Admin,
    WrongMethod(Dialect),
    NotFound,
}

fn target(method: &Method, path: &str) -> Target {
    match (method, path) {
        (&Method::POST, "/v1/chat/completions") => Target::Chat(Dialect::OpenAi),
        (&Method::POST, "/v1/messages") => Target::Chat(Dialect::Anthropic),
        (&Method::POST, "/v1/embeddings") => Target::Embeddings,
        (&Method::GET, "/v1/models") => Target::Models,
        (&Method::GET, "/healthz") => Target::Health,
        (&Method::GET, "/metrics") => Target::Metrics,
        (_, p) if p.starts_with("/admin/") => Target::Admin,
        (_, p) if observe::is_dashboard_path(p) => Target::Dashboard,
        (_, "/v1/messages") => Target::WrongMethod(Dialect::Anthropic),
        (_, "/v1/chat/completions" | "/v1/embeddings" | "/v1/models") => {
            Target::WrongMethod(Dialect::OpenAi)
        }
        _ => Target::NotFound,
    }
}

/// Route one request to its handler.
async fn route(state: Arc<AppState>, req: Request<Incoming>) -> Response<Body> {
    match target(req.method(), req.uri().path()) {
        Target::Chat(dialect) => pipeline::chat(state, dialect, req).await,
        Target::Embeddings => pipeline::embeddings(state, req).await,
        Target::Models => pipeline::models(&state, &req),
        Target::Health => json_response(200, br#"{"status":"ok"}"#.to_vec()),
        Target::Metrics => admin::metrics(&state, &req),
        Target::Dashboard => observe::dashboard(req.method(), req.uri().path(), req.headers()),
        Target::Admin => admin::handle(state, req).await,
        Target::WrongMethod(dialect) => {
            let err = GatewayError::new(
                ErrorSource::Client,
                ErrorCode::MethodNotAllowed,
                format!(
                    "method {} is not allowed on {}",
                    req.method(),
                    req.uri().path()
                ),
            );
            error_response(&err, dialect)
        }
        Target::NotFound => {
            let err = GatewayError::new(
                ErrorSource::Client,
                ErrorCode::NotFound,
                format!(
                    "no route for {} {}",
                    req.method(),
                    truncate(req.uri().path(), 128)
                ),
            );
            error_response(&err, Dialect::OpenAi)
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Limits every request thread shares.
#[derive(Clone)]
pub struct Limits {
    /// Open client connections allowed at once (one permit each).
    pub connections: Arc<Semaphore>,
}

impl Limits {
    /// Limits from `[server]`.
    pub fn from_config(config: &crate::config::ServerConfig) -> Limits {
        Limits {
            connections: Arc::new(Semaphore::new(config.max_connections.max(1))),
        }
    }
}

/// Serve until `shutdown` resolves, then stop accepting and give in-flight requests
/// `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let server = &state.config.server;
    let idle = Duration::from_millis(server.idle_timeout_ms);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(server.header_read_timeout_ms));
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut backoff = AcceptBackoff::default();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = limits.connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
            _ = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    backoff.recovered();
                    stream
                }
                Err(err) => {
                    tokio::time::sleep(backoff.failed(&err)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = {
            let state = state.clone();
            let activity = activity.clone();
            service_fn(move |req| {
                let state = state.clone();
                let in_flight = InFlight::enter(activity.clone());
                async move {
                    let response = route(state, req).await;
                    Ok::<_, Infallible>(in_flight.hold_until_sent(response))
                }
            })
        };
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: activity.clone(),
        });
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                ended = conn => {
                    if let Err(err) = ended {
                        tracing::debug!(error = %err, "connection ended with error");
                    }
                }
                _ = activity.idle_for(idle) => {
                    tracing::debug!(idle_ms = idle.as_millis() as u64, "idle connection closed");
                }
            }
        });
    }
    tracing::info!("shutdown requested; no longer accepting connections");
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections finished"),
        _ = tokio::time::sleep(grace) => tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections"),
    }
    Ok(())
}

/// Accept failures (out of file descriptors, mostly): back off, and log once per episode
/// (an episode lasts until accepting has worked for a minute without failing).
#[derive(Default)]
struct AcceptBackoff {
    /// Failures in a row (sets the back-off).
    failures: u32,
    /// Failures since the episode's warning, and when that warning was logged.
    episode: Option<(u64, Instant)>,
}

/// Quiet time after which a new accept failure is a new episode, logged again.
const ACCEPT_EPISODE: Duration = Duration::from_secs(60);

impl AcceptBackoff {
    fn failed(&mut self, err: &std::io::Error) -> Duration {
        match &mut self.episode {
            Some((count, _)) => *count += 1,
            None => {
                tracing::warn!(error = %err, "accept failed; backing off until it recovers");
                self.episode = Some((1, Instant::now()));
            }
        }
        self.failures = self.failures.saturating_add(1);
        Duration::from_millis((10u64 << self.failures.min(7)).min(1_000))
    }

    fn recovered(&mut self) {
        self.failures = 0;
        if let Some((count, since)) = self.episode {
            if since.elapsed() >= ACCEPT_EPISODE {
                tracing::info!(failures = count, "accepting again");
                self.episode = None;
            }
        }
    }
}

/// When a connection last moved bytes, and how many of its requests are in flight.
struct Activity {
    origin: Instant,
    /// Milliseconds after `origin` of the last read or write.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once the connection has had no request in flight and no bytes moving for
    /// `idle`. Wakes once per `idle` at most: no per-request timer.
    async fn idle_for(&self, idle: Duration) {
        let mut deadline = self.origin + idle;
        loop {
            tokio::time::sleep_until(deadline).await;
            let last = self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if self.in_flight.load(Ordering::Acquire) == 0 && last + idle <= Instant::now() {
                return;
            }
            deadline = (last + idle).max(Instant::now() + idle / 8);
        }
    }
}

/// A request in flight on a connection, until its response body is sent or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity)
    }

    fn hold_until_sent(self, response: Response<Body>) -> Response<Body> {
        use http_body_util::BodyExt;
        response.map(|inner| {
            Held {
                inner,
                _in_flight: self,
            }
            .boxed_unsync()
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is sent or
    /// dropped. Forwards the size hint, so a whole answer keeps its `content-length`.
    struct Held {
        #[pin]
        inner: Body,
        _in_flight: InFlight,
    }
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A client socket that records when it last moved bytes.
    struct Tracked {
        #[pin]
        inner: TcpStream,
        activity: Arc<Activity>,
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
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
