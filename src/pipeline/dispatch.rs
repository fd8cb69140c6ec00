//! Stage: walk the target chain until one answers.
//!
//! Per attempt: the breaker is asked first (an open one skips the target), chaos faults are
//! applied, then the provider is called under the attempt deadline (`timeout`) and the
//! first-token deadline (streams: the first content event; whole answers: the response
//! headers). When every target was skipped for an open breaker, the request becomes the probe
//! of the oldest open one (panic mode, see [`super::breaker`]). Retryable errors (429, 5xx, connect errors, timeouts)
//! are retried on the same target `retries` times with capped, fully jittered exponential
//! backoff that honours `Retry-After` (a longer `Retry-After` than the cap moves on at once),
//! then the next target is tried. A stream fails over only before its first content event
//! reaches the client: events before it (the `Start`) are buffered, not sent. Every attempt is
//! recorded for the log.

use super::breaker::Breakers;
use super::capacity::{Capacity, Room};
use super::chaos::Chaos;
use super::AppState;
use crate::canonical::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, StreamEvent,
};
use crate::context::Attempt;
use crate::error::{ErrorCode, ErrorSource, GatewayError};
use crate::ledger::Reservation;
use crate::providers::{EventStream, Route};
use futures_util::StreamExt;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// What to try, in order, and under which deadlines.
#[derive(Clone)]
pub struct Plan {
    pub targets: Vec<Route>,
    /// Per-attempt deadline: whole answer (non-streaming) or first content (streaming).
    pub timeout: Option<Duration>,
    /// Per-attempt deadline for the first content event of a stream, or for the response
    /// headers of a whole answer.
    pub first_token: Option<Duration>,
    /// Retries on the same target before moving on.
    pub retries: u32,
    /// The request's quick input estimate, computed once (`tokens::quick_estimate_input`):
    /// the rate limits and capacity checks reserve it plus the output allowance.
    pub input_estimate: u64,
}

/// Observes each attempt's latency (the policy's `latency_ms` window).
pub trait LatencyObserver: Send + Sync {
    /// An attempt at `model` took `ms` (successful attempts only).
    fn observe(&self, model: &str, ms: f64);
}

impl LatencyObserver for crate::policy::LatencyWindow {
    fn observe(&self, model: &str, ms: f64) {
        self.observe_latency(model, ms);
    }
}

/// The chain walker: breakers, chaos faults and the latency window it reports to.
pub struct Dispatcher<'a> {
    pub breakers: &'a Breakers,
    pub chaos: &'a Chaos,
    pub latency: Option<&'a dyn LatencyObserver>,
    /// Model capacity (`tpm`/`rpm`, provider hints); `None` checks nothing.
    pub capacity: Option<&'a Capacity>,
    /// How long a request may wait when every target lacks capacity.
    pub capacity_wait: Duration,
    /// The served target's capacity reservation.
    held: std::sync::Mutex<Option<Reservation>>,
}

/// Why a target gave up.
enum Next {
    /// Try the next target with this error as the last one.
    Target(GatewayError),
    /// A final answer (not retryable): stop the chain.
    Stop(GatewayError),
}

impl<'a> Dispatcher<'a> {
    /// The dispatcher of a running gateway.
    pub fn new(state: &'a AppState) -> Self {
        Dispatcher {
            breakers: &state.breakers,
            chaos: &state.chaos,
            latency: Some(&*state.latency),
            capacity: Some(&state.capacity),
            capacity_wait: Duration::from_millis(state.config.admission.capacity_queue_ms),
            held: std::sync::Mutex::new(None),
        }
    }

    /// A dispatcher without capacity checks or latency reports (tests, tools).
    pub fn bare(breakers: &'a Breakers, chaos: &'a Chaos) -> Self {
        Dispatcher {
            breakers,
            chaos,
            latency: None,
            capacity: None,
            capacity_wait: Duration::ZERO,
            held: std::sync::Mutex::new(None),
        }
    }

    /// The tokens a chat request reserves on `route`'s model.
    fn chat_tokens(&self, input: u64, req: &ChatRequest, route: &Route) -> u64 {
        match self.capacity {
            Some(capacity) => {
                capacity.reservation_tokens(input, req.max_tokens, Some(&route.model))
            }
            None => 0,
        }
    }

    /// Answer a non-streaming request: `first_token` bounds the time to the upstream's
    /// response headers, `timeout` the whole answer.
    pub async fn chat(
        &self,
        plan: &Plan,
        req: &ChatRequest,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(ChatResponse, Route), GatewayError> {
        let timeout = plan.timeout;
        let tokens = |route: &Route| self.chat_tokens(plan.input_estimate, req, route);
        self.try_chain(plan, attempts, tokens, |route: &Route| {
            let call = route
                .provider
                .chat(req, route.model.upstream_id(), plan.first_token);
            let name = route.provider_name.clone();
            async move { within(timeout, call, &name).await }
        })
        .await
    }

    /// Start a streaming request: resolves once a target has produced its first content
    /// event (returned re-attached at the front of the stream).
    pub async fn stream(
        &self,
        plan: &Plan,
        req: &ChatRequest,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(EventStream, Route), GatewayError> {
        let (timeout, first_token) = (plan.timeout, plan.first_token);
        let tokens = |route: &Route| self.chat_tokens(plan.input_estimate, req, route);
        self.try_chain(plan, attempts, tokens, |route: &Route| {
            let call = route.provider.chat_stream(req, route.model.upstream_id());
            let name = route.provider_name.clone();
            async move {
                let deadline = match (timeout, first_token) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let started = Instant::now();
                let opened = match deadline {
                    Some(limit) => tokio::time::timeout(limit, call)
                        .await
                        .map_err(|_| first_token_error(&name, limit))??,
                    None => call.await?,
                };
                let remaining = deadline.map(|d| d.saturating_sub(started.elapsed()));
                first_content(opened, remaining, &name).await
            }
        })
        .await
    }

    /// Embed with the chain (embedding models), under the attempt deadline.
    pub async fn embed(
        &self,
        plan: &Plan,
        req: &EmbeddingsRequest,
        attempts: &mut Vec<Attempt>,
    ) -> Result<(EmbeddingsResponse, Route), GatewayError> {
        let timeout = plan.timeout;
        let input: usize = req.input.iter().map(String::len).sum();
        let tokens = (input as u64).div_ceil(4) + req.input.len() as u64;
        self.try_chain(
            plan,
            attempts,
            |_: &Route| tokens,
            |route: &Route| {
                let call = route.provider.embed(req, route.model.upstream_id());
                let name = route.provider_name.clone();
                async move { within(timeout, call, &name).await }
            },
        )
        .await
    }

    /// Try each target in order, with retries, until one answers; then, if every target was
    /// skipped for an open breaker, probe the oldest open one (panic mode). A target without
    /// capacity for `tokens(route)` is skipped with no upstream call; when every target lacks
    /// it, the request waits for the first to free up (within the capacity wait), then walks
    /// the chain again.
    async fn try_chain<T, F, Fut>(
        &self,
        plan: &Plan,
        attempts: &mut Vec<Attempt>,
        tokens: impl Fn(&Route) -> u64,
        mut call: F,
    ) -> Result<(T, Route), GatewayError>
    where
        F: FnMut(&Route) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let deadline = Instant::now() + self.capacity_wait;
        loop {
            let mut last_error: Option<GatewayError> = None;
            let mut called = false;
            let mut lacking: Option<Option<Duration>> = None;
            let mut tried = false;
            for route in &plan.targets {
                let hold = match self.capacity {
                    Some(capacity) => match capacity.take(route, tokens(route)).await {
                        Room::Yes(hold) => hold,
                        Room::No { why, free_in } => {
                            attempts.push(capacity_attempt(route, &why));
                            lacking = Some(match (lacking.flatten(), free_in) {
                                (Some(a), Some(b)) => Some(a.min(b)),
                                (a, b) => a.or(b),
                            });
                            last_error = Some(no_capacity(&why, free_in));
                            continue;
                        }
                    },
                    None => None,
                };
                tried = true;
                match self
                    .try_target(plan, route, attempts, &mut call, &mut called)
                    .await
                {
                    Ok(value) => {
                        self.hold(hold);
                        return Ok((value, route.clone()));
                    }
                    Err(Next::Target(err)) => {
                        self.release(hold);
                        last_error = Some(match last_error {
                            Some(prev) if err.source == ErrorSource::Client => {
                                keep_first_client_error(Some(prev), err)
                            }
                            _ => err,
                        });
                    }
                    Err(Next::Stop(err)) => {
                        self.release(hold);
                        return Err(err);
                    }
                }
            }
            if !tried {
                if let Some(free_in) = lacking {
                    // Every target lacks capacity: wait for the first to free up, if in time.
                    match free_in {
                        Some(wait) if Instant::now() + wait <= deadline => {
                            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                            continue;
                        }
                        _ => {
                            return Err(last_error
                                .unwrap_or_else(|| no_capacity("no capacity", free_in))
                                .with_retry_after(free_in))
                        }
                    }
                }
            }
            if !called {
                let providers = plan.targets.iter().map(|r| &*r.provider_name);
                if let Some(provider) = self.breakers.panic_probe(providers) {
                    if let Some(route) = plan.targets.iter().find(|r| &*r.provider_name == provider)
                    {
                        match self.try_once(route, attempts, &mut call).await {
                            Ok(value) => return Ok((value, route.clone())),
                            Err(err) => last_error = Some(err),
                        }
                    }
                }
            }
            return Err(last_error.unwrap_or_else(|| GatewayError::internal("empty target chain")));
        }
    }

    /// One target with its retries: the value, or why to go on to the next target (or stop).
    async fn try_target<T, F, Fut>(
        &self,
        plan: &Plan,
        route: &Route,
        attempts: &mut Vec<Attempt>,
        call: &mut F,
        called: &mut bool,
    ) -> Result<T, Next>
    where
        F: FnMut(&Route) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let cfg = self.breakers.config();
        let provider = &*route.provider_name;
        let mut last_error = None;
        for retry in 0..=plan.retries {
            if !self.breakers.allow(provider) {
                let err = circuit_open(provider);
                let mut skipped = attempt(route, &err, 0.0);
                skipped.reason = Some("circuit_open".to_string());
                attempts.push(skipped);
                return Err(Next::Target(err));
            }
            *called = true;
            let err = match self.try_once(route, attempts, call).await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if err.source == ErrorSource::Client {
                // The adapter refused a field this provider cannot honour: another
                // target may take it, and the breaker is not at fault.
                return Err(Next::Target(err));
            }
            if !err.retryable() {
                return Err(Next::Stop(err));
            }
            let wait = backoff(
                cfg.backoff_base_ms,
                cfg.backoff_max_ms,
                retry,
                err.retry_after,
            );
            tracing::warn!(provider, model = %route.model.name, error = %err.message_for_log(), retry, "attempt failed");
            last_error = Some(err);
            match wait {
                Some(wait) if retry < plan.retries => tokio::time::sleep(wait).await,
                _ => break,
            }
        }
        Err(Next::Target(last_error.unwrap_or_else(|| {
            GatewayError::internal("a target ended without an attempt")
        })))
    }

    /// Keep the served target's capacity reservation for the tail.
    fn hold(&self, reservation: Option<Reservation>) {
        if reservation.is_some() {
            *self.held.lock().unwrap_or_else(|e| e.into_inner()) = reservation;
        }
    }

    fn release(&self, reservation: Option<Reservation>) {
        if let (Some(capacity), Some(reservation)) = (self.capacity, reservation) {
            capacity.release(Some(reservation));
        }
    }

    /// The served target's capacity reservation, to settle in the tail with the real usage.
    pub fn take_capacity_hold(&self) -> Option<Reservation> {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// One attempt at one target that the breaker let through: chaos, the call, the report.
    async fn try_once<T, F, Fut>(
        &self,
        route: &Route,
        attempts: &mut Vec<Attempt>,
        call: &mut F,
    ) -> Result<T, GatewayError>
    where
        F: FnMut(&Route) -> Fut,
        Fut: Future<Output = Result<T, GatewayError>>,
    {
        let provider = &*route.provider_name;
        let started = Instant::now();
        let injection = self.chaos.injection(provider);
        if !injection.delay.is_zero() {
            tokio::time::sleep(injection.delay).await;
        }
        let result = match injection.error {
            Some(err) => Err(err),
            None => call(route).await,
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match result {
            Ok(value) => {
                self.breakers.report(provider, true);
                if let Some(observer) = self.latency {
                    observer.observe(&route.model.name, elapsed_ms);
                }
                attempts.push(Attempt {
                    model: route.model.name.clone(),
                    provider: provider.to_string(),
                    status: 200,
                    latency_ms: elapsed_ms,
                    error: None,
                    reason: None,
                });
                Ok(value)
            }
            Err(err) => {
                attempts.push(attempt(route, &err, elapsed_ms));
                // A retryable failure counts against the provider; a final answer such as a
                // 400 shows it is up. The adapter's own refusal (client source) never called
                // it: a probe slot it held goes back.
                if err.source == ErrorSource::Client {
                    self.breakers.release(provider);
                } else {
                    self.breakers.report(provider, !err.retryable());
                }
                Err(err)
            }
        }
    }
}

/// Run `call` under an optional deadline; past it, a timeout naming the provider.
async fn within<T>(
    limit: Option<Duration>,
    call: impl Future<Output = Result<T, GatewayError>>,
    provider: &str,
) -> Result<T, GatewayError> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, call)
            .await
            .map_err(|_| crate::providers::timeout_error(provider, limit))?,
        None => call.await,
    }
}

/// The record of a target skipped for lack of capacity (no upstream call).
fn capacity_attempt(route: &Route, why: &str) -> Attempt {
    Attempt {
        model: route.model.name.clone(),
        provider: route.provider_name.to_string(),
        status: 429,
        latency_ms: 0.0,
        error: Some(why.to_string()),
        reason: Some("capacity".to_string()),
    }
}

fn no_capacity(why: &str, free_in: Option<Duration>) -> GatewayError {
    GatewayError::upstream(
        ErrorCode::RateLimited,
        format!("no target has capacity for this request: {why}"),
    )
    .with_retry_after(free_in)
}

fn circuit_open(provider: &str) -> GatewayError {
    GatewayError::upstream(
        ErrorCode::Unavailable,
        format!("provider `{provider}` is unavailable (circuit open)"),
    )
}

fn keep_first_client_error(previous: Option<GatewayError>, err: GatewayError) -> GatewayError {
    match previous {
        Some(prev) if prev.source == ErrorSource::Client => prev,
        _ => err,
    }
}

fn attempt(route: &Route, err: &GatewayError, latency_ms: f64) -> Attempt {
    Attempt {
        model: route.model.name.clone(),
        provider: route.provider_name.to_string(),
        status: err.status(),
        latency_ms,
        error: Some(err.message.clone()),
        reason: None,
    }
}

fn first_token_error(provider: &str, limit: Duration) -> GatewayError {
    GatewayError::upstream(
        ErrorCode::Timeout,
        format!(
            "provider `{provider}` sent no first token within {} ms",
            limit.as_millis()
        ),
    )
}

/// Read events until the first one that would put bytes on the client's wire, buffering
/// the ones before it; return the stream with them re-attached.
async fn first_content(
    mut stream: EventStream,
    deadline: Option<Duration>,
    provider: &str,
) -> Result<EventStream, GatewayError> {
    let mut prefix = Vec::new();
    let read = async {
        loop {
            match stream.next().await {
                Some(Ok(ev @ StreamEvent::Start { .. }))
                | Some(Ok(ev @ StreamEvent::Usage { .. })) => prefix.push(Ok(ev)),
                Some(Ok(ev)) => {
                    prefix.push(Ok(ev));
                    return Ok(());
                }
                Some(Err(err)) => return Err(err),
                None => return Ok(()),
            }
        }
    };
    match deadline {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .map_err(|_| first_token_error(provider, limit))??,
        None => read.await?,
    }
    Ok(futures_util::stream::iter(prefix).chain(stream).boxed())
}

/// Full-jitter exponential backoff; `None` when the provider asked for a longer wait than
/// the cap (move on to the next target instead).
fn backoff(
    base_ms: u64,
    max_ms: u64,
    retry: u32,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let cap = Duration::from_millis(max_ms);
    if let Some(after) = retry_after {
        return (after <= cap).then_some(after);
    }
    let exp = base_ms.saturating_mul(1u64 << retry.min(16)).min(max_ms);
    let jittered = rand::random::<f64>() * exp as f64;
    Some(Duration::from_millis(jittered as u64))
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod walk_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_honours_retry_after() {
        for retry in 0..10 {
            let wait = backoff(50, 400, retry, None);
            assert!(wait.is_some_and(|w| w <= Duration::from_millis(400)));
        }
        assert_eq!(
            backoff(50, 2_000, 0, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(backoff(50, 2_000, 0, Some(Duration::from_secs(30))), None);
    }
}
