//! OpenAI dialect: canonical stream events → `chat.completion.chunk` SSE frames.
//! Re-exported from [`super::openai`].

use super::openai_render::tool_call_id;
use super::{merge_usage, unix_now, write_sse};
use crate::canonical::{FinishReason, StreamEvent, Usage};
use crate::error::{Dialect, GatewayError};
use crate::wire::openai::{
    finish_reason, Arguments, ChatCompletionChunk, ChunkChoice, Content, Delta, FunctionCall,
    ToolCall, Usage as WireUsage,
};
#[cfg(test)]
use serde_json::Value;

/// Encodes one streamed answer as OpenAI `chat.completion.chunk` frames.
///
/// Order on the wire: a first chunk with `delta.role: "assistant"` (sent on `Start`, or
/// folded into the first delta when there was no `Start`), content and tool-call deltas,
/// a chunk with `finish_reason` and an empty delta, then — with `include_usage` — a chunk
/// with `choices: []` and `usage` (every earlier chunk then carries `"usage": null`, as
/// OpenAI does), then `data: [DONE]`.
///
/// `Usage` may arrive before or after `Finish`: reports are merged, and the usage chunk is
/// written when a `Usage` arrives after `Finish`, or by [`finish`](Self::finish). After
/// [`error`](Self::error) or [`finish`](Self::finish) the encoder writes nothing more.
#[derive(Debug)]
pub struct OpenAiStreamEncoder {
    id: String,
    model: String,
    created: i64,
    include_usage: bool,
    role_sent: bool,
    finish_sent: bool,
    usage: Option<Usage>,
    usage_sent: bool,
    done: bool,
}

impl OpenAiStreamEncoder {
    /// An encoder for the response `id` (see [`super::openai::completion_id`]), naming
    /// `model` (the client-facing name) in every chunk.
    pub fn new(id: impl Into<String>, model: impl Into<String>, include_usage: bool) -> Self {
        OpenAiStreamEncoder {
            id: id.into(),
            model: model.into(),
            created: unix_now(),
            include_usage,
            role_sent: false,
            finish_sent: false,
            usage: None,
            usage_sent: false,
            done: false,
        }
    }

    /// Append the frames `ev` means to `out` (possibly none).
    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        match ev {
            StreamEvent::Start { .. } => {
                if !self.role_sent {
                    self.write_delta(
                        out,
                        Delta {
                            content: Some(Content::Text("".into())),
                            ..Delta::default()
                        },
                        None,
                    );
                }
            }
            StreamEvent::TextDelta { text } => {
                if !text.is_empty() {
                    self.write_delta(
                        out,
                        Delta {
                            content: Some(Content::Text(text.into())),
                            ..Delta::default()
                        },
                        None,
                    );
                }
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                let id = tool_call_id(id);
                let call = ToolCall {
                    index: Some(*index),
                    id: Some(id.into()),
                    kind: Some("function"),
                    function: Some(FunctionCall {
                        name: Some(name.into()),
                        arguments: Some(Arguments::Text("".into())),
                    }),
                };
                self.write_delta(
                    out,
                    Delta {
                        tool_calls: Some(vec![call]),
                        ..Delta::default()
                    },
                    None,
                );
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                let call = ToolCall {
                    index: Some(*index),
                    function: Some(FunctionCall {
                        name: None,
                        arguments: Some(Arguments::Text(arguments.into())),
                    }),
                    ..ToolCall::default()
                };
                self.write_delta(
                    out,
                    Delta {
                        tool_calls: Some(vec![call]),
                        ..Delta::default()
                    },
                    None,
                );
            }
            StreamEvent::Finish { reason } => {
                if !self.finish_sent {
                    self.finish_sent = true;
                    self.write_delta(out, Delta::default(), Some(*reason));
                }
            }
            StreamEvent::Usage { usage } => {
                self.usage = Some(merge_usage(self.usage, *usage));
                if self.finish_sent {
                    self.write_usage(out);
                }
            }
        }
    }

    /// The upstream ended: write the owed usage chunk (if any) and `data: [DONE]`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.write_usage(out);
        out.extend_from_slice(b"data: [DONE]\n\n");
        self.done = true;
    }

    /// The upstream failed mid-stream: write OpenAI's in-stream error frame
    /// (`data: {"error":{…}}`), after which the official SDKs raise; nothing follows it.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        write_sse(out, None, &err.to_json(Dialect::OpenAi));
        self.done = true;
    }

    fn write_delta(
        &mut self,
        out: &mut Vec<u8>,
        mut delta: Delta<'_>,
        reason: Option<FinishReason>,
    ) {
        if !self.role_sent {
            delta.role = Some("assistant");
            self.role_sent = true;
        }
        let chunk = ChatCompletionChunk {
            id: Some(self.id.as_str().into()),
            object: "chat.completion.chunk",
            created: self.created,
            model: Some(self.model.as_str().into()),
            system_fingerprint: None,
            choices: Some(vec![ChunkChoice {
                index: Some(0),
                delta: Some(delta),
                logprobs: None,
                finish_reason: reason.map(|r| finish_reason(r).into()),
            }]),
            usage: self.include_usage.then_some(None),
            error: None,
        };
        write_sse(out, None, &chunk);
    }

    /// The `choices: []` usage chunk, once, when asked for and known.
    fn write_usage(&mut self, out: &mut Vec<u8>) {
        if !self.include_usage || self.usage_sent {
            return;
        }
        let Some(usage) = self.usage else {
            return;
        };
        self.usage_sent = true;
        let chunk = ChatCompletionChunk {
            id: Some(self.id.as_str().into()),
            object: "chat.completion.chunk",
            created: self.created,
            model: Some(self.model.as_str().into()),
            system_fingerprint: None,
            choices: Some(Vec::new()),
            usage: Some(Some(WireUsage::from_canonical(&usage))),
            error: None,
        };
        write_sse(out, None, &chunk);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use async_openai::types::CreateChatCompletionStreamResponse;

    /// Split SSE output into `data:` payloads, checking every frame is well formed.
    fn frames(out: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\n\n"),
            "output must end with a complete frame"
        );
        text.trim_end_matches("\n\n")
            .split("\n\n")
            .map(|frame| {
                assert!(!frame.contains('\n'), "one data line per frame: {frame:?}");
                frame.strip_prefix("data: ").unwrap().to_string()
            })
            .collect()
    }

    fn json_frames(out: &[u8]) -> Vec<Value> {
        let mut payloads = frames(out);
        assert_eq!(payloads.pop().as_deref(), Some("[DONE]"));
        payloads
            .iter()
            .map(|p| {
                // Every chunk also deserializes into the official Rust SDK's type.
                let _: CreateChatCompletionStreamResponse = serde_json::from_str(p).unwrap();
                serde_json::from_str(p).unwrap()
            })
            .collect()
    }

    fn usage() -> Usage {
        Usage {
            input_tokens: 50,
            output_tokens: 20,
            cached_input_tokens: 10,
            cache_write_input_tokens: 0,
            estimated: false,
        }
    }

    fn text_then_two_tools() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: "up-1".into(),
                model: "gpt-4o".into(),
            },
            StreamEvent::TextDelta {
                text: "Let me ".into(),
            },
            StreamEvent::TextDelta {
                text: "check.".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_a".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Paris\"}".into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_b".into(),
                name: "get_time".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into(),
            },
        ]
    }

    fn encode_all(events: &[StreamEvent], include_usage: bool) -> Vec<u8> {
        let mut enc = OpenAiStreamEncoder::new("chatcmpl-x", "fast", include_usage);
        let mut out = Vec::new();
        for ev in events {
            enc.encode(ev, &mut out);
        }
        enc.finish(&mut out);
        out
    }

    fn assert_text_and_tools(chunks: &[Value]) {
        for c in chunks {
            assert_eq!(c["id"], "chatcmpl-x");
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "fast");
            assert_eq!(c["created"], chunks[0]["created"]);
        }
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            serde_json::json!({"role": "assistant", "content": ""})
        );
        assert!(chunks[0]["choices"][0]["finish_reason"].is_null());
        assert_eq!(
            chunks[1]["choices"][0]["delta"],
            serde_json::json!({"content": "Let me "})
        );
        assert_eq!(chunks[2]["choices"][0]["delta"]["content"], "check.");
        let start = &chunks[3]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            *start,
            serde_json::json!({"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}})
        );
        let delta = &chunks[4]["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(
            *delta,
            serde_json::json!({"index": 0, "function": {"arguments": "{\"city\":"}})
        );
        assert_eq!(
            chunks[5]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "\"Paris\"}"
        );
        assert_eq!(
            chunks[6]["choices"][0]["delta"]["tool_calls"][0]["index"],
            1
        );
        assert_eq!(
            chunks[6]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "call_b"
        );
        assert_eq!(
            chunks[7]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        let fin = &chunks[8]["choices"][0];
        assert_eq!(fin["delta"], serde_json::json!({}));
        assert_eq!(fin["finish_reason"], "tool_calls");
    }

    #[test]
    fn stream_with_usage_after_finish_ends_with_usage_chunk_then_done() {
        let mut events = text_then_two_tools();
        events.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        events.push(StreamEvent::Usage { usage: usage() });
        let chunks = json_frames(&encode_all(&events, true));
        assert_eq!(chunks.len(), 10);
        assert_text_and_tools(&chunks);
        for c in &chunks[..9] {
            assert!(c["usage"].is_null() && c.get("usage").is_some());
        }
        let last = &chunks[9];
        assert_eq!(last["choices"], serde_json::json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 50);
        assert_eq!(last["usage"]["completion_tokens"], 20);
        assert_eq!(last["usage"]["total_tokens"], 70);
        assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
    }

    #[test]
    fn usage_before_finish_is_held_until_after_the_finish_chunk() {
        let mut events = text_then_two_tools();
        events.push(StreamEvent::Usage { usage: usage() });
        events.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        let chunks = json_frames(&encode_all(&events, true));
        assert_eq!(chunks.len(), 10);
        assert_text_and_tools(&chunks);
        assert_eq!(chunks[9]["choices"], serde_json::json!([]));
        assert_eq!(chunks[9]["usage"]["completion_tokens"], 20);
    }

    #[test]
    fn split_usage_reports_are_merged_into_one_chunk() {
        let events = vec![
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into(),
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 50,
                    ..Usage::default()
                },
            },
            StreamEvent::TextDelta { text: "hi".into() },
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
            StreamEvent::Usage {
                usage: Usage {
                    output_tokens: 3,
                    ..Usage::default()
                },
            },
        ];
        let chunks = json_frames(&encode_all(&events, true));
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["usage"]["prompt_tokens"], 50);
        assert_eq!(chunks[3]["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn without_include_usage_no_usage_field_or_chunk_is_sent() {
        let mut events = text_then_two_tools();
        events.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        events.push(StreamEvent::Usage { usage: usage() });
        let chunks = json_frames(&encode_all(&events, false));
        assert_eq!(chunks.len(), 9);
        assert_text_and_tools(&chunks);
        assert!(chunks.iter().all(|c| c.get("usage").is_none()));
    }

    #[test]
    fn role_is_folded_into_the_first_delta_without_start() {
        let events = vec![
            StreamEvent::TextDelta { text: "Hi".into() },
            StreamEvent::Finish {
                reason: FinishReason::StopSequence,
            },
        ];
        let chunks = json_frames(&encode_all(&events, false));
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            serde_json::json!({"role": "assistant", "content": "Hi"})
        );
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    }

    #[test]
    fn error_mid_stream_writes_one_error_frame_and_nothing_after() {
        let mut enc = OpenAiStreamEncoder::new("chatcmpl-x", "fast", true);
        let mut out = Vec::new();
        enc.encode(
            &StreamEvent::TextDelta {
                text: "partial".into(),
            },
            &mut out,
        );
        let err = GatewayError::upstream(ErrorCode::BadGateway, "upstream connection reset");
        enc.error(&err, &mut out);
        enc.encode(
            &StreamEvent::TextDelta {
                text: "late".into(),
            },
            &mut out,
        );
        enc.finish(&mut out);
        let payloads = frames(&out);
        assert_eq!(payloads.len(), 2);
        let v: Value = serde_json::from_str(&payloads[1]).unwrap();
        assert_eq!(v["error"]["message"], "upstream connection reset");
        assert_eq!(v["error"]["type"], "api_error");
        assert_eq!(v["error"]["code"], "upstream_error");
    }

    #[test]
    fn finish_is_idempotent_and_empty_text_deltas_are_skipped() {
        let mut enc = OpenAiStreamEncoder::new("chatcmpl-x", "fast", false);
        let mut out = Vec::new();
        enc.encode(
            &StreamEvent::Start {
                id: "x".into(),
                model: "m".into(),
            },
            &mut out,
        );
        enc.encode(
            &StreamEvent::TextDelta {
                text: String::new(),
            },
            &mut out,
        );
        enc.finish(&mut out);
        enc.finish(&mut out);
        assert_eq!(frames(&out).len(), 2);
    }
}
