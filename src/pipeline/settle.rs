//! Settlement helpers of the finish step: usage (the provider's, or a bounded estimate) and
//! cost from the served model's prices.

use super::exchange::Outcome;
use crate::canonical::{ChatRequest, FinishReason, Usage};
use crate::config::ModelConfig;

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

/// Cost in USD from the model's prices; `None` when the model has no prices.
pub fn cost_usd(model: &ModelConfig, usage: &Usage) -> Option<f64> {
    let input_price = model.input_usd_per_mtok?;
    // An embedding model has no output price and produces no output tokens.
    let output_price = match model.output_usd_per_mtok {
        Some(price) => price,
        None if usage.output_tokens == 0 => 0.0,
        None => return None,
    };
    let cached_price = model.cached_input_usd_per_mtok.unwrap_or(input_price);
    let cached = usage.cached_input_tokens.min(usage.input_tokens);
    let uncached = usage.input_tokens - cached;
    Some(
        (uncached as f64 * input_price
            + cached as f64 * cached_price
            + usage.output_tokens as f64 * output_price)
            / 1e6,
    )
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

    fn model(input: Option<f64>, output: Option<f64>) -> ModelConfig {
        ModelConfig {
            name: "m".into(),
            provider: "p".into(),
            upstream: None,
            input_usd_per_mtok: input,
            output_usd_per_mtok: output,
            cached_input_usd_per_mtok: Some(0.075),
            context_window: None,
            max_output_tokens: None,
            tpm: None,
            rpm: None,
            reserve_output_tokens: None,
            kind: Default::default(),
        }
    }

    #[test]
    fn cost_uses_cached_price_for_cached_tokens() {
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 500_000,
            cached_input_tokens: 200_000,
            cache_write_input_tokens: 0,
            estimated: false,
        };
        let cost = cost_usd(&model(Some(0.15), Some(0.60)), &usage).unwrap_or(-1.0);
        let expected = 0.8 * 0.15 + 0.2 * 0.075 + 0.5 * 0.60;
        assert!((cost - expected).abs() < 1e-12, "{cost} vs {expected}");
    }

    #[test]
    fn cost_is_unknown_without_prices() {
        assert!(cost_usd(&model(None, Some(1.0)), &Usage::default()).is_none());
    }

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
