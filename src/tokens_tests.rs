//! Tests of the token estimates: the tokenizer's bounds, and how close the quick estimate
//! stays to it on the corpus of `benches/tokens/` and on strings the corpus lacks.
use super::*;
use crate::canonical::{Message, Role};

fn request(texts: &[&str]) -> ChatRequest {
    let messages = texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            Message::text(role, *text)
        })
        .collect();
    ChatRequest {
        messages,
        ..ChatRequest::default()
    }
}

/// The real count the estimate aims at: the tokenizer on each message, plus OpenAI's chat
/// framing (3 per message and 1 for its role, 3 to prime the answer).
fn real_tokens(texts: &[&str]) -> u64 {
    texts.iter().map(|t| count_bounded(t) + 4).sum::<u64>() + 3
}

fn ratio(texts: &[&str]) -> f64 {
    quick_estimate_input(&request(texts)) as f64 / real_tokens(texts) as f64
}

/// The old estimate: 4 bytes per token, 3 per message, 3 per request.
fn bytes_over_four(texts: &[&str]) -> u64 {
    let bytes: usize = texts.iter().map(|t| t.len()).sum();
    (bytes as u64).div_ceil(4) + 3 * texts.len() as u64 + 3
}

#[test]
fn quick_estimate_is_close_for_english() {
    let req = request(&["The quick brown fox jumps over the lazy dog."]);
    let quick = quick_estimate_input(&req);
    let exact = estimate_input(&req);
    assert!(quick.abs_diff(exact) <= 6, "{quick} vs {exact}");
}

#[test]
fn counts_tokens_of_plain_english() {
    let n = count_bounded("The quick brown fox jumps over the lazy dog.");
    assert!((8..=12).contains(&n), "{n}");
}

#[test]
fn cjk_text_is_not_underestimated_by_more_than_ten_percent() {
    // From GNOME's help (CC-BY-SA 3.0), as in the corpus.
    let chinese = "如果你的键盘布局中没有你想要的字符，你可以使用字符映射程序来查找并输入它们。\
                   你也可以在输入法中切换到另一种语言，以便输入更多的字符。";
    let japanese = "マウスの左ボタンを押したままにすることで、右クリック操作を行うことができます。\
                    片手で複数の指を別々に動かすのが困難な場合に、この機能は役立ちます。";
    let korean = "키보드 배치에 원하는 문자가 없다면 문자 표를 사용해서 찾아 입력할 수 있습니다.";
    for text in [chinese, japanese, korean] {
        let r = ratio(&[text]);
        assert!((0.9..=1.4).contains(&r), "{r:.2} for {text}");
    }
}

/// Every file of the corpus: no request estimated below 80% of its real count, and each
/// file's mean ratio between 0.9 and 1.4 (`benches/tokens/RESULTS.md` has the figures).
#[test]
fn quick_estimate_stays_near_the_tokenizer_on_every_corpus_file() {
    macro_rules! corpus {
        ($($name:literal),* $(,)?) => {
            [$(($name, include_str!(concat!("../benches/tokens/corpus/", $name, ".jsonl")))),*]
        };
    }
    let files = corpus![
        "chat-en",
        "chat-hi",
        "chat-ja",
        "chat-ru",
        "chat-zh",
        "code-js",
        "code-python",
        "code-rust",
        "json",
        "messages-ar",
        "prose-de",
        "prose-el",
        "prose-en",
        "prose-fa",
        "prose-fr",
        "prose-ja",
        "prose-ko",
        "prose-pl",
        "prose-ru",
        "prose-ta",
        "prose-uk",
        "prose-vi",
        "prose-zh",
    ];
    for (name, file) in files {
        let mut ratios = Vec::new();
        for line in file.lines() {
            let texts: Vec<String> = serde_json::from_str(line).unwrap();
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            let r = ratio(&texts);
            assert!(r >= 0.8, "{name}: {r:.2} for {:?}", texts[0]);
            ratios.push(r);
        }
        let mean = ratios.iter().sum::<f64>() / ratios.len() as f64;
        assert!((0.9..=1.4).contains(&mean), "{name}: mean {mean:.2}");
    }
}

#[test]
fn machine_strings_are_not_underestimated() {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let digests: Vec<String> = (0..20)
        .map(|i| hex::encode(Sha256::digest(format!("line {i}"))))
        .collect();
    let hex = digests.join("\n");
    let base64 = base64::engine::general_purpose::STANDARD
        .encode("Les requêtes passent par la passerelle, puis par le fournisseur. ".repeat(20));
    let numbers: String = (0..200u64)
        .map(|i| format!("{i},{},{:.3}\n", i * 7919 % 100_000, i as f64 / 7.0))
        .collect();
    for text in [&hex, &base64, &numbers] {
        let r = ratio(&[text.as_str()]);
        assert!(r >= 0.9, "{r:.2} for {}", &text[..40]);
        // The old 4 bytes per token took these for less than half their tokens.
        assert!(bytes_over_four(&[text.as_str()]) < real_tokens(&[text.as_str()]));
    }
}

#[test]
fn short_chat_messages_count_their_framing() {
    let texts = ["hi", "hello!", "how are you?", "fine, thanks", "ok", "bye"];
    let r = ratio(&texts);
    assert!((0.9..=1.3).contains(&r), "{r:.2}");
}

#[test]
fn scripts_absent_from_the_corpus_are_estimated_no_lower_than_before() {
    // Emoji (two tokens or more each), Georgian, Amharic (two tokens a letter), Mongolian
    // script: no data to fit, so at least the old 4 bytes per token.
    for text in [
        "Thanks 👋🏽 see you 🎉🎉 tomorrow 🙂",
        "ქართული ენა არის ქართველების მშობლიური ენა",
        "አማርኛ ቋንቋ",
        "ᠮᠣᠩᠭᠣᠯ ᠬᠡᠯᠡ",
    ] {
        let quick = quick_estimate_input(&request(&[text]));
        assert!(quick >= bytes_over_four(&[text]), "{quick} for {text}");
    }
}

#[test]
fn quick_estimate_skips_images_and_counts_every_text_part() {
    use crate::canonical::{ContentPart, ImageSource};
    let text = "Describe both pictures in one sentence each.";
    let mut message = Message::text(Role::User, text);
    message.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "https://example.com/a.png".into(),
        },
        detail: None,
    });
    message
        .content
        .push(ContentPart::Text { text: text.into() });
    let two_parts = quick_estimate_input(&ChatRequest {
        messages: vec![message],
        ..ChatRequest::default()
    });
    let one_part = quick_estimate_input(&request(&[text]));
    assert!(
        two_parts > one_part && two_parts <= 2 * one_part,
        "{two_parts} {one_part}"
    );
}

#[test]
fn an_empty_request_costs_its_framing_only() {
    assert_eq!(quick_estimate_input(&ChatRequest::default()), 3);
    assert_eq!(quick_estimate_input(&request(&[""])), 7);
}

#[test]
fn every_continuation_byte_weighs_nothing_and_every_lead_byte_something() {
    for byte in 0x80..=0xBFu8 {
        assert_eq!(BYTE_CLASS[usize::from(byte)], CONTINUATION);
    }
    for byte in (0x00..=0x7Fu8).chain(0xC2..=0xF4) {
        let class = BYTE_CLASS[usize::from(byte)];
        assert_ne!(class, CONTINUATION, "{byte:#x}");
        if !matches!(class, SPACE | NEWLINE | PUNCT) {
            assert!(CLASS_WEIGHT[usize::from(class)] > 0, "{byte:#x}");
        }
    }
}

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
