//! Tests of the whole-record walk and of the detectors added for hard cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::redact_record::TOO_DEEP;
use super::*;
use crate::canonical::{ChatRequest, Message, ResponseFormat, Role, Tool, ToolCall};
use crate::config::RedactConfig;
use serde_json::json;

static DEFAULT: std::sync::LazyLock<Redactor> =
    std::sync::LazyLock::new(|| Redactor::new(&RedactConfig::default()).unwrap());

fn redact(text: &str) -> String {
    DEFAULT.redact(text).into_owned()
}

const EMAIL: &str = "leak@example.com";
const KEY: &str = "sk-proj-Zx81kQ2mN4pL7vB9tR3wY6uE";

#[test]
fn every_string_and_key_of_a_record_is_redacted_wherever_it_sits() {
    let mut assistant = Message::text(Role::Assistant, "");
    assistant.tool_calls.push(ToolCall {
        id: format!("call {EMAIL}"),
        name: "lookup".into(),
        arguments: "{}".into(),
    });
    let mut tool_result = Message::text(Role::Tool, "done");
    tool_result.tool_call_id = Some(format!("call {EMAIL}"));
    tool_result.name = Some(format!("owner {EMAIL}"));
    let mut request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::text(Role::User, "hello"), assistant, tool_result],
        tools: vec![Tool {
            name: "lookup".into(),
            description: Some(format!("uses key {KEY}")),
            parameters: json!({
                "type": "object",
                "properties": { EMAIL: { "type": "string", "default": KEY } },
                "examples": [[EMAIL]],
            }),
        }],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({ "description": format!("send to {EMAIL}") }),
            strict: None,
        }),
        stop: vec![format!("STOP {KEY}")],
        ..ChatRequest::default()
    };
    request
        .metadata
        .insert(format!("owner {EMAIL}"), "x".into());
    let mut record = super::tests::record_with(request);
    record.feature = Some(format!("feature-{EMAIL}"));
    record.error = Some(format!("upstream said {KEY}"));
    record.attempts.push(Attempt {
        model: "m".into(),
        provider: "p".into(),
        status: 500,
        latency_ms: 1.0,
        error: Some(format!("bad key {KEY}")),
        reason: None,
    });
    record.output_tool_calls.push(ToolCall {
        id: format!("out {EMAIL}"),
        name: "send".into(),
        arguments: "{}".into(),
    });
    let id = record.id.clone();

    let json = String::from_utf8(DEFAULT.record_json(record.clone(), true).unwrap()).unwrap();
    for raw in [EMAIL, KEY, "Zx81kQ2m"] {
        assert!(!json.contains(raw), "{raw} survived in {json}");
    }
    // Still a record, with the gateway's own fields intact.
    let stored: LogRecord = serde_json::from_str(&json).unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.request.model, "gpt-4o-mini");
    assert_eq!(stored.request.tools[0].parameters["type"], "object");
    assert!(stored.request.metadata.contains_key("owner [EMAIL]"));

    // The in-place form does the same.
    DEFAULT.redact_record(&mut record);
    let json = serde_json::to_string(&record).unwrap();
    assert!(!json.contains(EMAIL) && !json.contains(KEY), "{json}");
}

#[test]
fn values_nested_too_deep_become_a_marker_and_the_json_reads_back() {
    let mut deep = json!("bottom");
    for _ in 0..300 {
        deep = json!({ "a": [deep] });
    }
    let request = ChatRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "deep schema")],
        tools: vec![Tool {
            name: "t".into(),
            description: None,
            parameters: deep,
        }],
        ..ChatRequest::default()
    };
    let record = super::tests::record_with(request);
    let json = DEFAULT.record_json(record, true).unwrap();
    let text = String::from_utf8(json).unwrap();
    assert!(text.contains(TOO_DEEP));
    let back: LogRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(back.request.messages[0].joined_text(), "deep schema");
}

#[test]
fn internationalised_email_addresses_are_masked() {
    for email in [
        "josé@exämple.de",
        "用户@例子.中国",
        "zoë.o'neil@bücher.example",
        "иван@почта.рф",
    ] {
        let out = redact(&format!("write to {email} today"));
        assert!(!out.contains('@'), "{email}: {out}");
        assert!(out.contains("[EMAIL]"), "{email}: {out}");
    }
}

#[test]
fn cards_with_dots_double_spaces_or_no_break_spaces_are_masked() {
    for card in [
        "4111.1111.1111.1111",
        "4111  1111  1111  1111",
        "4111\u{a0}1111\u{a0}1111\u{a0}1111",
        "5555\u{202f}5555\u{202f}5555\u{202f}4444",
        "3782.822463.10005",
    ] {
        assert_eq!(
            redact(&format!("card: {card}.")),
            "card: [CARD].",
            "{card:?}"
        );
    }
}

#[test]
fn decimals_versions_and_invalid_dotted_numbers_are_not_cards() {
    for text in [
        "pi is 3.14159265358979 roughly",
        "build 4.1.1.1.1.1.1.1.1.1.1.1.1.1.1.6",
        "ref 4111.1111.1111.1112",
    ] {
        assert_eq!(redact(text), text);
    }
    assert_eq!(redact("at 192.168.100.200"), "at [IP]");
}

#[test]
fn lower_case_and_oddly_spaced_ibans_are_masked() {
    for iban in [
        "de89 3704 0044 0532 0130 00",
        "de89370400440532013000",
        "DE89  3704  0044  0532  0130  00",
        "DE89 37040044 0532013000",
        "gb82 west 1234 5698 7654 32",
    ] {
        assert_eq!(
            redact(&format!("pay to {iban} now")),
            "pay to [IBAN] now",
            "{iban}"
        );
    }
}

#[test]
fn iban_shaped_text_with_a_bad_checksum_or_prose_stays() {
    for text in [
        "pay to de00 3704 0044 0532 0130 00 now",
        "de12 words follow here in plain prose today",
        "xx89 3704 0044 0532 0130 00",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn plain_ten_digit_phone_numbers_are_masked() {
    for text in [
        "call 4155552671 today",
        "tel: 4155552671",
        "call 14155552671 now",
    ] {
        let out = redact(text);
        assert!(
            out.contains("[PHONE]") && !out.contains("555"),
            "{text}: {out}"
        );
    }
}

#[test]
fn ids_timestamps_and_other_ten_digit_numbers_are_not_phones() {
    for text in [
        "order 4155552671 shipped",
        "invoice #4155552671",
        "id: 4155552671",
        "ts=1714521600",
        "at 1714521600 seconds",
        "sku 4155552671",
        "count 0123456789",
        "hash 4155552671abc",
        "v4155552671",
    ] {
        assert_eq!(redact(text), text);
    }
}

#[test]
fn aws_secret_access_keys_near_their_context_are_masked() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    for text in [
        format!("aws_secret_access_key = {secret}"),
        format!("AWS_SECRET_ACCESS_KEY={secret}"),
        format!("key id AKIAIOSFODNN7EXAMPLE and secret {secret}"),
        format!("AKIAIOSFODNN7EXAMPLE:{secret}"),
    ] {
        let out = redact(&text);
        assert!(!out.contains("wJalrXUtnFEMI"), "{text}: {out}");
    }
}

#[test]
fn forty_character_strings_without_aws_context_stay() {
    for text in [
        "commit da39a3ee5e6b4b0d3255bfef95601890afd80709 is the fix",
        "secret da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "the path src/logstore/journal/segmentsAndMore1 is long",
        "token wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ] {
        assert_eq!(redact(text), text);
    }
}
