//! Stage 5: canonical → the client's dialect; streams translated event by event.
//!
//! A streamed body pulls one upstream event at a time, encodes it and hands the bytes to
//! hyper: nothing is buffered beyond one event. When the client disconnects, hyper drops the
//! body, which drops the upstream stream (closing its connection, so the provider stops) and
//! the exchange, whose finish step logs the partial answer with `client_disconnected`.

use super::exchange::Exchange;
use crate::canonical::{ChatResponse, StreamEvent};
use crate::dialect::anthropic::AnthropicStreamEncoder;
use crate::dialect::openai::OpenAiStreamEncoder;
use crate::error::{Dialect, GatewayError};
use crate::http::Body;
use crate::providers::EventStream;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use std::convert::Infallible;

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

struct StreamState {
    events: EventStream,
    encoder: Encoder,
    /// Finished when the upstream ends or fails; dropped (and so finished) when the client
    /// leaves first.
    exchange: Option<Exchange>,
}

/// The SSE body of a streamed answer. `events` starts with the buffered first content. The
/// exchange rides in the body: its finish step runs when the stream ends, or on drop.
pub fn stream_body(exchange: Exchange, events: EventStream, include_usage: bool) -> Body {
    let model = exchange
        .outcome
        .route
        .as_ref()
        .map(|r| r.model.name.clone())
        .unwrap_or_default();
    let id = exchange.ctx.id.clone();
    let encoder = match exchange.ctx.dialect {
        Dialect::OpenAi => Encoder::OpenAi(OpenAiStreamEncoder::new(id, model, include_usage)),
        Dialect::Anthropic => Encoder::Anthropic(AnthropicStreamEncoder::new(id, model)),
    };
    let st = StreamState {
        events,
        encoder,
        exchange: Some(exchange),
    };
    let frames = futures_util::stream::unfold(st, |mut st| async move {
        let mut exchange = st.exchange.take()?;
        let mut out = Vec::with_capacity(256);
        let mut ended = false;
        // Events that encode to nothing (a buffered Start) are skipped, never sent empty.
        while out.is_empty() && !ended {
            match st.events.next().await {
                Some(Ok(event)) => {
                    let elapsed = exchange.ctx.elapsed_ms();
                    exchange.outcome.observe(&event, elapsed);
                    st.encoder.encode(&event, &mut out);
                }
                Some(Err(err)) => {
                    tracing::warn!(request_id = %exchange.ctx.id, error = %err, "upstream failed mid-stream");
                    st.encoder.error(&err, &mut out);
                    exchange.outcome.error = Some(err);
                    ended = true;
                }
                None => {
                    st.encoder.finish(&mut out);
                    ended = true;
                }
            }
        }
        if ended {
            exchange.finish().await;
        } else {
            st.exchange = Some(exchange);
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from(out))), st))
    });
    StreamBody::new(frames).boxed_unsync()
}
