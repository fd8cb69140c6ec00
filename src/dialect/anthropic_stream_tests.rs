//! Tests of [`super::AnthropicStreamEncoder`].

use super::*;
use crate::error::ErrorCode;
use serde_json::{json, Value};

/// Parse SSE output into (event name, JSON data), checking each frame's shape and that
/// the `type` inside the data matches the event name.
fn frames(out: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.ends_with("\n\n"));
    text.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|frame| {
            let (event_line, data_line) = frame.split_once('\n').unwrap();
            let name = event_line.strip_prefix("event: ").unwrap().to_string();
            let data: Value =
                serde_json::from_str(data_line.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(data["type"], name.as_str());
            (name, data)
        })
        .collect()
}

fn names(frames: &[(String, Value)]) -> Vec<&str> {
    frames.iter().map(|(n, _)| n.as_str()).collect()
}

fn usage() -> Usage {
    Usage {
        input_tokens: 50,
        output_tokens: 20,
        cached_input_tokens: 10,
        cache_write_input_tokens: 0,
        estimated: false,
    }
}

fn text_then_two_tools() -> Vec<StreamEvent> {
    vec![
        StreamEvent::Start {
            id: "chatcmpl-up".into(),
            model: "gpt-4o".into(),
        },
        StreamEvent::TextDelta {
            text: "Let me ".into(),
        },
        StreamEvent::TextDelta {
            text: "check.".into(),
        },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "get_weather".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"city\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "\"Paris\"}".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call_b".into(),
            name: "get_time".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{}".into(),
        },
    ]
}

fn encode_all(events: &[StreamEvent]) -> Vec<(String, Value)> {
    let mut enc = AnthropicStreamEncoder::new("msg_1", "claude-fast");
    let mut out = Vec::new();
    for ev in events {
        enc.encode(ev, &mut out);
    }
    enc.finish(&mut out);
    frames(&out)
}

const EXPECTED_ORDER: [&str; 15] = [
    "message_start",
    "ping",
    "content_block_start",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

fn assert_text_and_tools(f: &[(String, Value)]) {
    assert_eq!(names(f), EXPECTED_ORDER);
    let start = &f[0].1["message"];
    assert_eq!(start["id"], "msg_1");
    assert_eq!(start["type"], "message");
    assert_eq!(start["role"], "assistant");
    assert_eq!(start["model"], "claude-fast");
    assert_eq!(start["content"], json!([]));
    assert!(start["stop_reason"].is_null());
    assert_eq!(start["usage"]["output_tokens"], 0);

    assert_eq!(
        f[2].1,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(
        f[3].1["delta"],
        json!({"type": "text_delta", "text": "Let me "})
    );
    assert_eq!(f[4].1["delta"]["text"], "check.");
    assert_eq!(f[5].1, json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(
        f[6].1,
        json!({"type": "content_block_start", "index": 1,
               "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}})
    );
    assert_eq!(
        f[7].1,
        json!({"type": "content_block_delta", "index": 1,
                              "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}})
    );
    assert_eq!(f[8].1["delta"]["partial_json"], "\"Paris\"}");
    assert_eq!(f[9].1["index"], 1);
    assert_eq!(f[10].1["index"], 2);
    assert_eq!(f[10].1["content_block"]["id"], "call_b");
    assert_eq!(f[10].1["content_block"]["name"], "get_time");
    assert_eq!(f[11].1["index"], 2);
    assert_eq!(f[11].1["delta"]["partial_json"], "{}");
    assert_eq!(f[12].1["index"], 2);
    let delta = &f[13].1;
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "tool_use", "stop_sequence": null})
    );
    assert_eq!(delta["usage"]["output_tokens"], 20);
    assert_eq!(delta["usage"]["input_tokens"], 40);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 10);
    assert_eq!(f[14].1, json!({"type": "message_stop"}));
}

#[test]
fn usage_after_finish_produces_the_official_event_sequence() {
    let mut events = text_then_two_tools();
    events.push(StreamEvent::Finish {
        reason: FinishReason::ToolCalls,
    });
    events.push(StreamEvent::Usage { usage: usage() });
    assert_text_and_tools(&encode_all(&events));
}

#[test]
fn usage_before_finish_produces_the_same_sequence() {
    let mut events = text_then_two_tools();
    events.push(StreamEvent::Usage { usage: usage() });
    events.push(StreamEvent::Finish {
        reason: FinishReason::ToolCalls,
    });
    assert_text_and_tools(&encode_all(&events));
}

#[test]
fn message_delta_is_written_as_soon_as_usage_follows_finish() {
    let mut enc = AnthropicStreamEncoder::new("msg_1", "m");
    let mut out = Vec::new();
    enc.encode(&StreamEvent::TextDelta { text: "hi".into() }, &mut out);
    enc.encode(
        &StreamEvent::Finish {
            reason: FinishReason::Length,
        },
        &mut out,
    );
    let before = names(&frames(&out)).len();
    assert_eq!(
        names(&frames(&out)).last().copied(),
        Some("content_block_stop")
    );
    enc.encode(&StreamEvent::Usage { usage: usage() }, &mut out);
    let f = frames(&out);
    assert_eq!(f.len(), before + 1);
    assert_eq!(f[before].1["delta"]["stop_reason"], "max_tokens");
}

#[test]
fn early_input_usage_appears_in_message_start_and_reports_merge() {
    let events = vec![
        StreamEvent::Start {
            id: "x".into(),
            model: "m".into(),
        },
        StreamEvent::Usage {
            usage: Usage {
                input_tokens: 30,
                ..Usage::default()
            },
        },
        StreamEvent::TextDelta { text: "ok".into() },
        StreamEvent::Finish {
            reason: FinishReason::StopSequence,
        },
        StreamEvent::Usage {
            usage: Usage {
                output_tokens: 2,
                ..Usage::default()
            },
        },
    ];
    let f = encode_all(&events);
    assert_eq!(f[0].1["message"]["usage"]["input_tokens"], 30);
    let delta = f.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(delta.1["delta"]["stop_reason"], "stop_sequence");
    assert_eq!(delta.1["usage"]["input_tokens"], 30);
    assert_eq!(delta.1["usage"]["output_tokens"], 2);
}

#[test]
fn tool_only_stream_starts_at_block_zero() {
    let events = vec![
        StreamEvent::ToolCallStart {
            index: 0,
            id: "toolu_1".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{}".into(),
        },
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        },
    ];
    let f = encode_all(&events);
    assert_eq!(
        names(&f),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(f[2].1["index"], 0);
    assert_eq!(f[5].1["usage"]["output_tokens"], 0);
}

#[test]
fn stream_without_finish_is_closed_with_end_turn() {
    let f = encode_all(&[StreamEvent::TextDelta { text: "cut".into() }]);
    assert_eq!(
        names(&f)[f.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    assert_eq!(f[f.len() - 2].1["delta"]["stop_reason"], "end_turn");
    let empty = encode_all(&[]);
    assert_eq!(
        names(&empty),
        ["message_start", "ping", "message_delta", "message_stop"]
    );
}

#[test]
fn text_after_a_tool_opens_a_new_text_block_and_late_deltas_keep_their_index() {
    let events = vec![
        StreamEvent::ToolCallStart {
            index: 0,
            id: "a".into(),
            name: "f".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "b".into(),
            name: "g".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"late\":1}".into(),
        },
        StreamEvent::TextDelta {
            text: "done".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 7,
            arguments: "{}".into(),
        },
    ];
    let f = encode_all(&events);
    let late = f
        .iter()
        .find(|(_, d)| d["delta"]["partial_json"] == "{\"late\":1}")
        .unwrap();
    assert_eq!(late.1["index"], 0);
    let text_start = f
        .iter()
        .find(|(_, d)| d["content_block"]["type"] == "text")
        .unwrap();
    assert_eq!(text_start.1["index"], 2);
    let orphan = f
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .nth(3)
        .unwrap();
    assert_eq!(orphan.1["index"], 3);
    assert!(orphan.1["content_block"]["id"]
        .as_str()
        .unwrap()
        .starts_with("toolu_"));
    // Every start has a matching stop, in order.
    let starts: Vec<_> = f
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d["index"].clone())
        .collect();
    let stops: Vec<_> = f
        .iter()
        .filter(|(n, _)| n == "content_block_stop")
        .map(|(_, d)| d["index"].clone())
        .collect();
    assert_eq!(starts, stops);
}

#[test]
fn content_after_finish_is_closed_before_message_delta_and_dropped_after_it() {
    let events = vec![
        StreamEvent::Finish {
            reason: FinishReason::Stop,
        },
        StreamEvent::TextDelta {
            text: "late".into(),
        },
        StreamEvent::Usage { usage: usage() },
        StreamEvent::TextDelta {
            text: "later".into(),
        },
    ];
    let f = encode_all(&events);
    assert_eq!(
        names(&f),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(f[3].1["delta"]["text"], "late");
}

#[test]
fn error_mid_stream_writes_an_error_event_and_nothing_after() {
    let mut enc = AnthropicStreamEncoder::new("msg_1", "m");
    let mut out = Vec::new();
    enc.encode(
        &StreamEvent::TextDelta {
            text: "partial".into(),
        },
        &mut out,
    );
    let err = GatewayError::upstream(ErrorCode::Unavailable, "all targets are overloaded");
    enc.error(&err, &mut out);
    enc.encode(
        &StreamEvent::TextDelta {
            text: "late".into(),
        },
        &mut out,
    );
    enc.finish(&mut out);
    let f = frames(&out);
    let (name, data) = f.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(data["error"]["type"], "overloaded_error");
    assert_eq!(data["error"]["message"], "all targets are overloaded");
    assert_eq!(
        names(&f),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "error"
        ]
    );
}
