//! Token estimates with tiktoken, for providers that report no usage and for policies.

use crate::canonical::ChatRequest;
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

/// Bytes tokenized per piece: BPE time grows faster than linearly with a piece's length
/// (a 300 KB prompt without spaces took about a minute), so text is cut into pieces first.
const PIECE_BYTES: usize = 2048;

/// Bytes tokenized per text at most; the rest is estimated at 4 bytes per token.
const MAX_TOKENIZED_BYTES: usize = 256 * 1024;

/// Tokens in `text` (o200k_base), bounded in time and size: the text is tokenized in pieces
/// of [`PIECE_BYTES`] up to [`MAX_TOKENIZED_BYTES`], and the rest (or all of it, if the
/// tokenizer failed to load) is estimated at 4 bytes per token. Linear in the text's length;
/// never recursive, so a huge output cannot overflow the stack.
pub fn count_bounded(text: &str) -> u64 {
    let Some(bpe) = bpe() else {
        return (text.len() as u64).div_ceil(4);
    };
    let mut tokens = 0u64;
    let mut rest = text;
    let mut budget = MAX_TOKENIZED_BYTES;
    while !rest.is_empty() && budget > 0 {
        let mut cut = rest.len().min(PIECE_BYTES).min(budget);
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            break;
        }
        // Prefer to cut after whitespace, so pieces split between words.
        if cut < rest.len() {
            if let Some(space) = rest[..cut].rfind(char::is_whitespace) {
                if space > cut / 2 {
                    cut = space + 1;
                    while !rest.is_char_boundary(cut) {
                        cut += 1;
                    }
                }
            }
        }
        let (piece, after) = rest.split_at(cut);
        tokens += bpe.encode_ordinary(piece).len() as u64;
        budget = budget.saturating_sub(piece.len());
        rest = after;
    }
    tokens + (rest.len() as u64).div_ceil(4)
}

/// Input tokens of a request: message text plus a few tokens of framing per message.
pub fn estimate_input(req: &ChatRequest) -> u64 {
    let framing = 3 * req.messages.len() as u64 + 3;
    count_bounded(&req.prompt_text()) + framing
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
        let n = count_bounded("The quick brown fox jumps over the lazy dog.");
        assert!((8..=12).contains(&n), "{n}");
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn a_huge_unbroken_text_is_counted_in_linear_time_without_overflow() {
        // One 8 MB "word": unbounded BPE on it takes minutes or overflows the stack.
        let text = "x".repeat(8 * 1024 * 1024);
        let tokens = count_bounded(&text);
        let estimated_rest = ((8 * 1024 * 1024 - MAX_TOKENIZED_BYTES) as u64).div_ceil(4);
        assert!(tokens >= estimated_rest, "{tokens}");
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let text = "héllo wörld 你好 ".repeat(5_000);
        assert!(count_bounded(&text) > 10_000);
    }
}
