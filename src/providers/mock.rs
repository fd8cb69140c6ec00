//! The `mock` provider: deterministic answers without a network, for the quickstart, tests,
//! benchmarks and chaos drills.
//!
//! [`generate`] is the one answer generator. It works on a [`MockPrompt`], a small view of a
//! request that both the canonical [`ChatRequest`] ([`MockPrompt::from_chat`]) and the raw wire
//! JSON read by [`crate::mock_server`] can produce, so the in-process mock and the HTTP mock
//! answer alike. [`MockProvider`] answers in-process and honours [`MockSettings`] (latency,
//! streaming pace, injected errors, hangs).
//!
//! The rules of an answer:
//! - the request offers tools, `tool_choice` is not `none` and the last message is not a tool
//!   result → one call to the forced tool (or the first tool), id `call_mock_<n>` where `n` is
//!   the number of non-system messages, arguments `{"query":"<last user text, ≤100 chars>"}`;
//! - the last message is a tool result → `tool said: <result text>`;
//! - otherwise `mock answer from <model>:` padded with filler words to `output_tokens` words,
//!   plus ` echo: <last user text>` when that text contains `ECHO`.
//!
//! Tokens are whitespace-separated words; `max_tokens` caps the output words (finish `Length`).

use super::{headers_timeout_error, EventStream, Provider};
use crate::canonical::{
    ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, FinishReason,
    Message, Role, StreamEvent, ToolCall, ToolChoice, Usage,
};
use crate::config::MockSettings;
use crate::error::GatewayError;
use futures_util::future::BoxFuture;
use futures_util::stream::StreamExt;
use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The filler words a text answer cycles through.
const FILLER: &str =
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et";

/// The longest query (in characters) put into a mock tool call's arguments.
const QUERY_CHARS: usize = 100;

/// The most embedding dimensions the mock produces (guards memory against a silly request).
pub const MAX_EMBEDDING_DIMS: usize = 8192;

/// Embedding dimensions when the request names none.
pub const DEFAULT_EMBEDDING_DIMS: usize = 8;

/// How the mock should treat the request's tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MockToolChoice<'a> {
    /// Call a tool when tools are offered (also OpenAI `required`, Anthropic `any`).
    Auto,
    /// Never call a tool.
    None,
    /// Call this tool.
    Tool(&'a str),
}

/// The parts of a request the mock answer depends on, borrowed from wherever it was parsed.
#[derive(Debug, Clone)]
pub struct MockPrompt<'a> {
    /// The model to name in the answer.
    pub model: &'a str,
    /// The first tool offered, if any.
    pub first_tool: Option<&'a str>,
    /// The request's tool choice.
    pub tool_choice: MockToolChoice<'a>,
    /// The text of the last message when that message is a tool result.
    pub tool_result: Option<Cow<'a, str>>,
    /// The text of the last user message that has text.
    pub last_user_text: Cow<'a, str>,
    /// Words in all message text (system included): the answer's input tokens.
    pub input_tokens: u64,
    /// The request's output cap in words.
    pub max_tokens: Option<u32>,
    /// Non-system messages in the request; numbers the tool call id.
    pub turns: usize,
}

impl<'a> MockPrompt<'a> {
    /// The view of a canonical request, answered as `model`.
    pub fn from_chat(req: &'a ChatRequest, model: &'a str) -> MockPrompt<'a> {
        let mut input_tokens = 0;
        let mut last_user_text: Cow<'a, str> = Cow::Borrowed("");
        let mut turns = 0;
        for message in &req.messages {
            let text = message_text(message);
            input_tokens += count_words(&text);
            if message.role != Role::System {
                turns += 1;
            }
            if message.role == Role::User && !text.is_empty() {
                last_user_text = text;
            }
        }
        let tool_result = req
            .messages
            .last()
            .filter(|m| m.role == Role::Tool)
            .map(message_text);
        let tool_choice = match &req.tool_choice {
            Some(ToolChoice::None) => MockToolChoice::None,
            Some(ToolChoice::Tool(name)) => MockToolChoice::Tool(name),
            Some(ToolChoice::Auto) | Some(ToolChoice::Required) | None => MockToolChoice::Auto,
        };
        MockPrompt {
            model,
            first_tool: req.tools.first().map(|t| t.name.as_str()),
            tool_choice,
            tool_result,
            last_user_text,
            input_tokens,
            max_tokens: req.max_tokens,
            turns,
        }
    }
}

/// A message's text parts, borrowed when there is just one.
fn message_text(message: &Message) -> Cow<'_, str> {
    let mut texts = message.content.iter().filter_map(|part| match part {
        ContentPart::Text { text } => Some(text.as_str()),
        ContentPart::Image { .. } => None,
    });
    match (texts.next(), texts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(only), None) => Cow::Borrowed(only),
        (Some(_), Some(_)) => Cow::Owned(message.joined_text()),
    }
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MockAnswer {
    /// The output text (empty for a tool call).
    pub text: String,
    /// The one tool call, when the answer calls a tool.
    pub tool_call: Option<ToolCall>,
    /// Why the answer stopped.
    pub finish: FinishReason,
    /// Input and output words.
    pub usage: Usage,
}

/// Whitespace-separated words in `text`: the mock's token count.
pub fn count_words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// `text` cut to at most `max` characters (on a character boundary).
pub fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

/// The byte length of `text` up to the end of its `words`-th word, when it has more words.
fn cut_after_words(text: &str, words: usize) -> Option<usize> {
    let mut seen = 0;
    let mut in_word = false;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_word {
                in_word = false;
                end = i;
            }
        } else if !in_word {
            in_word = true;
            seen += 1;
            if seen > words {
                return Some(end);
            }
        }
    }
    None
}

/// The answer to `prompt`, with text answers padded to about `output_tokens` words.
pub fn generate(prompt: &MockPrompt<'_>, output_tokens: u32) -> MockAnswer {
    let input_tokens = prompt.input_tokens;
    if let (Some(first_tool), None) = (prompt.first_tool, &prompt.tool_result) {
        let name = match prompt.tool_choice {
            MockToolChoice::None => None,
            MockToolChoice::Auto => Some(first_tool),
            MockToolChoice::Tool(forced) => Some(forced),
        };
        if let Some(name) = name {
            let query = truncate_chars(&prompt.last_user_text, QUERY_CHARS);
            let arguments = serde_json::json!({ "query": query }).to_string();
            let output_tokens = count_words(&arguments);
            return MockAnswer {
                text: String::new(),
                tool_call: Some(ToolCall {
                    id: format!("call_mock_{}", prompt.turns),
                    name: name.to_string(),
                    arguments,
                }),
                finish: FinishReason::ToolCalls,
                usage: usage(input_tokens, output_tokens),
            };
        }
    }
    let mut text;
    if let Some(result) = &prompt.tool_result {
        text = String::with_capacity(11 + result.len());
        text.push_str("tool said: ");
        text.push_str(result);
    } else {
        text = String::with_capacity(24 + prompt.model.len() + 8 * output_tokens as usize);
        text.push_str("mock answer from ");
        text.push_str(prompt.model);
        text.push(':');
        let have = count_words(&text);
        let need = u64::from(output_tokens).saturating_sub(have);
        for word in FILLER.split(' ').cycle().take(need as usize) {
            text.push(' ');
            text.push_str(word);
        }
        if prompt.last_user_text.contains("ECHO") {
            text.push_str(" echo: ");
            text.push_str(&prompt.last_user_text);
        }
    }
    let mut finish = FinishReason::Stop;
    if let Some(cap) = prompt.max_tokens {
        if let Some(end) = cut_after_words(&text, cap as usize) {
            text.truncate(end);
            finish = FinishReason::Length;
        }
    }
    let output_tokens = count_words(&text);
    MockAnswer {
        text,
        tool_call: None,
        finish,
        usage: usage(input_tokens, output_tokens),
    }
}

fn usage(input_tokens: u64, output_tokens: u64) -> Usage {
    Usage {
        input_tokens,
        output_tokens,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        estimated: false,
    }
}

/// `text` split at word boundaries into at most `chunks` non-empty pieces that join back to
/// `text` exactly; the space before a word starts the piece holding that word.
pub fn split_chunks(text: &str, chunks: u32) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    // Byte offsets where the whitespace before the 2nd, 3rd, … word begins.
    let mut gaps = Vec::new();
    let mut gap_start = None;
    let mut seen_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if gap_start.is_none() {
                gap_start = Some(i);
            }
        } else {
            if let (Some(start), true) = (gap_start, seen_word) {
                gaps.push(start);
            }
            gap_start = None;
            seen_word = true;
        }
    }
    let words = gaps.len() + 1;
    let pieces = (chunks.max(1) as usize).min(words);
    let mut out = Vec::with_capacity(pieces);
    let mut from = 0;
    for j in 1..pieces {
        let Some(&cut) = gaps.get(j * words / pieces - 1) else {
            continue;
        };
        if let Some(piece) = text.get(from..cut) {
            out.push(piece);
            from = cut;
        }
    }
    if let Some(rest) = text.get(from..) {
        out.push(rest);
    }
    out
}

/// Tool-call arguments split into two pieces (on a character boundary) for streaming.
pub fn split_arguments(arguments: &str) -> (&str, &str) {
    let mut mid = arguments.len() / 2;
    while !arguments.is_char_boundary(mid) {
        mid -= 1;
    }
    arguments.split_at(mid)
}

/// A deterministic unit vector for `text`, from a hash of it.
pub fn embed_text(text: &str, dims: usize) -> Vec<f32> {
    // FNV-1a seeds a splitmix64 sequence.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let dims = dims.clamp(1, MAX_EMBEDDING_DIMS);
    let mut vector: Vec<f32> = (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        })
        .collect();
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

/// Whether this request gets an injected error, at `error_rate`.
pub fn roll_error(error_rate: f64) -> bool {
    error_rate >= 1.0 || (error_rate > 0.0 && rand::random::<f64>() < error_rate)
}

/// The gateway error an injected `status` becomes (429 asks to retry after 1 s).
pub fn injected_error(status: u16) -> GatewayError {
    let retry_after = (status == 429).then(|| Duration::from_secs(1));
    super::status_error("mock", status, "mock injected error", retry_after)
}

/// Sleep `ms` milliseconds (nothing when 0).
async fn pause(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Latency, then a hang or an injected error when the settings ask for one.
async fn faults(settings: &MockSettings, fail: bool) -> Result<(), GatewayError> {
    pause(settings.latency_ms).await;
    if settings.hang {
        std::future::pending::<()>().await;
    }
    if fail {
        return Err(injected_error(settings.error_status));
    }
    Ok(())
}

/// Answers in-process with generated text.
pub struct MockProvider {
    name: Arc<str>,
    settings: Arc<MockSettings>,
    next_id: AtomicU64,
}

impl MockProvider {
    /// A mock with these settings.
    pub fn new(settings: MockSettings) -> Self {
        MockProvider {
            name: "mock".into(),
            settings: Arc::new(settings),
            next_id: AtomicU64::new(1),
        }
    }

    /// The provider name used in error messages (the `[[providers]]` name).
    pub fn named(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    fn response_id(&self) -> String {
        format!("mock-{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// The canonical events of a streamed answer, in order.
fn stream_events(id: String, model: String, answer: MockAnswer, chunks: u32) -> Vec<StreamEvent> {
    let mut events = Vec::with_capacity(chunks as usize + 4);
    events.push(StreamEvent::Start { id, model });
    if let Some(call) = answer.tool_call {
        let (head, tail) = split_arguments(&call.arguments);
        let (head, tail) = (head.to_string(), tail.to_string());
        events.push(StreamEvent::ToolCallStart {
            index: 0,
            id: call.id,
            name: call.name,
        });
        events.push(StreamEvent::ToolCallDelta {
            index: 0,
            arguments: head,
        });
        events.push(StreamEvent::ToolCallDelta {
            index: 0,
            arguments: tail,
        });
    } else {
        for piece in split_chunks(&answer.text, chunks) {
            events.push(StreamEvent::TextDelta {
                text: piece.to_string(),
            });
        }
    }
    events.push(StreamEvent::Finish {
        reason: answer.finish,
    });
    events.push(StreamEvent::Usage {
        usage: answer.usage,
    });
    events
}

/// The events as a stream paced by the settings: `first_token_delay_ms` before the first
/// event, `chunk_interval_ms` between deltas.
fn paced(events: Vec<StreamEvent>, settings: &MockSettings) -> EventStream {
    let first_delay = settings.first_token_delay_ms;
    let interval = settings.chunk_interval_ms;
    if first_delay == 0 && interval == 0 {
        return futures_util::stream::iter(events.into_iter().map(Ok)).boxed();
    }
    let state = (events.into_iter(), true, false);
    futures_util::stream::unfold(
        state,
        move |(mut events, first, mut seen_delta)| async move {
            let event = events.next()?;
            let is_delta = matches!(
                event,
                StreamEvent::TextDelta { .. } | StreamEvent::ToolCallDelta { .. }
            );
            if first {
                pause(first_delay).await;
            } else if is_delta && seen_delta {
                pause(interval).await;
            }
            seen_delta |= is_delta;
            Some((Ok(event), (events, false, seen_delta)))
        },
    )
    .boxed()
}

impl Provider for MockProvider {
    fn chat(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
        headers_deadline: Option<Duration>,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        let settings = self.settings.clone();
        let fail = roll_error(settings.error_rate);
        let answer = generate(
            &MockPrompt::from_chat(req, upstream_model),
            settings.output_tokens,
        );
        let id = self.response_id();
        let model = upstream_model.to_string();
        let name = self.name.clone();
        Box::pin(async move {
            match headers_deadline {
                Some(limit) => tokio::time::timeout(limit, faults(&settings, fail))
                    .await
                    .map_err(|_| headers_timeout_error(&name, limit))??,
                None => faults(&settings, fail).await?,
            }
            Ok(ChatResponse {
                id,
                model,
                text: answer.text,
                tool_calls: answer.tool_call.into_iter().collect(),
                finish_reason: answer.finish,
                usage: answer.usage,
            })
        })
    }

    fn chat_stream(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>> {
        let settings = self.settings.clone();
        let fail = roll_error(settings.error_rate);
        let answer = generate(
            &MockPrompt::from_chat(req, upstream_model),
            settings.output_tokens,
        );
        let id = self.response_id();
        let model = upstream_model.to_string();
        Box::pin(async move {
            faults(&settings, fail).await?;
            let events = stream_events(id, model, answer, settings.stream_chunks);
            Ok(paced(events, &settings))
        })
    }

    fn embed(
        &self,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>> {
        let settings = self.settings.clone();
        let fail = roll_error(settings.error_rate);
        let dims = req
            .dimensions
            .map_or(DEFAULT_EMBEDDING_DIMS, |d| d as usize);
        let vectors = req.input.iter().map(|t| embed_text(t, dims)).collect();
        let input_tokens = req.input.iter().map(|t| count_words(t)).sum();
        let model = upstream_model.to_string();
        Box::pin(async move {
            faults(&settings, fail).await?;
            Ok(EmbeddingsResponse {
                model,
                vectors,
                usage: usage(input_tokens, 0),
            })
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "mock_tests.rs"]
mod tests;
