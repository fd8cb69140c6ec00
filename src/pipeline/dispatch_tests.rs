//! Unit tests for the chain walk ([`Dispatcher`]) against scripted fake providers.
//!
//! Each fake provider plays a queue of scripted outcomes (answer, fail with a status, fail
//! with a `Retry-After`, refuse like an adapter, hang, stream then fail) and records when it
//! was called. Every test that involves time runs on tokio's paused clock, so backoff
//! sleeps, deadlines and breaker open times cost no real time and elapsed times are exact.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::canonical::{FinishReason, Usage};
use crate::config::{DispatchConfig, ModelConfig, ModelKind};
use crate::error::ErrorCode;
use crate::pipeline::chaos::FaultSpec;
use crate::providers::{status_error, Provider};
use futures_util::future::BoxFuture;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One scripted outcome of one call.
#[derive(Debug, Clone)]
enum Step {
    /// Answer at once (whole, or as a complete stream).
    Answer,
    /// Answer after this long.
    AnswerAfter(Duration),
    /// Fail with this upstream status.
    Fail(u16),
    /// Fail with this upstream status and a `Retry-After`.
    FailRetryAfter(u16, Duration),
    /// The adapter refuses a field this provider cannot honour (a client-source 400).
    Refuse,
    /// Never answer.
    Hang,
    /// Stream: `Start`, then this many text deltas, then a 503 inside the stream.
    StreamThenFail(usize),
    /// Stream: `Start`, then nothing ever again.
    StreamStall,
}

/// A fake provider that plays its script, one step per call (`Answer` once it runs out).
struct Scripted {
    name: &'static str,
    script: Mutex<VecDeque<Step>>,
    /// When each call was made, in order.
    calls: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(name: &'static str, steps: impl IntoIterator<Item = Step>) -> Arc<Scripted> {
        Arc::new(Scripted {
            name,
            script: Mutex::new(steps.into_iter().collect()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    fn call_times(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }

    fn next_step(&self) -> Step {
        self.calls.lock().unwrap().push(Instant::now());
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Step::Answer)
    }

    fn response(&self, upstream_model: &str) -> ChatResponse {
        ChatResponse {
            id: format!("resp-{}", self.name),
            model: upstream_model.to_string(),
            text: format!("hello from {}", self.name),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
        }
    }

    /// The failure a step stands for (`None` for steps that answer, hang or stream).
    fn failure(&self, step: &Step) -> Option<GatewayError> {
        match step {
            Step::Fail(status) => Some(status_error(self.name, *status, "scripted", None)),
            Step::FailRetryAfter(status, after) => {
                Some(status_error(self.name, *status, "scripted", Some(*after)))
            }
            Step::Refuse => Some(GatewayError::invalid(
                "tools",
                format!("provider `{}` cannot take tools", self.name),
            )),
            _ => None,
        }
    }

    /// One whole answer, as `Provider::chat` gives it.
    fn whole(
        &self,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        let step = self.next_step();
        let failure = self.failure(&step);
        let answer = self.response(upstream_model);
        Box::pin(async move {
            if let Some(err) = failure {
                return Err(err);
            }
            match step {
                Step::Answer => Ok(answer),
                Step::AnswerAfter(after) => {
                    tokio::time::sleep(after).await;
                    Ok(answer)
                }
                Step::Hang => futures_util::future::pending().await,
                other => Err(GatewayError::internal(format!(
                    "step {other:?} is for streams"
                ))),
            }
        })
    }

    /// One streamed answer, as `Provider::chat_stream` gives it.
    fn streamed(
        &self,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>> {
        let step = self.next_step();
        let failure = self.failure(&step);
        let answer = self.response(upstream_model);
        let name = self.name;
        Box::pin(async move {
            if let Some(err) = failure {
                return Err(err);
            }
            let start = StreamEvent::Start {
                id: answer.id.clone(),
                model: answer.model.clone(),
            };
            let stream: EventStream = match step {
                Step::Answer => {
                    futures_util::stream::iter(answer.into_events().into_iter().map(Ok)).boxed()
                }
                Step::AnswerAfter(after) => {
                    tokio::time::sleep(after).await;
                    futures_util::stream::iter(answer.into_events().into_iter().map(Ok)).boxed()
                }
                Step::Hang => futures_util::future::pending().await,
                Step::StreamThenFail(content) => {
                    let mut events = vec![Ok(start)];
                    for i in 0..content {
                        events.push(Ok(StreamEvent::TextDelta {
                            text: format!("part {i} "),
                        }));
                    }
                    events.push(Err(status_error(name, 503, "scripted mid-stream", None)));
                    futures_util::stream::iter(events).boxed()
                }
                Step::StreamStall => futures_util::stream::iter([Ok(start)])
                    .chain(futures_util::stream::pending())
                    .boxed(),
                Step::Fail(_) | Step::FailRetryAfter(..) | Step::Refuse => {
                    unreachable!("failures return above")
                }
            };
            Ok(stream)
        })
    }
}

impl Provider for Scripted {
    fn chat(
        &self,
        _req: &ChatRequest,
        upstream_model: &str,
        _headers_deadline: Option<Duration>,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        self.whole(upstream_model)
    }

    fn chat_stream(
        &self,
        _req: &ChatRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>> {
        self.streamed(upstream_model)
    }

    fn embed(
        &self,
        _req: &EmbeddingsRequest,
        _upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>> {
        self.next_step();
        Box::pin(async { Err(GatewayError::internal("the scripted fake does not embed")) })
    }
}

/// A route to `provider` for the model `m-<provider name>`.
fn route(provider: &Arc<Scripted>) -> Route {
    Route {
        model: Arc::new(ModelConfig {
            name: format!("m-{}", provider.name),
            provider: provider.name.to_string(),
            upstream: None,
            input_usd_per_mtok: None,
            output_usd_per_mtok: None,
            cached_input_usd_per_mtok: None,
            context_window: None,
            max_output_tokens: None,
            tpm: None,
            rpm: None,
            reserve_output_tokens: None,
            kind: ModelKind::Chat,
        }),
        provider_name: provider.name.into(),
        provider: provider.clone(),
    }
}

fn plan(providers: &[&Arc<Scripted>], retries: u32) -> Plan {
    Plan {
        targets: providers.iter().map(|p| route(p)).collect(),
        timeout: None,
        first_token: None,
        retries,
        input_estimate: 0,
    }
}

/// Backoff 100 ms doubling to 400 ms; breakers open after 3 consecutive failures for 1 s.
fn config() -> DispatchConfig {
    DispatchConfig {
        retries: 0,
        backoff_base_ms: 100,
        backoff_max_ms: 400,
        breaker_failures: 3,
        breaker_error_rate: 1.0,
        breaker_min_requests: 1_000,
        breaker_window: 50,
        breaker_open_ms: 1_000,
    }
}

fn dispatcher<'a>(breakers: &'a Breakers, chaos: &'a Chaos) -> Dispatcher<'a> {
    Dispatcher::bare(breakers, chaos)
}

fn request() -> ChatRequest {
    ChatRequest::default()
}

/// `(provider, status)` of each recorded attempt, in order.
fn trail(attempts: &[Attempt]) -> Vec<(&str, u16)> {
    attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.status))
        .collect()
}

/// `walk` under a one-hour (paused-clock) guard, so a deadline the walk fails to enforce
/// fails the test instead of hanging it.
async fn bounded<T>(
    walk: impl Future<Output = Result<T, GatewayError>>,
) -> Result<T, GatewayError> {
    match tokio::time::timeout(Duration::from_secs(3_600), walk).await {
        Ok(result) => result,
        Err(_) => panic!("the walk never ended: a deadline was not enforced"),
    }
}

#[tokio::test(start_paused = true)]
async fn retryable_503_is_retried_with_capped_backoff_then_next_target_answers() {
    let (a, b) = (
        Scripted::new("a", [Step::Fail(503), Step::Fail(503), Step::Fail(503)]),
        Scripted::new("b", [Step::Answer]),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let mut attempts = Vec::new();
    let (answer, served_by) = dispatcher(&breakers, &chaos)
        .chat(&plan(&[&a, &b], 2), &request(), &mut attempts)
        .await
        .unwrap();

    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!(answer.text, "hello from b");
    assert_eq!((a.calls(), b.calls()), (3, 1), "1 try + 2 retries on a");
    // A provider's 503 maps to our 502 (bad gateway) in the attempt record.
    assert_eq!(
        trail(&attempts),
        [("a", 502), ("a", 502), ("a", 502), ("b", 200)]
    );
    assert!(attempts[..3].iter().all(|t| t.error.is_some()));
    assert!(attempts[3].error.is_none());
    let a_times = a.call_times();
    let first_wait = a_times[1] - a_times[0];
    let second_wait = a_times[2] - a_times[1];
    assert!(
        first_wait <= Duration::from_millis(100),
        "retry 0 waits at most base: {first_wait:?}"
    );
    assert!(
        second_wait <= Duration::from_millis(200),
        "retry 1 waits at most 2×base: {second_wait:?}"
    );
    assert_eq!(
        b.call_times()[0],
        a_times[2],
        "no backoff after the last retry: the next target is tried at once"
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_and_never_exceeds_the_cap() {
    // Five retries with base 100 and cap 400: caps per retry are 100, 200, 400, 400, 400.
    let a = Scripted::new("a", (0..6).map(|_| Step::Fail(502)));
    let (breakers, chaos) = (
        Breakers::new(DispatchConfig {
            breaker_failures: 100,
            ..config()
        }),
        Chaos::default(),
    );
    let mut attempts = Vec::new();
    let err = dispatcher(&breakers, &chaos)
        .chat(&plan(&[&a], 5), &request(), &mut attempts)
        .await
        .err()
        .unwrap();
    assert_eq!(err.status(), 502);
    assert_eq!(a.calls(), 6);
    assert_eq!(attempts.len(), 6);
    let times = a.call_times();
    let caps = [100, 200, 400, 400, 400];
    let mut total = Duration::ZERO;
    for (i, cap) in caps.iter().enumerate() {
        let wait = times[i + 1] - times[i];
        assert!(
            wait <= Duration::from_millis(*cap),
            "retry {i} waited {wait:?} > {cap} ms"
        );
        total += wait;
    }
    // Full jitter may pick 0 for one retry, but not (with any real chance) for all five.
    assert!(total > Duration::ZERO, "the retries were not spaced at all");
}

#[tokio::test(start_paused = true)]
async fn non_retryable_400_from_a_provider_stops_the_walk_at_once() {
    let (a, b) = (
        Scripted::new("a", [Step::Fail(400)]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let mut attempts = Vec::new();
    let err = dispatcher(&breakers, &chaos)
        .chat(&plan(&[&a, &b], 2), &request(), &mut attempts)
        .await
        .err()
        .unwrap();

    assert_eq!(err.status(), 400);
    assert_eq!(err.source, ErrorSource::Upstream);
    assert_eq!(err.upstream_status, Some(400));
    assert_eq!((a.calls(), b.calls()), (1, 0), "no retry, no other target");
    assert_eq!(trail(&attempts), [("a", 400)]);
    assert!(breakers.healthy("a"), "a 400 shows the provider is up");
}

#[tokio::test(start_paused = true)]
async fn adapter_refusal_moves_to_the_next_target_without_counting_against_the_breaker() {
    let (a, b) = (
        Scripted::new("a", [Step::Refuse, Step::Refuse]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (
        Breakers::new(DispatchConfig {
            breaker_failures: 1,
            ..config()
        }),
        Chaos::default(),
    );
    let dispatcher = dispatcher(&breakers, &chaos);
    let mut attempts = Vec::new();
    let (_, served_by) = dispatcher
        .chat(&plan(&[&a, &b], 2), &request(), &mut attempts)
        .await
        .unwrap();

    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!((a.calls(), b.calls()), (1, 1), "a refusal is not retried");
    assert_eq!(trail(&attempts), [("a", 400), ("b", 200)]);
    assert!(
        breakers.healthy("a"),
        "one failure would open a's breaker (breaker_failures = 1); a refusal must not count"
    );

    // Alone in the chain, a's refusal is the answer (not a 503): it is still allowed.
    let mut attempts = Vec::new();
    let err = dispatcher
        .chat(&plan(&[&a], 2), &request(), &mut attempts)
        .await
        .err()
        .unwrap();
    assert_eq!(a.calls(), 2, "a's breaker let the second request through");
    assert_eq!(err.source, ErrorSource::Client);
    assert_eq!(err.status(), 400);
    assert_eq!(err.param.as_deref(), Some("tools"));
}

#[tokio::test(start_paused = true)]
async fn retry_after_within_the_cap_is_waited_exactly_on_the_same_target() {
    let (a, b) = (
        Scripted::new("a", [Step::FailRetryAfter(429, Duration::from_millis(350))]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let mut attempts = Vec::new();
    let started = Instant::now();
    let (_, served_by) = dispatcher(&breakers, &chaos)
        .chat(&plan(&[&a, &b], 1), &request(), &mut attempts)
        .await
        .unwrap();

    assert_eq!(started.elapsed(), Duration::from_millis(350));
    assert_eq!(&*served_by.provider_name, "a");
    assert_eq!((a.calls(), b.calls()), (2, 0));
    assert_eq!(trail(&attempts), [("a", 429), ("a", 200)]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_longer_than_the_cap_moves_to_the_next_target_at_once() {
    let (a, b) = (
        Scripted::new("a", [Step::FailRetryAfter(429, Duration::from_secs(30))]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let mut attempts = Vec::new();
    let started = Instant::now();
    let (_, served_by) = dispatcher(&breakers, &chaos)
        .chat(&plan(&[&a, &b], 3), &request(), &mut attempts)
        .await
        .unwrap();

    assert_eq!(started.elapsed(), Duration::ZERO, "no wait at all");
    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!(
        (a.calls(), b.calls()),
        (1, 1),
        "a is not retried despite retries = 3"
    );
    assert_eq!(trail(&attempts), [("a", 429), ("b", 200)]);
}

#[tokio::test(start_paused = true)]
async fn hanging_provider_is_left_for_the_next_target_after_exactly_the_attempt_timeout() {
    let (a, b) = (Scripted::new("a", [Step::Hang]), Scripted::new("b", []));
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let plan = Plan {
        timeout: Some(Duration::from_secs(2)),
        ..plan(&[&a, &b], 0)
    };
    let mut attempts = Vec::new();
    let started = Instant::now();
    let (_, served_by) =
        bounded(dispatcher(&breakers, &chaos).chat(&plan, &request(), &mut attempts))
            .await
            .unwrap();

    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!(trail(&attempts), [("a", 504), ("b", 200)]);
    assert_eq!(
        b.call_times()[0] - a.call_times()[0],
        Duration::from_secs(2)
    );
    assert_eq!(attempts[0].latency_ms, 2_000.0);
}

#[tokio::test(start_paused = true)]
async fn stream_without_content_before_first_token_deadline_moves_to_the_next_target() {
    let (a, b) = (
        Scripted::new("a", [Step::StreamStall]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let plan = Plan {
        timeout: Some(Duration::from_secs(30)),
        first_token: Some(Duration::from_millis(1_500)),
        ..plan(&[&a, &b], 0)
    };
    let mut attempts = Vec::new();
    let started = Instant::now();
    let (stream, served_by) =
        bounded(dispatcher(&breakers, &chaos).stream(&plan, &request(), &mut attempts))
            .await
            .unwrap();

    assert_eq!(
        started.elapsed(),
        Duration::from_millis(1_500),
        "the Start event alone does not count as a first token"
    );
    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!(trail(&attempts), [("a", 504), ("b", 200)]);
    assert!(attempts[0]
        .error
        .as_deref()
        .unwrap()
        .contains("no first token within 1500 ms"));
    let events: Vec<_> = stream.collect().await;
    assert!(
        matches!(events[0], Ok(StreamEvent::Start { .. })),
        "buffered Start re-attached"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Ok(StreamEvent::TextDelta { text }) if text == "hello from b")));
}

#[tokio::test(start_paused = true)]
async fn stream_that_never_opens_is_left_after_the_first_token_deadline() {
    let (a, b) = (Scripted::new("a", [Step::Hang]), Scripted::new("b", []));
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let plan = Plan {
        timeout: None,
        first_token: Some(Duration::from_millis(800)),
        ..plan(&[&a, &b], 0)
    };
    let mut attempts = Vec::new();
    let started = Instant::now();
    let (_, served_by) =
        bounded(dispatcher(&breakers, &chaos).stream(&plan, &request(), &mut attempts))
            .await
            .unwrap();

    assert_eq!(started.elapsed(), Duration::from_millis(800));
    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!(trail(&attempts), [("a", 504), ("b", 200)]);
}

#[tokio::test(start_paused = true)]
async fn stream_failing_before_its_first_content_event_fails_over() {
    let (a, b) = (
        Scripted::new("a", [Step::StreamThenFail(0)]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let mut attempts = Vec::new();
    let (stream, served_by) = dispatcher(&breakers, &chaos)
        .stream(&plan(&[&a, &b], 0), &request(), &mut attempts)
        .await
        .unwrap();

    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert_eq!(trail(&attempts), [("a", 502), ("b", 200)]);
    let events: Vec<_> = stream.collect().await;
    assert!(
        events.iter().all(Result::is_ok),
        "b's stream carries none of a's failure"
    );
    assert!(
        matches!(&events[0], Ok(StreamEvent::Start { id, .. }) if id == "resp-b"),
        "a's buffered Start was dropped with a"
    );
}

#[tokio::test(start_paused = true)]
async fn stream_failing_after_its_first_content_event_does_not_fail_over() {
    let (a, b) = (
        Scripted::new("a", [Step::StreamThenFail(2)]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let mut attempts = Vec::new();
    let (stream, served_by) = dispatcher(&breakers, &chaos)
        .stream(&plan(&[&a, &b], 2), &request(), &mut attempts)
        .await
        .unwrap();

    assert_eq!(&*served_by.provider_name, "a");
    assert_eq!(
        (a.calls(), b.calls()),
        (1, 0),
        "content reached the client: no retry, no failover"
    );
    assert_eq!(trail(&attempts), [("a", 200)]);
    let events: Vec<_> = stream.collect().await;
    assert_eq!(
        events.len(),
        4,
        "Start, two deltas, then the error: {events:?}"
    );
    assert!(matches!(&events[0], Ok(StreamEvent::Start { id, .. }) if id == "resp-a"));
    assert!(matches!(&events[1], Ok(StreamEvent::TextDelta { text }) if text == "part 0 "));
    assert!(matches!(&events[2], Ok(StreamEvent::TextDelta { text }) if text == "part 1 "));
    assert!(matches!(&events[3], Err(err) if err.upstream_status == Some(503)));
}

#[tokio::test(start_paused = true)]
async fn open_breaker_skips_the_provider_until_open_time_then_a_half_open_probe_closes_it() {
    let (a, b) = (
        Scripted::new("a", [Step::Fail(503), Step::Fail(503), Step::Fail(503)]),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let dispatcher = dispatcher(&breakers, &chaos);
    let chain = plan(&[&a, &b], 0);

    for n in 1..=3 {
        let mut attempts = Vec::new();
        let (_, served_by) = dispatcher
            .chat(&chain, &request(), &mut attempts)
            .await
            .unwrap();
        assert_eq!(&*served_by.provider_name, "b");
        assert_eq!(trail(&attempts), [("a", 502), ("b", 200)], "request {n}");
    }
    assert_eq!(a.calls(), 3);
    assert!(!breakers.healthy("a"), "open after breaker_failures = 3");

    // Open: a is skipped without a call, recorded as a 503, and b serves.
    let mut attempts = Vec::new();
    let (_, served_by) = dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!(a.calls(), 3, "no call to an open breaker");
    assert_eq!(trail(&attempts), [("a", 503), ("b", 200)]);
    assert_eq!(attempts[0].latency_ms, 0.0);

    // Still open 1 ms before breaker_open_ms.
    tokio::time::advance(Duration::from_millis(999)).await;
    let mut attempts = Vec::new();
    dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(a.calls(), 3);
    assert_eq!(trail(&attempts), [("a", 503), ("b", 200)]);

    // At breaker_open_ms the next request is the half-open probe; a answers and closes it.
    tokio::time::advance(Duration::from_millis(1)).await;
    let mut attempts = Vec::new();
    let (_, served_by) = dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(&*served_by.provider_name, "a");
    assert_eq!(a.calls(), 4);
    assert_eq!(trail(&attempts), [("a", 200)]);
    assert!(
        breakers.healthy("a"),
        "a successful probe closes the breaker"
    );
    assert_eq!(b.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn failed_half_open_probe_reopens_the_breaker_and_the_next_target_serves() {
    let (a, b) = (
        Scripted::new("a", (0..4).map(|_| Step::Fail(503))),
        Scripted::new("b", []),
    );
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let dispatcher = dispatcher(&breakers, &chaos);
    let chain = plan(&[&a, &b], 2);

    // One request with 2 retries gives a its 3 consecutive failures.
    let mut attempts = Vec::new();
    dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(
        trail(&attempts),
        [("a", 502), ("a", 502), ("a", 502), ("b", 200)]
    );
    assert!(!breakers.healthy("a"));

    tokio::time::advance(Duration::from_millis(1_000)).await;
    let mut attempts = Vec::new();
    let (_, served_by) = dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!(
        a.calls(),
        4,
        "one probe, not retried: the reopened breaker refuses the retry"
    );
    assert_eq!(trail(&attempts), [("a", 502), ("a", 503), ("b", 200)]);
    assert!(!breakers.healthy("a"));
}

/// A request that arrives `delay_ms` after now.
async fn chat_at(
    dispatcher: &Dispatcher<'_>,
    chain: &Plan,
    delay_ms: u64,
    attempts: &mut Vec<Attempt>,
) -> Result<(ChatResponse, Route), GatewayError> {
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    dispatcher.chat(chain, &request(), attempts).await
}

/// Open `provider`'s breaker with `breaker_failures` failed single-target requests.
async fn trip(dispatcher: &Dispatcher<'_>, provider: &Arc<Scripted>) {
    let chain = plan(&[provider], 0);
    for _ in 0..3 {
        let mut attempts = Vec::new();
        let err = dispatcher
            .chat(&chain, &request(), &mut attempts)
            .await
            .err()
            .unwrap();
        assert_eq!(err.upstream_status, Some(503));
    }
    assert!(!dispatcher.breakers.healthy(provider.name));
}

#[tokio::test(start_paused = true)]
async fn panic_mode_probes_the_oldest_open_breaker_first_and_one_probe_per_provider() {
    let fail3 = || (0..3).map(|_| Step::Fail(503)).collect::<Vec<_>>();
    let (a, b) = (Scripted::new("a", fail3()), Scripted::new("b", fail3()));
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let dispatcher = dispatcher(&breakers, &chaos);
    trip(&dispatcher, &b).await;
    tokio::time::advance(Duration::from_millis(10)).await;
    trip(&dispatcher, &a).await;
    // Each probe answers after 100 ms; requests arrive at 0, 10 and 20 ms.
    for provider in [&a, &b] {
        provider
            .script
            .lock()
            .unwrap()
            .push_back(Step::AnswerAfter(Duration::from_millis(100)));
    }

    let chain = plan(&[&a, &b], 1);
    let mut trails: [Vec<Attempt>; 3] = Default::default();
    let [first, second, third] = &mut trails;
    let (first_result, second_result, third_result) = tokio::join!(
        chat_at(&dispatcher, &chain, 0, first),
        chat_at(&dispatcher, &chain, 10, second),
        chat_at(&dispatcher, &chain, 20, third)
    );

    let (_, served_by) = first_result.unwrap();
    assert_eq!(
        &*served_by.provider_name, "b",
        "b's breaker opened first, though a is first in the chain"
    );
    assert_eq!(trail(first), [("a", 503), ("b", 503), ("b", 200)]);
    let (_, served_by) = second_result.unwrap();
    assert_eq!(
        &*served_by.provider_name, "a",
        "b has its probe in flight, so a is probed next"
    );
    assert_eq!(trail(second), [("a", 503), ("b", 503), ("a", 200)]);
    let err = third_result.err().unwrap();
    assert_eq!(err.status(), 503, "both probes in flight: refused");
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert_eq!(trail(third), [("a", 503), ("b", 503)]);
    assert_eq!((a.calls(), b.calls()), (4, 4), "one probe call each");
    assert!(breakers.healthy("a") && breakers.healthy("b"));
}

#[tokio::test(start_paused = true)]
async fn panic_mode_makes_a_single_model_request_the_probe_and_refuses_a_concurrent_one() {
    let a = Scripted::new("a", (0..3).map(|_| Step::Fail(503)));
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let dispatcher = dispatcher(&breakers, &chaos);
    trip(&dispatcher, &a).await;
    a.script
        .lock()
        .unwrap()
        .push_back(Step::AnswerAfter(Duration::from_millis(100)));

    let chain = plan(&[&a], 2);
    let (mut probe_attempts, mut other_attempts) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let probe = chat_at(&dispatcher, &chain, 0, &mut probe_attempts);
    let other = async {
        let result = chat_at(&dispatcher, &chain, 10, &mut other_attempts).await;
        (result, started.elapsed())
    };
    let (probe, (other, other_done)) = tokio::join!(probe, other);

    let (answer, _) = probe.unwrap();
    assert_eq!(answer.text, "hello from a");
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(100),
        "the probe did not wait for breaker_open_ms"
    );
    assert_eq!(trail(&probe_attempts), [("a", 503), ("a", 200)]);
    let err = other.err().unwrap();
    assert_eq!(err.status(), 503);
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert_eq!(other_done, Duration::from_millis(10), "refused at once");
    assert_eq!(trail(&other_attempts), [("a", 503)]);
    assert_eq!(
        a.calls(),
        4,
        "three trips and one probe; no call for the refused request"
    );
    assert!(
        breakers.healthy("a"),
        "the successful probe closed the breaker"
    );

    let mut attempts = Vec::new();
    dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(trail(&attempts), [("a", 200)], "closed: called directly");
    assert_eq!(a.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn adapter_refusal_on_the_half_open_probe_leaves_the_probe_to_the_next_request() {
    let a = Scripted::new(
        "a",
        [
            Step::Fail(503),
            Step::Fail(503),
            Step::Fail(503),
            Step::Refuse,
        ],
    );
    let b = Scripted::new("b", []);
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    let dispatcher = dispatcher(&breakers, &chaos);
    let chain = plan(&[&a, &b], 0);
    for _ in 0..3 {
        dispatcher
            .chat(&chain, &request(), &mut Vec::new())
            .await
            .unwrap();
    }
    assert!(!breakers.healthy("a"));

    // Half-open: this request is let through to a, whose adapter refuses it: no call upstream.
    tokio::time::advance(Duration::from_millis(1_000)).await;
    let mut attempts = Vec::new();
    dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(trail(&attempts), [("a", 400), ("b", 200)]);

    // Nothing was learnt about a, so the next request should be its probe.
    let mut attempts = Vec::new();
    let (_, served_by) = dispatcher
        .chat(&chain, &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(
        trail(&attempts),
        [("a", 200)],
        "a is skipped for another breaker_open_ms although it was never called"
    );
    assert_eq!(&*served_by.provider_name, "a");
    assert!(breakers.healthy("a"));
}

#[tokio::test(start_paused = true)]
async fn latency_window_sees_successful_attempts_only() {
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, f64)>>);
    impl LatencyObserver for Recorder {
        fn observe(&self, model: &str, ms: f64) {
            self.0.lock().unwrap().push((model.to_string(), ms));
        }
    }
    let (a, b) = (
        Scripted::new("a", [Step::Fail(503)]),
        Scripted::new("b", [Step::AnswerAfter(Duration::from_millis(300))]),
    );
    let (breakers, chaos, recorder) = (
        Breakers::new(config()),
        Chaos::default(),
        Recorder::default(),
    );
    let mut dispatcher = Dispatcher::bare(&breakers, &chaos);
    dispatcher.latency = Some(&recorder);
    let mut attempts = Vec::new();
    dispatcher
        .chat(&plan(&[&a, &b], 0), &request(), &mut attempts)
        .await
        .unwrap();
    assert_eq!(trail(&attempts), [("a", 502), ("b", 200)]);
    assert_eq!(attempts[1].latency_ms, 300.0);
    assert_eq!(*recorder.0.lock().unwrap(), [("m-b".to_string(), 300.0)]);
}

#[tokio::test(start_paused = true)]
async fn chaos_fault_fails_the_attempt_without_calling_the_provider_and_the_walk_moves_on() {
    let (a, b) = (Scripted::new("a", []), Scripted::new("b", []));
    let (breakers, chaos) = (Breakers::new(config()), Chaos::default());
    chaos
        .inject(FaultSpec {
            provider: "a".into(),
            error_rate: 1.0,
            status: 503,
            latency_ms: 250,
            duration_s: 60.0,
        })
        .unwrap();
    let mut attempts = Vec::new();
    let started = Instant::now();
    let (_, served_by) = dispatcher(&breakers, &chaos)
        .chat(&plan(&[&a, &b], 0), &request(), &mut attempts)
        .await
        .unwrap();

    assert_eq!(&*served_by.provider_name, "b");
    assert_eq!((a.calls(), b.calls()), (0, 1), "the fault stands in for a");
    assert_eq!(trail(&attempts), [("a", 502), ("b", 200)]);
    assert!(attempts[0]
        .error
        .as_deref()
        .unwrap()
        .contains("chaos drill"));
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(250),
        "the injected latency"
    );
    assert_eq!(attempts[0].latency_ms, 250.0);
}
