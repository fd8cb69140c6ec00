//! The LiteLLM parser on real entries, malformed entries and broken files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::cost::catalogue::builtin;

fn per_token(usd: f64) -> PricePerToken {
    PricePerToken::from_usd_per_token(usd).unwrap()
}

/// Entries as LiteLLM writes them (abridged from its file), with the keys we ignore.
const REAL_ENTRIES: &str = r#"{
    "sample_spec": {
        "input_cost_per_token": 0.0,
        "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
        "max_input_tokens": "max input tokens, if the provider specifies it.",
        "mode": "one of: chat, embedding, completion, image_generation",
        "output_cost_per_token": 0.0
    },
    "claude-sonnet-4-5": {
        "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05,
        "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token": 3e-06,
        "input_cost_per_token_above_200k_tokens": 6e-06,
        "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
        "litellm_provider": "anthropic",
        "max_input_tokens": 200000,
        "max_output_tokens": 64000,
        "mode": "chat",
        "output_cost_per_token": 1.5e-05,
        "search_context_cost_per_query": {
            "search_context_size_high": 0.01,
            "search_context_size_low": 0.01,
            "search_context_size_medium": 0.01
        },
        "supports_prompt_caching": true,
        "prompt_cache_min_tokens": 1024
    },
    "gemini/gemini-2.5-pro": {
        "cache_read_input_token_cost": 1.25e-07,
        "cache_read_input_token_cost_above_200k_tokens": 2.5e-07,
        "input_cost_per_token": 1.25e-06,
        "input_cost_per_token_above_200k_tokens": 2.5e-06,
        "input_cost_per_token_priority": 1.25e-06,
        "input_cost_per_token_above_200k_tokens_priority": 2.5e-06,
        "litellm_provider": "gemini",
        "mode": "chat",
        "output_cost_per_token": 1e-05,
        "output_cost_per_token_above_200k_tokens": 1.5e-05,
        "output_cost_per_token_above_200k_tokens_priority": 1.5e-05,
        "supported_endpoints": ["/v1/chat/completions", "/v1/completions"],
        "tpm": 800000
    },
    "text-embedding-3-small": {
        "input_cost_per_token": 2e-08,
        "input_cost_per_token_batches": 1e-08,
        "litellm_provider": "openai",
        "max_input_tokens": 8191,
        "mode": "embedding",
        "output_vector_size": 1536
    },
    "dall-e-2": {
        "input_cost_per_image": 0.02,
        "litellm_provider": "openai",
        "mode": "image_generation"
    },
    "github_copilot/gpt-5": {
        "litellm_provider": "github_copilot",
        "max_input_tokens": 128000,
        "mode": "chat"
    },
    "chat-without-output-price": {
        "input_cost_per_token": 1e-06,
        "litellm_provider": "openai",
        "mode": "chat"
    }
}"#;

#[test]
fn real_entries_parse_with_tiers_and_ignored_fields() {
    let list = parse(REAL_ENTRIES, "test.json").unwrap();
    assert_eq!(list.len(), 3, "{:?}", list.entries.keys());
    assert_eq!(
        list.unpriced, 3,
        "dall-e-2, the copilot entry and the chat without output"
    );
    assert_eq!(list.bad, 0, "{:?}", list.bad_examples);

    let sonnet = list.get("claude-sonnet-4-5").unwrap();
    assert_eq!(sonnet.provider.as_deref(), Some("anthropic"));
    assert_eq!(sonnet.mode.as_deref(), Some("chat"));
    assert_eq!(
        sonnet.price,
        ModelPrice {
            input: per_token(3e-06),
            output: per_token(1.5e-05),
            cache_read: Some(per_token(3e-07)),
            cache_write: Some(per_token(3.75e-06)),
            tiers: vec![PriceTier {
                above_input_tokens: 200_000,
                input: per_token(6e-06),
                output: per_token(2.25e-05),
                cache_read: Some(per_token(6e-07)),
                cache_write: Some(per_token(7.5e-06)),
            }],
        },
        "the one-hour cache write and its tier are not read"
    );

    let pro = &list.get("gemini/gemini-2.5-pro").unwrap().price;
    assert_eq!(pro.tiers.len(), 1, "priority variants are not tiers");
    assert_eq!(pro.tiers[0].cache_write, None);
}

#[test]
fn an_embedding_entry_without_output_price_costs_nothing_for_output() {
    let list = parse(REAL_ENTRIES, "test.json").unwrap();
    let embedding = &list.get("text-embedding-3-small").unwrap().price;
    assert_eq!(embedding.output, PricePerToken(0));
    assert_eq!(embedding.input, per_token(2e-08));
}

#[test]
fn a_chat_entry_without_output_price_is_unpriced_not_free() {
    let list = parse(REAL_ENTRIES, "test.json").unwrap();
    assert!(list.get("chat-without-output-price").is_none());
}

#[test]
fn tiers_above_128k_and_200k_become_two_tiers() {
    let text = r#"{"gemini-1.5-pro-like": {
        "input_cost_per_token": 1.25e-06,
        "input_cost_per_token_above_128k_tokens": 2.5e-06,
        "output_cost_per_token": 5e-06,
        "output_cost_per_token_above_128k_tokens": 1e-05,
        "output_cost_per_token_above_200k_tokens": 1.5e-05,
        "mode": "chat"}}"#;
    let list = parse(text, "t.json").unwrap();
    let price = &list.get("gemini-1.5-pro-like").unwrap().price;
    let thresholds: Vec<u64> = price.tiers.iter().map(|t| t.above_input_tokens).collect();
    assert_eq!(thresholds, [128_000, 200_000]);
    assert_eq!(
        price.tiers[1].input,
        per_token(1.25e-06),
        "no input tier: the base input"
    );
    assert_eq!(price.tiers[1].output, per_token(1.5e-05));
    assert_eq!(price.rates(150_000).input, per_token(2.5e-06));
}

#[test]
fn bad_entries_are_skipped_counted_and_named() {
    let text = r#"{
        "negative": {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06},
        "stringly": {"input_cost_per_token": "0.000001", "output_cost_per_token": 1e-06},
        "listed": [1, 2, 3],
        "bad-provider": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06,
                         "litellm_provider": 7},
        "bad-tier": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06,
                     "input_cost_per_token_above_200k_tokens": true},
        "six": {"input_cost_per_token": 1e-06, "output_cost_per_token": "free"},
        "good": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}
    }"#;
    let list = parse(text, "t.json").unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list.bad, 6);
    assert_eq!(list.bad_examples.len(), 5, "only the first few are kept");
    let named = list.bad_examples.join("\n");
    assert!(named.contains("listed: not an object"), "{named}");
    assert!(
        named.contains("`litellm_provider` is not a string"),
        "{named}"
    );
}

#[test]
fn a_truncated_file_is_an_error_with_file_line_and_column() {
    let truncated = &REAL_ENTRIES[..REAL_ENTRIES.len() / 2];
    let err = parse(truncated, "prices.json").unwrap_err();
    match &err {
        CostError::PricingFileParse {
            path, line, column, ..
        } => {
            assert_eq!(path, "prices.json");
            assert!(*line > 1 && *column > 0, "{err}");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().starts_with("prices.json:"), "{err}");
}

#[test]
fn a_file_that_is_not_an_object_of_entries_is_an_error() {
    let err = parse("[1, 2]", "list.json").unwrap_err();
    assert!(
        matches!(err, CostError::PricingFileParse { line: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_file_over_the_size_limit_is_refused_before_parsing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, REAL_ENTRIES).unwrap();
    let err = load_file_bounded(&path, 100).unwrap_err();
    assert!(
        matches!(err, CostError::PricingFileTooLarge { limit: 100, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("prices.json"), "{err}");
    assert_eq!(load_file(&path).unwrap().len(), 3);
}

#[test]
fn a_missing_or_binary_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let err = load_file(&missing).unwrap_err();
    assert!(matches!(err, CostError::PricingFileRead { .. }), "{err}");
    assert!(err.to_string().contains("nope.json"), "{err}");

    let binary = dir.path().join("binary.json");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let err = load_file(&binary).unwrap_err();
    assert!(err.to_string().contains("binary.json"), "{err}");
}

#[test]
fn the_builtin_catalogue_parses_cleanly_with_every_provider_family() {
    let list = builtin();
    assert_eq!((list.bad, list.unpriced), (0, 0), "{:?}", list.bad_examples);
    assert!((40..=80).contains(&list.len()), "{} entries", list.len());
    for key in [
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "o3",
        "o4-mini",
        "gpt-5",
        "text-embedding-3-small",
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5",
        "claude-opus-4-1",
        "gemini/gemini-2.5-pro",
        "gemini/gemini-2.0-flash",
    ] {
        assert!(list.get(key).is_some(), "{key} missing");
    }
    for (key, entry) in &list.entries {
        let expected = if key.starts_with("gemini/") {
            "gemini"
        } else if key.starts_with("claude") {
            "anthropic"
        } else {
            "openai"
        };
        assert_eq!(entry.provider.as_deref(), Some(expected), "{key}");
        if entry.provider.as_deref() == Some("anthropic") {
            assert!(
                entry.price.cache_write.is_some(),
                "{key} lacks a cache write price"
            );
        }
    }
}
