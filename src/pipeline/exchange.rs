//! One request's life from arrival to its single finish step.
//!
//! An [`Exchange`] is created when a request arrives, before auth, and carries the context,
//! the canonical request once parsed, what the response produced so far ([`Outcome`]) and the
//! per-request state of every stage. Its finish step runs **exactly once**, whichever way the
//! request ends:
//!
//! - a complete answer or an error: the handler calls [`Exchange::finish`] before it returns
//!   the response (so a full log channel makes the request wait: backpressure, not memory);
//! - a stream: the body calls [`Exchange::finish`] when the upstream ends or fails;
//! - the client disconnects (hyper drops the handler future or the stream body) or the gateway
//!   shuts down with the request in flight: [`Drop`] finishes it with what was observed.
//!
//! `finish` consumes the exchange and `Drop` only acts on one that was never finished, so no
//! path can run the tail twice. The tail itself never runs CPU-heavy work on a request
//! thread: when usage must be estimated (the provider reported none), it moves to the
//! blocking pool of the background runtime.

use super::stages::StageStates;
use super::AppState;
use crate::canonical::{ChatRequest, FinishReason, StreamEvent, ToolCall, Usage};
use crate::context::{Endpoint, RequestContext};
use crate::error::{Dialect, GatewayError};
use crate::providers::Route;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The status recorded for a request whose client left before any response (nginx's 499).
pub const CLIENT_CLOSED: u16 = 499;

/// What the response produced, filled as it goes; the finish step reads it.
#[derive(Default)]
pub struct Outcome {
    /// The status the client got (200 for a stream that started). `None` until known.
    pub status: Option<u16>,
    /// Why the request failed, in full (the client saw the redacted form).
    pub error: Option<GatewayError>,
    /// The target that answered.
    pub route: Option<Route>,
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish: Option<FinishReason>,
    /// Usage as reported by the provider (all zero and not `estimated`: none reported).
    pub usage: Usage,
    /// Milliseconds from arrival to the first content byte (streams) or the whole answer.
    pub first_token_ms: Option<f64>,
    /// The client left before the response ended.
    pub client_disconnected: bool,
    /// The served model's capacity reservation (`tpm`/`rpm`), settled in the tail.
    pub capacity: Option<crate::ledger::Reservation>,
    /// What the request cost, priced in the tail: `None` when the served model has no price
    /// (`cost_unknown`, never $0); zero when no target answered.
    pub cost: Option<crate::cost::Usd>,
}

/// Tool calls a stream may open; later indexes are ignored (a hostile upstream's noise).
const MAX_STREAM_TOOL_CALLS: usize = 1024;

impl Outcome {
    /// Fold one stream event into what the response produced.
    pub fn observe(&mut self, event: &StreamEvent, elapsed_ms: f64) {
        match event {
            StreamEvent::Start { .. } => {}
            StreamEvent::TextDelta { text } => self.text.push_str(text),
            StreamEvent::ToolCallStart { index, id, name } => {
                let index = *index as usize;
                if index < MAX_STREAM_TOOL_CALLS {
                    while self.tool_calls.len() <= index {
                        self.tool_calls.push(ToolCall {
                            id: String::new(),
                            name: String::new(),
                            arguments: String::new(),
                        });
                    }
                    if let Some(call) = self.tool_calls.get_mut(index) {
                        call.id.clone_from(id);
                        call.name.clone_from(name);
                    }
                }
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(call) = self.tool_calls.get_mut(*index as usize) {
                    call.arguments.push_str(arguments);
                }
            }
            StreamEvent::Finish { reason } => self.finish = Some(*reason),
            StreamEvent::Usage { usage } => self.usage = *usage,
        }
        if self.first_token_ms.is_none()
            && !matches!(event, StreamEvent::Start { .. } | StreamEvent::Usage { .. })
        {
            self.first_token_ms = Some(elapsed_ms);
        }
    }

    /// Whether the provider reported no usage, so the tail must estimate it.
    pub fn needs_estimate(&self) -> bool {
        self.route.is_some()
            && self.usage.input_tokens == 0
            && self.usage.output_tokens == 0
            && !self.usage.estimated
    }
}

/// A request in flight. See the module doc for when its finish step runs.
pub struct Exchange {
    pub state: Arc<AppState>,
    pub ctx: RequestContext,
    /// The canonical request once parsed (embeddings are logged as one user message per input).
    pub request: ChatRequest,
    pub outcome: Outcome,
    /// Embeddings: the `dimensions` asked for (the inputs are in `request`), for replay.
    pub embedding_dimensions: Option<u32>,
    /// What the policy decided (the plan and the limits its hook named), for the stages.
    pub decided: Option<super::policy::Decided>,
    /// What each stage keeps between its phases.
    pub stages: StageStates,
    finished: bool,
}

/// Everything the tail needs, moved out of the exchange.
pub struct Finished {
    pub state: Arc<AppState>,
    pub ctx: RequestContext,
    pub request: ChatRequest,
    pub outcome: Outcome,
    pub embedding_dimensions: Option<u32>,
    pub stages: StageStates,
}

impl Exchange {
    /// A request that just arrived on `endpoint`.
    pub fn start(state: Arc<AppState>, dialect: Dialect, endpoint: Endpoint) -> Exchange {
        Exchange {
            state,
            ctx: RequestContext::new(dialect, endpoint),
            request: ChatRequest::default(),
            outcome: Outcome::default(),
            embedding_dimensions: None,
            decided: None,
            stages: StageStates::default(),
            finished: false,
        }
    }

    /// Record that the request failed with `err` (the status the client gets).
    pub fn fail(&mut self, err: GatewayError) {
        self.outcome.status = Some(err.status());
        self.outcome.error = Some(err);
    }

    /// Run the finish step now, from the request's own task. Waits only when the log is
    /// backed up (backpressure), or while usage is estimated off the request thread.
    pub async fn finish(mut self) {
        self.finished = true;
        let done = self.take();
        let state = done.state.clone();
        let backlog = match (&state.background, done.outcome.needs_estimate()) {
            (Some(handle), true) => {
                // Tokenizing a long prompt is CPU-heavy: never on a request thread.
                let estimated = state.tails.spawn_blocking_on(move || tail(done), handle);
                estimated.await.ok().flatten()
            }
            _ => tail(done),
        };
        if let Some(backlog) = backlog {
            // The wait runs as its own task and the request awaits it (backpressure): if the
            // request is dropped meanwhile (client gone), the record still reaches the log.
            match &state.background {
                Some(handle) => {
                    let _ = state.tails.spawn_on(backlog.wait(), handle).await;
                }
                None => backlog.wait().await,
            }
        }
    }

    fn take(&mut self) -> Finished {
        let emptied = self.ctx.emptied();
        Finished {
            state: self.state.clone(),
            ctx: std::mem::replace(&mut self.ctx, emptied),
            request: std::mem::take(&mut self.request),
            outcome: std::mem::take(&mut self.outcome),
            embedding_dimensions: self.embedding_dimensions,
            stages: std::mem::take(&mut self.stages),
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let shutting_down = self.state.closing.load(Ordering::Acquire);
        let mut done = self.take();
        if done.outcome.error.is_none() {
            if shutting_down {
                done.outcome.error = Some(GatewayError::new(
                    crate::error::ErrorSource::Internal,
                    crate::error::ErrorCode::Unavailable,
                    "the gateway shut down before the response ended",
                ));
            }
            done.outcome.client_disconnected = !shutting_down;
        }
        if done.outcome.status.is_none() {
            done.outcome.status = Some(CLIENT_CLOSED);
        }
        // Dropped outside the request's task (by a hyper connection, or a runtime shutting
        // down): what must wait runs on the background runtime, whose life spans the workers'
        // and which the shutdown drains before the log is closed.
        let state = done.state.clone();
        match &state.background {
            Some(handle) if done.outcome.needs_estimate() => {
                let waiter = (state.tails.clone(), handle.clone());
                state.tails.spawn_blocking_on(
                    move || {
                        if let Some(backlog) = tail(done) {
                            waiter.0.spawn_on(backlog.wait(), &waiter.1);
                        }
                    },
                    handle,
                );
            }
            Some(handle) => {
                if let Some(backlog) = tail(done) {
                    state.tails.spawn_on(backlog.wait(), handle);
                }
            }
            None => {
                if let Some(backlog) = tail(done) {
                    backlog.block();
                }
            }
        }
    }
}

/// The finish step proper: settle usage (estimating it when the provider reported none; the
/// caller keeps that off request threads), the stages' finish hooks in order, then the log
/// hand-off. Returns the record when the log is backed up, for the caller to wait with.
fn tail(mut done: Finished) -> Option<super::log::Backlog> {
    if done.outcome.needs_estimate() {
        // At shutdown, the cheap byte estimate: loading the tokenizer could outlast the
        // time left to flush the log.
        let quick = done.state.closing.load(Ordering::Acquire);
        done.outcome.usage = super::settle::estimate_usage(&done.request, &done.outcome, quick);
    }
    let stages = done.state.stages.clone();
    stages.on_finish(&mut done);
    super::log::hand_off(done)
}
