//! The Gemini stream decoder.

use super::*;

/// Decodes `alt=sse` frames, each a whole `GenerateContentResponse`. Function calls arrive
/// complete, so each becomes a `ToolCallStart` plus one `ToolCallDelta` with all arguments.
/// Usage is the last `usageMetadata` seen, emitted once: right after `Finish` (the final
/// frame carries both), or at the end of the stream if it came later.
#[derive(Default)]
pub(super) struct GeminiStream {
    pub(super) model: String,
    started: bool,
    finished: bool,
    tool_calls: u32,
    usage: Option<Usage>,
    usage_emitted: bool,
}

impl GeminiStream {
    fn emit_usage(&mut self, out: &mut Vec<StreamEvent>) {
        if let (Some(usage), false) = (self.usage, self.usage_emitted) {
            self.usage_emitted = true;
            out.push(StreamEvent::Usage { usage });
        }
    }
}

impl StreamDecoder for GeminiStream {
    fn decode(&mut self, event: &SseEvent, out: &mut Vec<StreamEvent>) -> Result<(), GatewayError> {
        if event.data.trim().is_empty() {
            return Ok(());
        }
        let response: GenerateResponse =
            serde_json::from_str(&event.data).map_err(|err| unparseable(KIND, err))?;
        if let Some(error) = &response.error {
            return Err(error_frame(error));
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: response
                    .response_id
                    .clone()
                    .filter(|id| !id.is_empty())
                    .unwrap_or_else(generated_id),
                model: response
                    .model_version
                    .clone()
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| self.model.clone()),
            });
        }
        if let Some(usage) = &response.usage_metadata {
            self.usage = Some(usage.canonical());
        }
        for part in response.parts() {
            if let Some(call) = &part.function_call {
                let call = tool_call(call);
                let index = self.tool_calls;
                self.tool_calls = self.tool_calls.saturating_add(1);
                out.push(StreamEvent::ToolCallStart {
                    index,
                    id: call.id,
                    name: call.name,
                });
                out.push(StreamEvent::ToolCallDelta {
                    index,
                    arguments: call.arguments,
                });
            } else if let (Some(text), false) = (&part.text, part.thought.unwrap_or(false)) {
                if !text.is_empty() {
                    out.push(StreamEvent::TextDelta { text: text.clone() });
                }
            }
        }
        if let (Some(reason), false) = (response.finish(self.tool_calls > 0), self.finished) {
            self.finished = true;
            out.push(StreamEvent::Finish { reason });
            self.emit_usage(out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), GatewayError> {
        if !self.finished {
            return Err(GatewayError::upstream(
                ErrorCode::BadGateway,
                format!("{KIND} stream ended early"),
            ));
        }
        self.emit_usage(out);
        Ok(())
    }
}
