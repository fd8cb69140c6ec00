//! Stage 5: canonical → the client's dialect; streams translated event by event.
//!
//! A streamed body pulls one upstream event at a time, encodes it and hands the bytes to
//! hyper: nothing is buffered beyond one event. When the client disconnects, hyper drops the
//! body, which drops the upstream stream (closing its connection, so the provider stops) and
//! the recorder, which logs the partial answer with `client_disconnected`.

use super::record::{self, Outcome};
use super::AppState;
use crate::canonical::{ChatRequest, ChatResponse, FinishReason, StreamEvent, ToolCall, Usage};
use crate::context::RequestContext;
use crate::dialect::anthropic::AnthropicStreamEncoder;
use crate::dialect::openai::OpenAiStreamEncoder;
use crate::error::{Dialect, GatewayError};
use crate::providers::{EventStream, Route};
use crate::server::Body;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;
use std::sync::Arc;

/// A complete response body in the dialect.
pub fn render(dialect: Dialect, response: &ChatResponse, model: &str) -> Vec<u8> {
    match dialect {
        Dialect::OpenAi => crate::dialect::openai::render_response(response, model),
        Dialect::Anthropic => crate::dialect::anthropic::render_response(response, model),
    }
}

enum Encoder {
    OpenAi(OpenAiStreamEncoder),
    Anthropic(AnthropicStreamEncoder),
}

impl Encoder {
    fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.encode(event, out),
            Encoder::Anthropic(e) => e.encode(event, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.finish(out),
            Encoder::Anthropic(e) => e.finish(out),
        }
    }

    fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        match self {
            Encoder::OpenAi(e) => e.error(err, out),
            Encoder::Anthropic(e) => e.error(err, out),
        }
    }
}

/// Accumulates what a stream produced; logs it when the stream ends or is dropped.
struct Recorder {
    state: Arc<AppState>,
    ctx: RequestContext,
    request: ChatRequest,
    route: Route,
    text: String,
    tool_calls: Vec<ToolCall>,
    finish: Option<FinishReason>,
    usage: Usage,
    first_token_ms: Option<f64>,
    error: Option<GatewayError>,
    completed: bool,
}

impl Recorder {
    fn observe(&mut self, event: &StreamEvent) {
        match event {
            StreamEvent::Start { .. } => {}
            StreamEvent::TextDelta { text } => self.text.push_str(text),
            StreamEvent::ToolCallStart { index, id, name } => {
                let index = *index as usize;
                if index < 1024 {
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
            self.first_token_ms = Some(self.ctx.elapsed_ms());
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.state.log_sender.is_none() {
            return;
        }
        let usage =
            record::usage_or_estimate(&self.request, self.usage, &self.text, &self.tool_calls);
        let (status, error) = match &self.error {
            Some(err) => (err.status(), Some(err.message.clone())),
            None => (200, None),
        };
        let outcome = Outcome {
            status,
            error,
            route: Some(&self.route),
            text: std::mem::take(&mut self.text),
            tool_calls: std::mem::take(&mut self.tool_calls),
            finish: self.finish,
            usage,
            first_token_ms: self.first_token_ms,
            client_disconnected: !self.completed,
        };
        let request = std::mem::take(&mut self.request);
        let rec = record::build(&self.ctx, request, outcome);
        if tokio::runtime::Handle::try_current().is_ok() {
            record::submit(&self.state, rec);
        }
    }
}

struct StreamState {
    events: EventStream,
    encoder: Encoder,
    recorder: Recorder,
    done: bool,
}

/// The SSE body of a streamed answer. `events` starts with the buffered first content.
pub fn stream_body(
    state: Arc<AppState>,
    ctx: RequestContext,
    request: ChatRequest,
    route: Route,
    events: EventStream,
    include_usage: bool,
) -> Body {
    let model = route.model.name.clone();
    let encoder = match ctx.dialect {
        Dialect::OpenAi => Encoder::OpenAi(OpenAiStreamEncoder::new(
            ctx.id.clone(),
            model,
            include_usage,
        )),
        Dialect::Anthropic => {
            Encoder::Anthropic(AnthropicStreamEncoder::new(ctx.id.clone(), model))
        }
    };
    let st = StreamState {
        events,
        encoder,
        recorder: Recorder {
            state,
            ctx,
            request,
            route,
            text: String::new(),
            tool_calls: Vec::new(),
            finish: None,
            usage: Usage::default(),
            first_token_ms: None,
            error: None,
            completed: false,
        },
        done: false,
    };
    let frames = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let mut out = Vec::with_capacity(256);
        // Events that encode to nothing (a buffered Start) are skipped, never sent empty.
        while out.is_empty() && !st.done {
            match st.events.next().await {
                Some(Ok(event)) => {
                    st.recorder.observe(&event);
                    st.encoder.encode(&event, &mut out);
                }
                Some(Err(err)) => {
                    tracing::warn!(request_id = %st.recorder.ctx.id, error = %err, "upstream failed mid-stream");
                    st.encoder.error(&err, &mut out);
                    st.recorder.error = Some(err);
                    st.recorder.completed = true;
                    st.done = true;
                }
                None => {
                    st.encoder.finish(&mut out);
                    st.recorder.completed = true;
                    st.done = true;
                }
            }
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(out))), st))
    });
    StreamBody::new(frames).boxed_unsync()
}
