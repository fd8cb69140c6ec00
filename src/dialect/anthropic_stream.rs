//! Anthropic dialect: canonical stream events → the official `/v1/messages` SSE events.
//! Re-exported from [`super::anthropic`].

use super::anthropic::tool_use_id;
use super::{merge_usage, write_sse};
use crate::canonical::{FinishReason, StreamEvent, Usage};
use crate::error::{Dialect, GatewayError};
use crate::wire::anthropic::{
    stop_reason, BlockStart, FrameDelta, Message, StreamFrame, Usage as WireUsage,
};

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
                        let block = self.open_block(out, BlockStart::text());
                        self.open = Some(OpenBlock::Text { block });
                        block
                    }
                };
                write_delta(out, block, FrameDelta::text(text));
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
                write_delta(out, block, FrameDelta::input_json(arguments));
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
        let block = self.open_block(out, BlockStart::tool_use(id, name));
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
#[path = "anthropic_stream_tests.rs"]
mod tests;
