//! Settlement helpers of the finish step: usage (the provider's, or a bounded estimate). The
//! cost is priced by the spend stage (`stages/spend.rs`) from the price catalogue.

use super::exchange::Outcome;
use crate::canonical::{ChatRequest, FinishReason, Usage};

/// A usage estimate for an answer the provider reported no usage for, marked `estimated`.
/// Bounded in time and size (see [`crate::tokens::count_bounded`]); call it off the request
/// threads. `quick` counts 4 bytes per token instead of tokenizing (at shutdown).
pub fn estimate_usage(request: &ChatRequest, outcome: &Outcome, quick: bool) -> Usage {
    let count = |text: &str| {
        if quick {
            (text.len() as u64).div_ceil(4)
        } else {
            crate::tokens::count_bounded(text)
        }
    };
    let output_tokens = count(&outcome.text)
        + outcome
            .tool_calls
            .iter()
            .map(|call| count(&call.name) + count(&call.arguments))
            .sum::<u64>();
    let input_tokens = if quick {
        crate::tokens::quick_estimate_input(request)
    } else {
        crate::tokens::estimate_input(request)
    };
    Usage {
        input_tokens,
        output_tokens,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        estimated: true,
    }
}

/// The wire name of a finish reason, for the log.
pub fn finish_name(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::StopSequence => "stop_sequence",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_usage_is_estimated_and_marked() {
        let request = ChatRequest {
            model: "m".into(),
            messages: vec![crate::canonical::Message::text(
                crate::canonical::Role::User,
                "hello there friend",
            )],
            ..ChatRequest::default()
        };
        let outcome = Outcome {
            text: "general kenobi".into(),
            ..Outcome::default()
        };
        let usage = estimate_usage(&request, &outcome, false);
        assert!(usage.estimated);
        assert!(usage.input_tokens > 0 && usage.output_tokens > 0);
    }
}
