//! A real client library (`async-openai`) against the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use async_openai::config::OpenAIConfig;
use async_openai::types::{ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs};
use async_openai::Client;
use common::*;
use futures_util::StreamExt;

fn sdk_setup() -> (Proc, Gateway, Client<OpenAIConfig>) {
    set_provider_env();
    let mock = mock_provider(&[]);
    let config = format!(
        "{}{}\n[logs]\nenabled = false\n",
        preamble(""),
        providers_on(&mock)
    );
    let gw = gateway(&config);
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(gw.url("/v1"))
            .with_api_key(KEY),
    );
    (mock, gw, client)
}

fn request(model: &str) -> async_openai::types::CreateChatCompletionRequest {
    CreateChatCompletionRequestArgs::default()
        .model(model)
        .max_tokens(64u32)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Hello from the SDK ECHO")
            .build()
            .unwrap()
            .into()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn async_openai_non_streaming_call() {
    let (_mock, _gw, client) = sdk_setup();
    for model in ["gpt-test", "claude-test", "gemini-test"] {
        let response = client.chat().create(request(model)).await.unwrap();
        let text = response.choices[0].message.content.clone().unwrap();
        assert!(text.contains("Hello from the SDK ECHO"), "{model}: {text}");
        assert_eq!(response.model, model);
        assert!(response.usage.unwrap().completion_tokens > 0);
    }
}

#[tokio::test]
async fn async_openai_streaming_call() {
    let (_mock, _gw, client) = sdk_setup();
    for model in ["gpt-test", "claude-test", "gemini-test"] {
        let mut stream = client.chat().create_stream(request(model)).await.unwrap();
        let mut text = String::new();
        let mut finished = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.unwrap_or_else(|e| panic!("{model}: {e}"));
            for choice in chunk.choices {
                if let Some(delta) = choice.delta.content {
                    text.push_str(&delta);
                }
                finished |= choice.finish_reason.is_some();
            }
        }
        assert!(finished, "{model}: a finish_reason arrived");
        assert!(text.contains("Hello from the SDK ECHO"), "{model}: {text}");
    }
}

#[tokio::test]
async fn async_openai_sees_gateway_errors_as_api_errors() {
    let (_mock, _gw, client) = sdk_setup();
    let err = client
        .chat()
        .create(request("no-such-model"))
        .await
        .unwrap_err();
    match err {
        async_openai::error::OpenAIError::ApiError(api) => {
            assert!(api.message.contains("no-such-model"))
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn async_openai_reads_a_cached_answer_replayed_as_a_stream() {
    set_provider_env();
    let mock = mock_provider(&[]);
    let config = format!(
        "{}{}\n[logs]\nenabled = false\n\n[cache]\nenabled = true\n",
        preamble(""),
        providers_on(&mock)
    );
    let gw = gateway(&config);
    let client = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(gw.url("/v1"))
            .with_api_key(KEY),
    );
    let whole = client.chat().create(request("claude-test")).await.unwrap();
    let expected = whole.choices[0].message.content.clone().unwrap();
    let served = mock_stats(&mock).await["requests"].clone();
    let mut stream = client
        .chat()
        .create_stream(request("claude-test"))
        .await
        .unwrap();
    let mut text = String::new();
    let mut finished = false;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap_or_else(|e| panic!("cached stream: {e}"));
        for choice in chunk.choices {
            if let Some(delta) = choice.delta.content {
                text.push_str(&delta);
            }
            finished |= choice.finish_reason.is_some();
        }
    }
    assert!(finished, "a finish_reason arrived");
    assert_eq!(text, expected, "the stream replays the stored answer");
    assert_eq!(
        mock_stats(&mock).await["requests"],
        served,
        "the streamed request never reached the provider"
    );
}
