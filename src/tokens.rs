//! Token estimates with tiktoken, for providers that report no usage and for policies.

use crate::canonical::{ChatRequest, Usage};
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// The tokenizer, loaded on first use only: its tables cost ~100 ms and tens of MiB, and
/// only answers from providers that report no usage need it.
fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// A cheap estimate of a request's input tokens (≈4 bytes per token plus framing) for
/// policies: it runs on every routed request, where a real tokenization of a long prompt
/// would cost milliseconds.
pub fn quick_estimate_input(req: &ChatRequest) -> u64 {
    let bytes: usize = req
        .messages
        .iter()
        .flat_map(|m| m.content.iter())
        .map(|part| match part {
            crate::canonical::ContentPart::Text { text } => text.len(),
            crate::canonical::ContentPart::Image { .. } => 0,
        })
        .sum();
    (bytes as u64).div_ceil(4) + 3 * req.messages.len() as u64 + 3
}

/// Tokens in `text` (o200k_base); a 4-bytes-per-token guess if the tokenizer failed to load.
pub fn count(text: &str) -> u64 {
    match bpe() {
        Some(bpe) => bpe.encode_ordinary(text).len() as u64,
        None => (text.len() as u64).div_ceil(4),
    }
}

/// Input tokens of a request: message text plus a few tokens of framing per message.
pub fn estimate_input(req: &ChatRequest) -> u64 {
    let framing = 3 * req.messages.len() as u64 + 3;
    count(&req.prompt_text()) + framing
}

/// Usage estimated from the request and the output text, marked `estimated`.
pub fn estimate_usage(req: &ChatRequest, output_text: &str) -> Usage {
    Usage {
        input_tokens: estimate_input(req),
        output_tokens: count(output_text),
        cached_input_tokens: 0,
        estimated: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_estimate_is_close_for_english() {
        let req = ChatRequest {
            messages: vec![crate::canonical::Message::text(
                crate::canonical::Role::User,
                "The quick brown fox jumps over the lazy dog.",
            )],
            ..ChatRequest::default()
        };
        let quick = quick_estimate_input(&req);
        let exact = estimate_input(&req);
        assert!(quick.abs_diff(exact) <= 6, "{quick} vs {exact}");
    }

    #[test]
    fn counts_tokens_of_plain_english() {
        let n = count("The quick brown fox jumps over the lazy dog.");
        assert!((8..=12).contains(&n), "{n}");
    }
}
