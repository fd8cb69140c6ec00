#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use serde_json::json;

use super::*;

/// A request with every keyed field set, so each can be changed on its own.
fn full_request() -> ChatRequest {
    let mut assistant = Message::text(Role::Assistant, "let me look");
    assistant.tool_calls.push(ToolCall {
        id: "call_1".into(),
        name: "weather".into(),
        arguments: r#"{"city":"Paris"}"#.into(),
    });
    let mut tool_result = Message::text(Role::Tool, "18C and sunny");
    tool_result.tool_call_id = Some("call_1".into());
    let mut user = Message::text(Role::User, "what is the weather in Paris?");
    user.name = Some("alice".into());
    user.content.push(ContentPart::Image {
        source: ImageSource::Url {
            url: "https://example.com/sky.png".into(),
        },
        detail: Some("low".into()),
    });
    user.content.push(ContentPart::Image {
        source: ImageSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBORw0KGgo=".into(),
        },
        detail: None,
    });
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, "you are terse"),
            user,
            assistant,
            tool_result,
        ],
        tools: vec![Tool {
            name: "weather".into(),
            description: Some("current weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }],
        tool_choice: Some(ToolChoice::Auto),
        parallel_tool_calls: Some(true),
        response_format: Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object"}),
            strict: Some(true),
        }),
        temperature: Some(0.0),
        top_p: Some(0.9),
        top_k: Some(40),
        max_tokens: Some(256),
        stop: vec!["END".into()],
        seed: Some(7),
        presence_penalty: Some(0.1),
        frequency_penalty: Some(0.2),
        stream: false,
        end_user: Some("end-user-1".into()),
        metadata: [("feature".to_string(), "chat".to_string())].into(),
    }
}

fn key(request: &ChatRequest) -> CacheKey {
    CacheKey::of(request, "team:core")
}

type Change = (&'static str, fn(&mut ChatRequest));

/// One change per keyed field (and per part of a message), each giving a different answer.
const KEYED_CHANGES: &[Change] = &[
    ("model", |r| r.model = "gpt-4o".into()),
    ("message added", |r| {
        r.messages.push(Message::text(Role::User, "and Rome?"))
    }),
    ("message removed", |r| {
        r.messages.pop();
    }),
    ("message order", |r| r.messages.swap(0, 1)),
    ("role", |r| r.messages[0].role = Role::User),
    ("text", |r| {
        r.messages[0] = Message::text(Role::System, "you are chatty")
    }),
    ("text part split", |r| {
        r.messages[0].content = vec![
            ContentPart::Text {
                text: "you are".into(),
            },
            ContentPart::Text {
                text: " terse".into(),
            },
        ]
    }),
    ("image url", |r| {
        r.messages[1].content[1] = ContentPart::Image {
            source: ImageSource::Url {
                url: "https://example.com/sea.png".into(),
            },
            detail: Some("low".into()),
        }
    }),
    ("image detail", |r| {
        r.messages[1].content[1] = ContentPart::Image {
            source: ImageSource::Url {
                url: "https://example.com/sky.png".into(),
            },
            detail: Some("high".into()),
        }
    }),
    ("image data", |r| {
        r.messages[1].content[2] = ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/png".into(),
                data: "AAAA".into(),
            },
            detail: None,
        }
    }),
    ("image media type", |r| {
        r.messages[1].content[2] = ContentPart::Image {
            source: ImageSource::Base64 {
                media_type: "image/jpeg".into(),
                data: "iVBORw0KGgo=".into(),
            },
            detail: None,
        }
    }),
    ("message name", |r| r.messages[1].name = Some("bob".into())),
    ("message name absent", |r| r.messages[1].name = None),
    ("tool call id", |r| {
        r.messages[2].tool_calls[0].id = "call_2".into()
    }),
    ("tool call name", |r| {
        r.messages[2].tool_calls[0].name = "forecast".into()
    }),
    ("tool call arguments", |r| {
        r.messages[2].tool_calls[0].arguments = r#"{"city":"Rome"}"#.into()
    }),
    ("tool result id", |r| {
        r.messages[3].tool_call_id = Some("call_9".into())
    }),
    ("tool result content", |r| {
        r.messages[3].content = vec![ContentPart::Text {
            text: "rain".into(),
        }]
    }),
    ("tool result error", |r| r.messages[3].is_error = true),
    ("tool name", |r| r.tools[0].name = "forecast".into()),
    ("tool description", |r| {
        r.tools[0].description = Some("weather now".into())
    }),
    ("tool description absent", |r| r.tools[0].description = None),
    ("tool parameters", |r| {
        r.tools[0].parameters = json!({"type": "object"})
    }),
    ("tools empty", |r| r.tools.clear()),
    ("tool choice", |r| {
        r.tool_choice = Some(ToolChoice::Required)
    }),
    ("tool choice named", |r| {
        r.tool_choice = Some(ToolChoice::Tool("weather".into()))
    }),
    ("tool choice absent", |r| r.tool_choice = None),
    ("parallel tool calls", |r| {
        r.parallel_tool_calls = Some(false)
    }),
    ("parallel tool calls absent", |r| {
        r.parallel_tool_calls = None
    }),
    ("response format", |r| {
        r.response_format = Some(ResponseFormat::JsonObject)
    }),
    ("response format absent", |r| r.response_format = None),
    ("response schema", |r| {
        r.response_format = Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "array"}),
            strict: Some(true),
        })
    }),
    ("response schema strict", |r| {
        r.response_format = Some(ResponseFormat::JsonSchema {
            name: "answer".into(),
            schema: json!({"type": "object"}),
            strict: None,
        })
    }),
    ("temperature", |r| r.temperature = Some(0.7)),
    ("temperature absent", |r| r.temperature = None),
    ("top_p", |r| r.top_p = Some(1.0)),
    ("top_k", |r| r.top_k = Some(41)),
    ("top_k absent", |r| r.top_k = None),
    ("stop", |r| r.stop = vec!["STOP".into()]),
    ("stop empty", |r| r.stop.clear()),
    ("max_tokens", |r| r.max_tokens = Some(257)),
    ("max_tokens absent", |r| r.max_tokens = None),
    ("seed", |r| r.seed = Some(8)),
    ("seed absent", |r| r.seed = None),
    ("presence penalty", |r| r.presence_penalty = Some(0.3)),
    ("frequency penalty", |r| r.frequency_penalty = Some(0.3)),
];

#[test]
fn every_keyed_field_changes_the_key() {
    let base = key(&full_request());
    let mut seen = HashSet::from([base]);
    for (name, change) in KEYED_CHANGES {
        let mut request = full_request();
        change(&mut request);
        let changed = key(&request);
        assert_ne!(changed, base, "changing {name} kept the key");
        assert!(
            seen.insert(changed),
            "changing {name} collided with another change"
        );
    }
}

#[test]
fn stream_flag_metadata_and_end_user_do_not_change_the_key() {
    let base = key(&full_request());
    let mut request = full_request();
    request.stream = true;
    request.metadata.insert("trace".into(), "abc".into());
    request.metadata.remove("feature");
    request.end_user = None;
    assert_eq!(key(&request), base);
}

#[test]
fn the_same_request_always_has_the_same_key() {
    assert_eq!(key(&full_request()), key(&full_request()));
    assert_eq!(key(&full_request()), key(&full_request().clone()));
}

#[test]
fn scope_changes_the_key() {
    let request = full_request();
    let keys: HashSet<CacheKey> = ["team:core", "team:ml", "user:core", "global", ""]
        .iter()
        .map(|scope| CacheKey::of(&request, scope))
        .collect();
    assert_eq!(keys.len(), 5);
}

#[test]
fn object_key_order_in_tool_parameters_does_not_change_the_key() {
    let mut a = full_request();
    a.tools[0].parameters = serde_json::from_str(
        r#"{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["city"]}"#,
    )
    .unwrap();
    let mut b = full_request();
    b.tools[0].parameters = serde_json::from_str(
        r#"{"required":["city"],"properties":{"unit":{"enum":["c","f"]},"city":{"type":"string"}},"type":"object"}"#,
    )
    .unwrap();
    assert_eq!(key(&a), key(&b));
    // Array order is meaningful and stays keyed.
    let mut c = full_request();
    c.tools[0].parameters = json!({"required": ["b", "a"]});
    let mut d = full_request();
    d.tools[0].parameters = json!({"required": ["a", "b"]});
    assert_ne!(key(&c), key(&d));
}

#[test]
fn negative_zero_is_the_same_as_zero() {
    let mut a = full_request();
    a.temperature = Some(0.0);
    let mut b = full_request();
    b.temperature = Some(-0.0);
    assert_eq!(key(&a), key(&b));
}

fn chat(model: &str, texts: &[&str], stop: &[&str]) -> ChatRequest {
    ChatRequest {
        model: model.into(),
        messages: texts
            .iter()
            .map(|t| Message::text(Role::User, *t))
            .collect(),
        stop: stop.iter().map(|s| s.to_string()).collect(),
        ..ChatRequest::default()
    }
}

#[test]
fn messages_split_differently_do_not_collide() {
    assert_ne!(
        key(&chat("m", &["ab", "c"], &[])),
        key(&chat("m", &["a", "bc"], &[]))
    );
}

#[test]
fn strings_moved_between_fields_do_not_collide() {
    // Model "ab" + stop "c" against model "a" + stop "bc"; and a stop list split differently.
    assert_ne!(key(&chat("ab", &[], &["c"])), key(&chat("a", &[], &["bc"])));
    assert_ne!(
        key(&chat("m", &[], &["x", "y"])),
        key(&chat("m", &[], &["xy"]))
    );
}

#[test]
fn absent_and_empty_differ() {
    let mut absent = full_request();
    absent.messages[1].name = None;
    let mut empty = full_request();
    empty.messages[1].name = Some(String::new());
    assert_ne!(key(&absent), key(&empty));

    let no_text = ChatRequest {
        messages: vec![Message {
            content: Vec::new(),
            ..Message::text(Role::User, "")
        }],
        ..ChatRequest::default()
    };
    assert_ne!(key(&no_text), key(&chat("", &[""], &[])));
}

#[test]
fn tool_call_fields_do_not_run_into_each_other() {
    let mut a = full_request();
    a.messages[2].tool_calls[0].id = "call_1w".into();
    a.messages[2].tool_calls[0].name = "eather".into();
    assert_ne!(key(&a), key(&full_request()));
}

#[test]
fn key_displays_as_64_hex_digits() {
    let text = key(&full_request()).to_string();
    assert_eq!(text.len(), 64);
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(
        CacheKey::from_bytes(*key(&full_request()).as_bytes()),
        key(&full_request())
    );
}

fn principal(team: Option<&str>) -> Principal {
    Principal {
        key_id: "k1".into(),
        user: "alice".into(),
        team: team.map(str::to_string),
        tier: None,
    }
}

#[test]
fn scope_value_names_the_tenant() {
    let with_team = principal(Some("core"));
    assert_eq!(scope_value(CacheScope::Key, &with_team), "key:k1");
    assert_eq!(scope_value(CacheScope::User, &with_team), "user:alice");
    assert_eq!(scope_value(CacheScope::Team, &with_team), "team:core");
    assert_eq!(scope_value(CacheScope::Global, &with_team), "global");
}

#[test]
fn team_scope_without_a_team_is_the_users_own() {
    assert_eq!(
        scope_value(CacheScope::Team, &principal(None)),
        "user:alice"
    );
    assert_eq!(
        scope_value(CacheScope::Team, &principal(Some(""))),
        "user:alice"
    );
}
