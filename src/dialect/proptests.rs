//! Property tests: parsers never panic on anything a client sends, and the stream encoders
//! produce a well-formed event sequence for any order of canonical events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::anthropic::{parse_messages, AnthropicStreamEncoder};
use super::openai::{parse_chat, parse_embeddings, OpenAiStreamEncoder};
use crate::canonical::{FinishReason, StreamEvent, Usage};
use proptest::prelude::*;
use serde_json::{json, Value};

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-z_]{0,8}".prop_map(Value::String),
        prop_oneof![
            Just("text"),
            Just("image_url"),
            Just("image"),
            Just("tool_use"),
            Just("tool_result"),
            Just("function"),
            Just("user"),
            Just("assistant"),
            Just("tool"),
            Just("base64"),
            Just("url"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("type"),
                        Just("role"),
                        Just("content"),
                        Just("text"),
                        Just("id"),
                        Just("name"),
                        Just("input"),
                        Just("source"),
                        Just("tool_calls"),
                        Just("function"),
                        Just("arguments"),
                        Just("url"),
                        Just("tool_use_id"),
                    ],
                    inner,
                ),
                0..4,
            )
            .prop_map(|pairs| {
                Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn openai_fixture() -> Value {
    json!({
        "model": "m",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "ok"}
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    })
}

fn anthropic_fixture() -> Value {
    json!({
        "model": "m",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}
        ],
        "tools": [{"name": "f", "input_schema": {}}]
    })
}

/// Put `value` somewhere in `doc`, chosen by `slot`.
fn plant(mut doc: Value, slot: usize, key: &str, value: Value) -> Value {
    match slot % 5 {
        0 => doc[key] = value,
        1 => doc["messages"][slot % 3] = value,
        2 => doc["messages"][slot % 3]["content"] = value,
        3 => {
            let pointer = format!("/messages/{}/content/0", slot % 3);
            if let Some(part) = doc.pointer_mut(&pointer) {
                *part = value;
            }
        }
        _ => doc["tools"][0] = value,
    }
    doc
}

fn arb_event() -> impl Strategy<Value = StreamEvent> {
    let reason = prop_oneof![
        Just(FinishReason::Stop),
        Just(FinishReason::StopSequence),
        Just(FinishReason::Length),
        Just(FinishReason::ToolCalls),
        Just(FinishReason::ContentFilter),
    ];
    prop_oneof![
        Just(StreamEvent::Start {
            id: "up".into(),
            model: "m".into()
        }),
        "[a-z \"\n]{0,6}".prop_map(|text| StreamEvent::TextDelta { text }),
        (0u32..3, "[a-z_]{0,4}", "[a-z]{1,4}")
            .prop_map(|(index, id, name)| StreamEvent::ToolCallStart { index, id, name }),
        (0u32..3, "[{}\":a-z]{0,6}")
            .prop_map(|(index, arguments)| StreamEvent::ToolCallDelta { index, arguments }),
        reason.prop_map(|reason| StreamEvent::Finish { reason }),
        (0u64..100, 0u64..100, 0u64..50).prop_map(|(i, o, c)| StreamEvent::Usage {
            usage: Usage {
                input_tokens: i,
                output_tokens: o,
                cached_input_tokens: c,
                cache_write_input_tokens: 0,
                estimated: false
            }
        }),
    ]
}

proptest! {
    #[test]
    fn parsers_never_panic_on_arbitrary_json(
        value in arb_json(),
        slot in 0usize..100,
        key in prop_oneof![Just("model"), Just("messages"), Just("tools"), Just("tool_choice"),
                           Just("system"), Just("stop"), Just("response_format"), Just("metadata"),
                           Just("max_tokens"), Just("input"), Just("stream_options")],
    ) {
        let openai = serde_json::to_vec(&plant(openai_fixture(), slot, key, value.clone())).unwrap();
        let _ = parse_chat(&openai);
        let _ = parse_embeddings(&openai);
        let anthropic = serde_json::to_vec(&plant(anthropic_fixture(), slot, key, value)).unwrap();
        let _ = parse_messages(&anthropic);
    }

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        prop_assert!(parse_chat(&bytes).is_err());
        let _ = parse_messages(&bytes);
        let _ = parse_embeddings(&bytes);
    }

    #[test]
    fn openai_encoder_output_is_well_formed_for_any_event_order(
        events in prop::collection::vec(arb_event(), 0..14),
        include_usage in any::<bool>(),
    ) {
        let mut enc = OpenAiStreamEncoder::new("chatcmpl-p", "m", include_usage);
        let mut out = Vec::new();
        for ev in &events {
            enc.encode(ev, &mut out);
        }
        enc.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        let frames: Vec<&str> = text.trim_end_matches("\n\n").split("\n\n").collect();
        prop_assert_eq!(frames.last().copied(), Some("data: [DONE]"));
        let chunks: Vec<Value> = frames[..frames.len() - 1]
            .iter()
            .map(|f| serde_json::from_str(f.strip_prefix("data: ").unwrap()).unwrap())
            .collect();
        let finishes: Vec<usize> = chunks.iter().enumerate()
            .filter(|(_, c)| !c["choices"][0]["finish_reason"].is_null())
            .map(|(i, _)| i).collect();
        prop_assert!(finishes.len() <= 1);
        let usage_chunks: Vec<usize> = chunks.iter().enumerate()
            .filter(|(_, c)| c["choices"] == json!([]))
            .map(|(i, _)| i).collect();
        prop_assert!(usage_chunks.len() <= 1);
        if let (Some(u), Some(f)) = (usage_chunks.first(), finishes.first()) {
            prop_assert!(u > f, "usage chunk must follow the finish chunk");
        }
        if !include_usage {
            prop_assert!(usage_chunks.is_empty());
        }
        if let Some(first) = chunks.first() {
            if first["choices"] != json!([]) {
                prop_assert_eq!(&first["choices"][0]["delta"]["role"], "assistant");
            }
        }
    }

    #[test]
    fn anthropic_encoder_sequence_is_well_formed_for_any_event_order(
        events in prop::collection::vec(arb_event(), 0..14),
    ) {
        let mut enc = AnthropicStreamEncoder::new("msg_p", "m");
        let mut out = Vec::new();
        for ev in &events {
            enc.encode(ev, &mut out);
        }
        enc.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        let frames: Vec<(String, Value)> = text
            .trim_end_matches("\n\n")
            .split("\n\n")
            .map(|f| {
                let (event, data) = f.split_once('\n').unwrap();
                (
                    event.strip_prefix("event: ").unwrap().to_string(),
                    serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = frames.iter().map(|(n, _)| n.as_str()).collect();
        prop_assert_eq!(&names[..2], &["message_start", "ping"]);
        prop_assert_eq!(&names[names.len() - 2..], &["message_delta", "message_stop"]);
        let mut open: Option<u64> = None;
        let mut next = 0u64;
        for (name, data) in &frames[2..frames.len() - 2] {
            let index = data["index"].as_u64().unwrap();
            match name.as_str() {
                "content_block_start" => {
                    prop_assert!(open.is_none(), "a block opened before the last closed");
                    prop_assert_eq!(index, next);
                    open = Some(index);
                    next += 1;
                }
                "content_block_stop" => {
                    prop_assert_eq!(open, Some(index));
                    open = None;
                }
                "content_block_delta" => prop_assert!(index < next),
                other => prop_assert!(false, "unexpected event {}", other),
            }
        }
        prop_assert!(open.is_none());
    }
}
