//! Anthropic dialect: canonical stream events → the official `/v1/messages` SSE events.
//! Re-exported from [`super::anthropic`].

use super::anthropic::tool_use_id;
use super::{merge_usage, write_sse};
use crate::canonical::{FinishReason, StreamEvent, Usage};
use crate::error::{Dialect, GatewayError};
use crate::wire::anthropic::{
    stop_reason, BlockStart, FrameDelta, Message, StreamFrame, Usage as WireUsage,
};
use serde_json::json;

/// Encodes one streamed answer as Anthropic `event: …` / `data: …` frames.
///
/// The sequence is the official one: `message_start` (empty content), one `ping`, then for
/// each content block `content_block_start`, `content_block_delta`s (`text_delta` or
/// `input_json_delta`) and `content_block_stop` — a block is closed before the next opens and
/// block indices count up from 0 — then `message_delta` (stop reason and usage) and
/// `message_stop`.
///
/// `message_start` is held back until the first content (or the end), so input tokens
/// reported early by the upstream can appear in it. Canonical `Usage` may arrive after
/// `Finish` (OpenAI upstreams): `message_delta` is written when a `Usage` arrives after
/// `Finish`, or by [`finish`](Self::finish), with all usage reports merged. A stream that
/// ends without `Finish` is closed with `end_turn`. A tool-argument delta for a block that is
/// already closed (interleaved tool calls) is sent on that block's own index rather than
/// dropped; events other than `Usage` after `message_delta` are dropped (no valid place).
/// After [`error`](Self::error) or [`finish`](Self::finish) nothing more is written.
#[derive(Debug)]
pub struct AnthropicStreamEncoder {
    id: String,
    model: String,
    started: bool,
    open: Option<OpenBlock>,
    next_block: u32,
    /// Canonical tool-call index → content block index.
    tool_blocks: Vec<(u32, u32)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    delta_sent: bool,
    done: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text { block: u32 },
    Tool { block: u32 },
}

impl AnthropicStreamEncoder {
    /// An encoder for message `id` (see [`super::anthropic::message_id`]) naming `model`, the
    /// client-facing model name.
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        AnthropicStreamEncoder {
            id: id.into(),
            model: model.into(),
            started: false,
            open: None,
            next_block: 0,
            tool_blocks: Vec::new(),
            finish: None,
            usage: None,
            delta_sent: false,
            done: false,
        }
    }

    /// Append the frames `ev` means to `out` (possibly none).
    pub fn encode(&mut self, ev: &StreamEvent, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.delta_sent && !matches!(ev, StreamEvent::Usage { .. }) {
            // Content after `message_delta` cannot be expressed; the canonical contract
            // (`Finish`, then `Usage`, last) means it never comes from a correct decoder.
            return;
        }
        match ev {
            StreamEvent::Start { .. } => {}
            StreamEvent::TextDelta { text } => {
                if text.is_empty() {
                    return;
                }
                self.start(out);
                let block = match self.open {
                    Some(OpenBlock::Text { block }) => block,
                    _ => {
                        self.close_block(out);
                        let block = self.open_block(
                            out,
                            BlockStart {
                                kind: Some("text".into()),
                                text: Some("".into()),
                                ..BlockStart::default()
                            },
                        );
                        self.open = Some(OpenBlock::Text { block });
                        block
                    }
                };
                write_delta(
                    out,
                    block,
                    FrameDelta {
                        kind: Some("text_delta".into()),
                        text: Some(text.into()),
                        ..FrameDelta::default()
                    },
                );
            }
            StreamEvent::ToolCallStart { index, id, name } => {
                self.start(out);
                self.start_tool(out, *index, id, name);
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if arguments.is_empty() {
                    return;
                }
                self.start(out);
                let block = match self.tool_block(*index) {
                    Some(block) => block,
                    // A delta whose start never came: open the block so nothing is lost.
                    None => self.start_tool(out, *index, "", ""),
                };
                write_delta(
                    out,
                    block,
                    FrameDelta {
                        kind: Some("input_json_delta".into()),
                        partial_json: Some(arguments.into()),
                        ..FrameDelta::default()
                    },
                );
            }
            StreamEvent::Finish { reason } => {
                self.start(out);
                self.close_block(out);
                self.finish = Some(*reason);
            }
            StreamEvent::Usage { usage } => {
                self.usage = Some(merge_usage(self.usage, *usage));
                if self.finish.is_some() {
                    self.write_message_delta(out);
                }
            }
        }
    }

    /// The upstream ended: close what is open, write the owed `message_delta` and
    /// `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close_block(out);
        self.write_message_delta(out);
        write_sse(out, Some("message_stop"), &StreamFrame::of("message_stop"));
        self.done = true;
    }

    /// The upstream failed mid-stream: write `event: error` with Anthropic's error body, after
    /// which the official SDKs raise; nothing follows it.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        write_sse(out, Some("error"), &err.to_json(Dialect::Anthropic));
        self.done = true;
    }

    /// `message_start` and one `ping`, once.
    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = WireUsage {
            output_tokens: Some(0),
            ..WireUsage::from_canonical(&self.usage.unwrap_or_default())
        };
        let start = StreamFrame {
            message: Some(Message {
                kind: Some("message".into()),
                id: Some(self.id.as_str().into()),
                role: "assistant",
                model: Some(self.model.as_str().into()),
                content: Some(Vec::new()),
                usage: Some(usage),
                ..Message::default()
            }),
            ..StreamFrame::of("message_start")
        };
        write_sse(out, Some("message_start"), &start);
        write_sse(out, Some("ping"), &StreamFrame::of("ping"));
    }

    /// Open a `tool_use` block for canonical tool call `index`; returns its block index.
    fn start_tool(&mut self, out: &mut Vec<u8>, index: u32, id: &str, name: &str) -> u32 {
        self.close_block(out);
        let id = tool_use_id(id);
        let block = self.open_block(
            out,
            BlockStart {
                kind: Some("tool_use".into()),
                id: Some(id.into()),
                name: Some(name.into()),
                text: None,
                input: Some(json!({})),
            },
        );
        self.tool_blocks.retain(|(tool, _)| *tool != index);
        self.tool_blocks.push((index, block));
        self.open = Some(OpenBlock::Tool { block });
        block
    }

    fn tool_block(&self, index: u32) -> Option<u32> {
        self.tool_blocks
            .iter()
            .find(|(tool, _)| *tool == index)
            .map(|(_, block)| *block)
    }

    fn open_block(&mut self, out: &mut Vec<u8>, content_block: BlockStart<'_>) -> u32 {
        let block = self.next_block;
        self.next_block += 1;
        let start = StreamFrame {
            index: Some(u64::from(block)),
            content_block: Some(content_block),
            ..StreamFrame::of("content_block_start")
        };
        write_sse(out, Some("content_block_start"), &start);
        block
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(OpenBlock::Text { block } | OpenBlock::Tool { block }) = self.open.take() {
            let stop = StreamFrame {
                index: Some(u64::from(block)),
                ..StreamFrame::of("content_block_stop")
            };
            write_sse(out, Some("content_block_stop"), &stop);
        }
    }

    fn write_message_delta(&mut self, out: &mut Vec<u8>) {
        if self.delta_sent {
            return;
        }
        self.delta_sent = true;
        self.close_block(out);
        let reason = stop_reason(self.finish.unwrap_or(FinishReason::Stop));
        let delta = StreamFrame {
            delta: Some(FrameDelta {
                stop_reason: Some(reason.into()),
                stop_sequence: Some(None),
                ..FrameDelta::default()
            }),
            usage: Some(WireUsage::from_canonical(&self.usage.unwrap_or_default())),
            ..StreamFrame::of("message_delta")
        };
        write_sse(out, Some("message_delta"), &delta);
    }
}

fn write_delta(out: &mut Vec<u8>, index: u32, delta: FrameDelta<'_>) {
    let frame = StreamFrame {
        index: Some(u64::from(index)),
        delta: Some(delta),
        ..StreamFrame::of("content_block_delta")
    };
    write_sse(out, Some("content_block_delta"), &frame);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use serde_json::Value;

    /// Parse SSE output into (event name, JSON data), checking each frame's shape and that
    /// the `type` inside the data matches the event name.
    fn frames(out: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.ends_with("\n\n"));
        text.trim_end_matches("\n\n")
            .split("\n\n")
            .map(|frame| {
                let (event_line, data_line) = frame.split_once('\n').unwrap();
                let name = event_line.strip_prefix("event: ").unwrap().to_string();
                let data: Value =
                    serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect()
    }

    fn names(frames: &[(String, Value)]) -> Vec<&str> {
        frames.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn usage() -> Usage {
        Usage {
            input_tokens: 50,
            output_tokens: 20,
            cached_input_tokens: 10,
            estimated: false,
        }
    }

    fn text_then_two_tools() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: "chatcmpl-up".into(),
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

    fn encode_all(events: &[StreamEvent]) -> Vec<(String, Value)> {
        let mut enc = AnthropicStreamEncoder::new("msg_1", "claude-fast");
        let mut out = Vec::new();
        for ev in events {
            enc.encode(ev, &mut out);
        }
        enc.finish(&mut out);
        frames(&out)
    }

    const EXPECTED_ORDER: [&str; 15] = [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ];

    fn assert_text_and_tools(f: &[(String, Value)]) {
        assert_eq!(names(f), EXPECTED_ORDER);
        let start = &f[0].1["message"];
        assert_eq!(start["id"], "msg_1");
        assert_eq!(start["type"], "message");
        assert_eq!(start["role"], "assistant");
        assert_eq!(start["model"], "claude-fast");
        assert_eq!(start["content"], json!([]));
        assert!(start["stop_reason"].is_null());
        assert_eq!(start["usage"]["output_tokens"], 0);

        assert_eq!(
            f[2].1,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        );
        assert_eq!(
            f[3].1["delta"],
            json!({"type": "text_delta", "text": "Let me "})
        );
        assert_eq!(f[4].1["delta"]["text"], "check.");
        assert_eq!(f[5].1, json!({"type": "content_block_stop", "index": 0}));
        assert_eq!(
            f[6].1,
            json!({"type": "content_block_start", "index": 1,
                   "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}})
        );
        assert_eq!(
            f[7].1,
            json!({"type": "content_block_delta", "index": 1,
                                  "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})
        );
        assert_eq!(f[8].1["delta"]["partial_json"], "\"Paris\"}");
        assert_eq!(f[9].1["index"], 1);
        assert_eq!(f[10].1["index"], 2);
        assert_eq!(f[10].1["content_block"]["id"], "call_b");
        assert_eq!(f[10].1["content_block"]["name"], "get_time");
        assert_eq!(f[11].1["index"], 2);
        assert_eq!(f[11].1["delta"]["partial_json"], "{}");
        assert_eq!(f[12].1["index"], 2);
        let delta = &f[13].1;
        assert_eq!(
            delta["delta"],
            json!({"stop_reason": "tool_use", "stop_sequence": null})
        );
        assert_eq!(delta["usage"]["output_tokens"], 20);
        assert_eq!(delta["usage"]["input_tokens"], 40);
        assert_eq!(delta["usage"]["cache_read_input_tokens"], 10);
        assert_eq!(f[14].1, json!({"type": "message_stop"}));
    }

    #[test]
    fn usage_after_finish_produces_the_official_event_sequence() {
        let mut events = text_then_two_tools();
        events.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        events.push(StreamEvent::Usage { usage: usage() });
        assert_text_and_tools(&encode_all(&events));
    }

    #[test]
    fn usage_before_finish_produces_the_same_sequence() {
        let mut events = text_then_two_tools();
        events.push(StreamEvent::Usage { usage: usage() });
        events.push(StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        });
        assert_text_and_tools(&encode_all(&events));
    }

    #[test]
    fn message_delta_is_written_as_soon_as_usage_follows_finish() {
        let mut enc = AnthropicStreamEncoder::new("msg_1", "m");
        let mut out = Vec::new();
        enc.encode(&StreamEvent::TextDelta { text: "hi".into() }, &mut out);
        enc.encode(
            &StreamEvent::Finish {
                reason: FinishReason::Length,
            },
            &mut out,
        );
        let before = names(&frames(&out)).len();
        assert_eq!(
            names(&frames(&out)).last().copied(),
            Some("content_block_stop")
        );
        enc.encode(&StreamEvent::Usage { usage: usage() }, &mut out);
        let f = frames(&out);
        assert_eq!(f.len(), before + 1);
        assert_eq!(f[before].1["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn early_input_usage_appears_in_message_start_and_reports_merge() {
        let events = vec![
            StreamEvent::Start {
                id: "x".into(),
                model: "m".into(),
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 30,
                    ..Usage::default()
                },
            },
            StreamEvent::TextDelta { text: "ok".into() },
            StreamEvent::Finish {
                reason: FinishReason::StopSequence,
            },
            StreamEvent::Usage {
                usage: Usage {
                    output_tokens: 2,
                    ..Usage::default()
                },
            },
        ];
        let f = encode_all(&events);
        assert_eq!(f[0].1["message"]["usage"]["input_tokens"], 30);
        let delta = f.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(delta.1["delta"]["stop_reason"], "stop_sequence");
        assert_eq!(delta.1["usage"]["input_tokens"], 30);
        assert_eq!(delta.1["usage"]["output_tokens"], 2);
    }

    #[test]
    fn tool_only_stream_starts_at_block_zero() {
        let events = vec![
            StreamEvent::ToolCallStart {
                index: 0,
                id: "toolu_1".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{}".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
        ];
        let f = encode_all(&events);
        assert_eq!(
            names(&f),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(f[2].1["index"], 0);
        assert_eq!(f[5].1["usage"]["output_tokens"], 0);
    }

    #[test]
    fn stream_without_finish_is_closed_with_end_turn() {
        let f = encode_all(&[StreamEvent::TextDelta { text: "cut".into() }]);
        assert_eq!(
            names(&f)[f.len() - 3..],
            ["content_block_stop", "message_delta", "message_stop"]
        );
        assert_eq!(f[f.len() - 2].1["delta"]["stop_reason"], "end_turn");
        let empty = encode_all(&[]);
        assert_eq!(
            names(&empty),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }

    #[test]
    fn text_after_a_tool_opens_a_new_text_block_and_late_deltas_keep_their_index() {
        let events = vec![
            StreamEvent::ToolCallStart {
                index: 0,
                id: "a".into(),
                name: "f".into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "b".into(),
                name: "g".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"late\":1}".into(),
            },
            StreamEvent::TextDelta {
                text: "done".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 7,
                arguments: "{}".into(),
            },
        ];
        let f = encode_all(&events);
        let late = f
            .iter()
            .find(|(_, d)| d["delta"]["partial_json"] == "{\"late\":1}")
            .unwrap();
        assert_eq!(late.1["index"], 0);
        let text_start = f
            .iter()
            .find(|(_, d)| d["content_block"]["type"] == "text")
            .unwrap();
        assert_eq!(text_start.1["index"], 2);
        let orphan = f
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .nth(3)
            .unwrap();
        assert_eq!(orphan.1["index"], 3);
        assert!(orphan.1["content_block"]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_"));
        // Every start has a matching stop, in order.
        let starts: Vec<_> = f
            .iter()
            .filter(|(n, _)| n == "content_block_start")
            .map(|(_, d)| d["index"].clone())
            .collect();
        let stops: Vec<_> = f
            .iter()
            .filter(|(n, _)| n == "content_block_stop")
            .map(|(_, d)| d["index"].clone())
            .collect();
        assert_eq!(starts, stops);
    }

    #[test]
    fn content_after_finish_is_closed_before_message_delta_and_dropped_after_it() {
        let events = vec![
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
            StreamEvent::TextDelta {
                text: "late".into(),
            },
            StreamEvent::Usage { usage: usage() },
            StreamEvent::TextDelta {
                text: "later".into(),
            },
        ];
        let f = encode_all(&events);
        assert_eq!(
            names(&f),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(f[3].1["delta"]["text"], "late");
    }

    #[test]
    fn error_mid_stream_writes_an_error_event_and_nothing_after() {
        let mut enc = AnthropicStreamEncoder::new("msg_1", "m");
        let mut out = Vec::new();
        enc.encode(
            &StreamEvent::TextDelta {
                text: "partial".into(),
            },
            &mut out,
        );
        let err = GatewayError::upstream(ErrorCode::Unavailable, "all targets are overloaded");
        enc.error(&err, &mut out);
        enc.encode(
            &StreamEvent::TextDelta {
                text: "late".into(),
            },
            &mut out,
        );
        enc.finish(&mut out);
        let f = frames(&out);
        let (name, data) = f.last().unwrap();
        assert_eq!(name, "error");
        assert_eq!(data["error"]["type"], "overloaded_error");
        assert_eq!(data["error"]["message"], "all targets are overloaded");
        assert_eq!(
            names(&f),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "error"
            ]
        );
    }
}
