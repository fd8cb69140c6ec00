//! OpenAI dialect: non-streaming answers (`chat.completion`), embeddings and the model list.
//! Re-exported from [`super::openai`].

use super::{
    check_fields, fresh_id, get, invalid, opt_str, opt_u32, parse_body, prefixed_id,
    req_nonempty_str, to_json_vec, unix_now,
};
use crate::canonical::{ChatResponse, EmbeddingsRequest, EmbeddingsResponse};
#[cfg(test)]
use crate::canonical::{FinishReason, Usage};
use crate::error::GatewayError;
use crate::wire::openai::{
    finish_reason, ChatCompletion, Choice, Content, Embedding, EmbeddingList, ResponseMessage,
    ToolCall, Usage as WireUsage,
};
use base64::Engine as _;
use serde_json::{json, Value};

/// A `chatcmpl-…` id for a response: the provider's id kept when it already has that form,
/// prefixed otherwise, fresh when empty. Use it for the stream encoder's id too.
pub fn completion_id(provider_id: &str) -> String {
    prefixed_id("chatcmpl-", provider_id)
}

/// A tool call id for the client: the provider's, or a fresh `call_…` when it gave none.
pub(crate) fn tool_call_id(id: &str) -> String {
    if id.is_empty() {
        fresh_id("call_")
    } else {
        id.to_string()
    }
}

/// Render a complete answer as a `chat.completion` object. `model` is the client-facing
/// model name (what the client asked for), not the provider's.
pub fn render_response(resp: &ChatResponse, model: &str) -> Vec<u8> {
    let call_ids: Vec<String> = resp
        .tool_calls
        .iter()
        .map(|c| tool_call_id(&c.id))
        .collect();
    let tool_calls = (!resp.tool_calls.is_empty()).then(|| {
        resp.tool_calls
            .iter()
            .zip(&call_ids)
            .map(|(call, id)| ToolCall::complete(id, &call.name, &call.arguments))
            .collect()
    });
    let only_tools = resp.text.is_empty() && !resp.tool_calls.is_empty();
    let body = ChatCompletion {
        id: Some(completion_id(&resp.id).into()),
        object: "chat.completion",
        created: unix_now(),
        model: Some(model.into()),
        choices: Some(vec![Choice {
            index: Some(0),
            message: Some(ResponseMessage {
                role: "assistant",
                content: (!only_tools).then(|| Content::Text(resp.text.as_str().into())),
                refusal: None,
                tool_calls,
            }),
            logprobs: None,
            finish_reason: Some(finish_reason(resp.finish_reason).into()),
        }]),
        usage: Some(Some(WireUsage::from_canonical(&resp.usage))),
        system_fingerprint: None,
        error: None,
    };
    to_json_vec(&body)
}

/// How the client wants embedding vectors encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingFormat {
    /// A JSON array of numbers (the API default).
    #[default]
    Float,
    /// Base64 of the little-endian `f32` bytes: what the official Python and Node SDKs ask for
    /// by default, so it must be supported.
    Base64,
}

/// A parsed `/v1/embeddings` body.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiEmbeddings {
    /// The canonical request.
    pub request: EmbeddingsRequest,
    /// The encoding to answer in; pass it to [`render_embeddings`].
    pub encoding: EncodingFormat,
}

/// Parse a `/v1/embeddings` body: `input` is a string or an array of strings (token arrays
/// are refused), `encoding_format` is `float` or `base64`, plus `dimensions` and `user`.
pub fn parse_embeddings(body: &[u8]) -> Result<OpenAiEmbeddings, GatewayError> {
    let obj = parse_body(body)?;
    check_fields(
        &obj,
        "",
        &["model", "input", "encoding_format", "dimensions", "user"],
    )?;
    let model = req_nonempty_str(&obj, "", "model")?.to_string();
    let token_arrays = || {
        GatewayError::invalid(
            "input",
            "token-array inputs are not supported by switchyard; send strings",
        )
    };
    let input = match get(&obj, "input") {
        None => return Err(invalid("input", "is required")),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.is_empty() {
                return Err(invalid("input", "must not be empty"));
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) => out.push(s.clone()),
                    Value::Number(_) | Value::Array(_) => return Err(token_arrays()),
                    _ => return Err(invalid("input", "must be a string or an array of strings")),
                }
            }
            out
        }
        Some(_) => return Err(invalid("input", "must be a string or an array of strings")),
    };
    let encoding = match opt_str(&obj, "", "encoding_format")? {
        None | Some("float") => EncodingFormat::Float,
        Some("base64") => EncodingFormat::Base64,
        Some(_) => return Err(invalid("encoding_format", "must be `float` or `base64`")),
    };
    let dimensions = opt_u32(&obj, "", "dimensions")?;
    if dimensions == Some(0) {
        return Err(invalid("dimensions", "must be at least 1"));
    }
    Ok(OpenAiEmbeddings {
        request: EmbeddingsRequest {
            model,
            input,
            dimensions,
            end_user: opt_str(&obj, "", "user")?.map(str::to_string),
        },
        encoding,
    })
}

/// Render vectors as an OpenAI embeddings `list`, in the requested encoding.
pub fn render_embeddings(
    resp: &EmbeddingsResponse,
    model: &str,
    encoding: EncodingFormat,
) -> Vec<u8> {
    let data = resp
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = match encoding {
                EncodingFormat::Float => json!(vector),
                EncodingFormat::Base64 => {
                    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            Embedding {
                object: "embedding",
                index: Some(index),
                embedding,
            }
        })
        .collect();
    let body = EmbeddingList {
        object: "list",
        data,
        model: Some(model.into()),
        usage: Some(WireUsage {
            prompt_tokens: Some(resp.usage.input_tokens),
            total_tokens: Some(
                resp.usage
                    .input_tokens
                    .saturating_add(resp.usage.output_tokens),
            ),
            ..WireUsage::default()
        }),
    };
    to_json_vec(&body)
}

/// Render `GET /v1/models`: every configured model name, owned by `switchyard`.
pub fn render_models(names: &[String]) -> Vec<u8> {
    let data: Vec<Value> = names
        .iter()
        .map(
            |name| json!({ "id": name, "object": "model", "created": 0, "owned_by": "switchyard" }),
        )
        .collect();
    to_json_vec(&json!({ "object": "list", "data": data }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::canonical::ToolCall;

    fn response(text: &str, calls: Vec<ToolCall>, reason: FinishReason) -> ChatResponse {
        ChatResponse {
            id: "chatcmpl-abc123".into(),
            model: "gpt-4o-mini-2024-07-18".into(),
            text: text.into(),
            tool_calls: calls,
            finish_reason: reason,
            usage: Usage {
                input_tokens: 120,
                output_tokens: 30,
                cached_input_tokens: 64,
                cache_write_input_tokens: 0,
                estimated: false,
            },
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn text_response_renders_a_chat_completion_field_by_field() {
        let body = render_response(&response("Hello!", vec![], FinishReason::Stop), "fast");
        let v = parse(&body);
        assert_eq!(v["id"], "chatcmpl-abc123");
        assert_eq!(v["object"], "chat.completion");
        assert!(v["created"].as_i64().unwrap() > 1_600_000_000);
        assert_eq!(v["model"], "fast");
        let choice = &v["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], "Hello!");
        assert!(choice["message"].get("tool_calls").is_none());
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(v["usage"]["prompt_tokens"], 120);
        assert_eq!(v["usage"]["completion_tokens"], 30);
        assert_eq!(v["usage"]["total_tokens"], 150);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 64);
        // The official Rust SDK's types accept it.
        let sdk: async_openai::types::CreateChatCompletionResponse =
            serde_json::from_slice(&body).unwrap();
        assert_eq!(sdk.choices[0].message.content.as_deref(), Some("Hello!"));
    }

    #[test]
    fn tool_call_response_has_null_content_and_tool_calls() {
        let calls = vec![
            ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            },
            ToolCall {
                id: String::new(),
                name: "get_time".into(),
                arguments: "{}".into(),
            },
        ];
        let mut resp = response("", calls, FinishReason::ToolCalls);
        resp.id = "msg_01XYZ".into();
        let body = render_response(&resp, "smart");
        let v = parse(&body);
        assert_eq!(v["id"], "chatcmpl-msg_01XYZ");
        let msg = &v["choices"][0]["message"];
        assert!(msg["content"].is_null());
        assert_eq!(msg["tool_calls"][0]["id"], "call_1");
        assert_eq!(msg["tool_calls"][0]["type"], "function");
        assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            msg["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert!(msg["tool_calls"][1]["id"]
            .as_str()
            .unwrap()
            .starts_with("call_"));
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        let sdk: async_openai::types::CreateChatCompletionResponse =
            serde_json::from_slice(&body).unwrap();
        assert_eq!(sdk.choices[0].message.tool_calls.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn empty_text_without_tools_is_an_empty_string_and_finish_reasons_map() {
        let v = parse(&render_response(
            &response("", vec![], FinishReason::Length),
            "m",
        ));
        assert_eq!(v["choices"][0]["message"]["content"], "");
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(finish_reason(FinishReason::StopSequence), "stop");
        assert_eq!(finish_reason(FinishReason::ContentFilter), "content_filter");
        let mut resp = response("x", vec![], FinishReason::Stop);
        resp.id = String::new();
        let v = parse(&render_response(&resp, "m"));
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    }

    #[test]
    fn embeddings_parse_strings_and_reject_token_arrays() {
        let parsed = parse_embeddings(
            br#"{"model":"embed","input":["a","b"],"encoding_format":"float","dimensions":256,"user":"u1"}"#,
        )
        .unwrap();
        assert_eq!(parsed.request.input, vec!["a", "b"]);
        assert_eq!(parsed.request.dimensions, Some(256));
        assert_eq!(parsed.request.end_user.as_deref(), Some("u1"));
        assert_eq!(parsed.encoding, EncodingFormat::Float);

        let single =
            parse_embeddings(br#"{"model":"embed","input":"hello","encoding_format":"base64"}"#)
                .unwrap();
        assert_eq!(single.request.input, vec!["hello"]);
        assert_eq!(single.encoding, EncodingFormat::Base64);

        for (body, param) in [
            (r#"{"model":"embed","input":[1,2,3]}"#, "input"),
            (r#"{"model":"embed","input":[[1,2],[3]]}"#, "input"),
            (r#"{"model":"embed","input":[]}"#, "input"),
            (r#"{"model":"embed"}"#, "input"),
            (r#"{"input":"x"}"#, "model"),
            (
                r#"{"model":"embed","input":"x","encoding_format":"int8"}"#,
                "encoding_format",
            ),
            (
                r#"{"model":"embed","input":"x","dimensions":0}"#,
                "dimensions",
            ),
            (
                r#"{"model":"embed","input":"x","truncate":true}"#,
                "truncate",
            ),
        ] {
            let err = parse_embeddings(body.as_bytes()).unwrap_err();
            assert_eq!(err.status(), 400, "{body}");
            assert_eq!(err.param.as_deref(), Some(param), "{body}");
        }
        let err = parse_embeddings(br#"{"model":"embed","input":[1,2,3]}"#).unwrap_err();
        assert!(err.message.contains("token-array"));
    }

    #[test]
    fn embeddings_render_float_and_base64() {
        let resp = EmbeddingsResponse {
            model: "text-embedding-3-small".into(),
            vectors: vec![vec![0.5, -1.0], vec![0.25, 2.0]],
            usage: Usage {
                input_tokens: 8,
                ..Usage::default()
            },
        };
        let body = render_embeddings(&resp, "embed", EncodingFormat::Float);
        let sdk: async_openai::types::CreateEmbeddingResponse =
            serde_json::from_slice(&body).unwrap();
        assert_eq!(sdk.object, "list");
        assert_eq!(sdk.model, "embed");
        assert_eq!(sdk.data[1].index, 1);
        assert_eq!(sdk.data[1].object, "embedding");
        assert_eq!(sdk.data[1].embedding, vec![0.25, 2.0]);
        assert_eq!(sdk.usage.prompt_tokens, 8);
        assert_eq!(sdk.usage.total_tokens, 8);

        let v = parse(&render_embeddings(&resp, "embed", EncodingFormat::Base64));
        let b64 = v["data"][0]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, vec![0.5, -1.0]);
    }

    #[test]
    fn models_list_has_openai_shape() {
        let body = render_models(&["fast".to_string(), "smart".to_string()]);
        let sdk: async_openai::types::ListModelResponse = serde_json::from_slice(&body).unwrap();
        assert_eq!(sdk.object, "list");
        assert_eq!(sdk.data.len(), 2);
        assert_eq!(sdk.data[1].id, "smart");
        assert_eq!(sdk.data[1].object, "model");
        assert_eq!(sdk.data[1].created, 0);
        assert_eq!(sdk.data[1].owned_by, "switchyard");
        assert_eq!(parse(&render_models(&[]))["data"], json!([]));
    }
}
