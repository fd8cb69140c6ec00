//! Token estimates: a cheap one from the bytes for every request (policies, rate-limit
//! reservations), and tiktoken counts for answers whose provider reported no usage.

use crate::canonical::ChatRequest;
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

/// The tokenizer, loaded on first use only: its tables cost ~100 ms and tens of MiB, and
/// only answers from providers that report no usage need it.
fn bpe() -> Option<&'static CoreBPE> {
    static BPE: OnceLock<Option<CoreBPE>> = OnceLock::new();
    BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()).as_ref()
}

/// A cheap estimate of a request's input tokens, close to o200k_base's count: it runs on
/// every routed request (policies see it as `est_input_tokens`; the rate limiter is to
/// reserve it at admission), where a real tokenization of a long prompt would cost
/// milliseconds.
///
/// One pass over the text bytes, no allocation: each byte adds the weight of its class
/// (lower-case letter, digit, CJK lead byte, ...), and a byte that starts a piece the
/// tokenizer splits off (a run of digits or punctuation, a word after a digit or a line
/// break, an upper-case letter after a lower-case one) adds a piece weight; then 4 tokens of
/// framing per message and 3 per request. The weights were fitted on real prompts of many
/// kinds and scripts so that the estimate is rarely below the real count:
/// `benches/tokens/RESULTS.md` has the corpus, the fit and the accuracy per kind.
pub fn quick_estimate_input(req: &ChatRequest) -> u64 {
    let weight: u64 = req
        .messages
        .iter()
        .flat_map(|m| m.content.iter())
        .map(|part| match part {
            crate::canonical::ContentPart::Text { text } => quick_weight(text),
            crate::canonical::ContentPart::Image { .. } => 0,
        })
        .sum();
    weight.div_ceil(WEIGHT_UNIT)
        + QUICK_FRAMING_PER_MESSAGE * req.messages.len() as u64
        + QUICK_FRAMING_PER_REQUEST
}

/// Tokens of framing per message in OpenAI's chat format (3, and 1 for the role).
const QUICK_FRAMING_PER_MESSAGE: u64 = 4;
/// Tokens that prime the answer, once per request.
const QUICK_FRAMING_PER_REQUEST: u64 = 3;

/// Weights are in 1/64 token.
const WEIGHT_UNIT: u64 = 64;

/// The estimate of `text` in 1/64 token (see [`quick_estimate_input`]).
fn quick_weight(text: &str) -> u64 {
    // The text's start counts as following a continuation byte (no piece in progress).
    let mut previous = 0x80u8;
    let mut weight = 0u64;
    for &byte in text.as_bytes() {
        weight += u64::from(BYTE_PAIR_WEIGHT[usize::from(previous) << 8 | usize::from(byte)]);
        previous = byte;
    }
    weight
}

// Byte classes of the quick estimate. A multi-byte character is weighed on its lead byte,
// whose value tells the Unicode block; its continuation bytes weigh nothing.
const CONTINUATION: u8 = 0;
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DIGIT: u8 = 3;
/// Space and tab.
const SPACE: u8 = 4;
/// Line feed and carriage return.
const NEWLINE: u8 = 5;
/// Every other ASCII byte.
const PUNCT: u8 = 6;
/// U+0080..U+037F: accented and extended Latin letters, IPA, combining marks.
const LATIN: u8 = 7;
/// U+0380..U+03FF.
const GREEK: u8 = 8;
/// U+0400..U+04FF.
const CYRILLIC: u8 = 9;
/// U+0500..U+07FF: Armenian, Hebrew, Arabic, Syriac, Thaana.
const HEBREW_ARABIC: u8 = 10;
/// U+0800..U+0FFF: Devanagari to Malayalam, Sinhala, Thai, Lao, Tibetan.
const INDIC_THAI: u8 = 11;
/// U+1000..U+1FFF: Myanmar, Georgian, Ethiopic, Khmer, Mongolian, Vietnamese letters.
const OTHER_1000: u8 = 12;
/// U+2000..U+2FFF: typographic punctuation, arrows, maths, box drawing.
const SYMBOL: u8 = 13;
/// U+3000..U+9FFF: CJK punctuation, kana, CJK ideographs.
const CJK: u8 = 14;
/// U+A000..U+DFFF: Yi, Hangul syllables.
const HANGUL: u8 = 15;
/// U+E000..U+FFFF: private use, CJK compatibility, fullwidth forms.
const PRIVATE_FULLWIDTH: u8 = 16;
/// U+10000 and up: emoji, rare CJK.
const FOUR_BYTE: u8 = 17;
const CLASSES: usize = 18;

/// The class of each byte value.
const BYTE_CLASS: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut table = [CONTINUATION; 256];
    let mut byte = 0;
    while byte < 256 {
        table[byte] = match byte as u8 {
            b'a'..=b'z' => LOWER,
            b'A'..=b'Z' => UPPER,
            b'0'..=b'9' => DIGIT,
            b' ' | b'\t' => SPACE,
            b'\n' | b'\r' => NEWLINE,
            0x00..=0x7F => PUNCT,
            0x80..=0xBF => CONTINUATION,
            0xC0..=0xCD => LATIN,
            0xCE..=0xCF => GREEK,
            0xD0..=0xD3 => CYRILLIC,
            0xD4..=0xDF => HEBREW_ARABIC,
            0xE0 => INDIC_THAI,
            0xE1 => OTHER_1000,
            0xE2 => SYMBOL,
            0xE3..=0xE9 => CJK,
            0xEA..=0xED => HANGUL,
            0xEE..=0xEF => PRIVATE_FULLWIDTH,
            0xF0..=0xFF => FOUR_BYTE,
        };
        byte += 1;
    }
    table
}

/// Weight of one byte of each class in 1/64 token, fitted by `benches/tokens/fit_weights.py`
/// except digits (o200k puts up to 3 in a token), symbols, fullwidth forms and four-byte
/// characters (too rare in the corpus; set from strings tried on the tokenizer) and
/// U+1000..U+1FFF (Vietnamese letters there cost little, Ethiopic letters 2 tokens each: held
/// at the 4 bytes per token of the old estimate).
const CLASS_WEIGHT: [u16; CLASSES] = {
    let mut weight = [0u16; CLASSES];
    weight[LOWER as usize] = 16;
    weight[UPPER as usize] = 16;
    weight[DIGIT as usize] = 21;
    weight[SPACE as usize] = 2;
    weight[NEWLINE as usize] = 0;
    weight[PUNCT as usize] = 5;
    weight[LATIN as usize] = 45;
    weight[GREEK as usize] = 27;
    weight[CYRILLIC as usize] = 23;
    weight[HEBREW_ARABIC as usize] = 28;
    weight[INDIC_THAI as usize] = 27;
    weight[OTHER_1000 as usize] = 48;
    weight[SYMBOL as usize] = 51;
    weight[CJK as usize] = 50;
    weight[HANGUL as usize] = 52;
    weight[PRIVATE_FULLWIDTH as usize] = 64;
    weight[FOUR_BYTE as usize] = 128;
    weight
};

// Extra weight, in 1/64 token, of a byte that starts a piece o200k's pre-tokenizer splits
// off. It joins one leading space or punctuation mark to a word, so a word after those costs
// only its letters (both fitted to 0); fitted like CLASS_WEIGHT.
const WORD_AFTER_SPACE: u16 = 0;
const WORD_AFTER_PUNCT: u16 = 0;
/// A word after a digit, a line break, a non-ASCII character or at the start of the text.
const WORD_AFTER_OTHER: u16 = 23;
/// `camelCase` and base64 split where a lower-case letter meets an upper-case one.
const UPPER_AFTER_LOWER: u16 = 99;
const DIGITS_START: u16 = 64;
const PUNCT_START: u16 = 60;
const NEWLINE_START: u16 = 26;

const fn is_letter(class: u8) -> bool {
    class == LOWER || class == UPPER
}

/// Weight of a byte of class `current` after one of class `previous`: its class weight,
/// plus the piece weight if it starts a piece.
const fn pair_weight(previous: u8, current: u8) -> u16 {
    let piece = if is_letter(current) && !is_letter(previous) {
        match previous {
            SPACE => WORD_AFTER_SPACE,
            PUNCT => WORD_AFTER_PUNCT,
            _ => WORD_AFTER_OTHER,
        }
    } else if current == UPPER && previous == LOWER {
        UPPER_AFTER_LOWER
    } else if current != previous && current == DIGIT {
        DIGITS_START
    } else if current != previous && current == PUNCT {
        PUNCT_START
    } else if current != previous && current == NEWLINE {
        NEWLINE_START
    } else {
        0
    };
    CLASS_WEIGHT[current as usize] + piece
}

/// Weight of a byte after another, at `previous << 8 | byte`: one table read per byte of
/// text (64 KiB; two reads from class tables took 1.5 times as long).
static BYTE_PAIR_WEIGHT: [u8; 1 << 16] = {
    let mut table = [0u8; 1 << 16];
    let mut index = 0;
    while index < table.len() {
        let weight = pair_weight(BYTE_CLASS[index >> 8], BYTE_CLASS[index & 0xFF]);
        assert!(weight <= u8::MAX as u16, "a pair weight must fit in a byte");
        table[index] = weight as u8;
        index += 1;
    }
    table
};

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
#[allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "tokens_tests.rs"]
mod tests;
