//! Costs of real provider usage shapes at built-in prices, tiers, and cost invariants.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::config::Secret;
use crate::cost::catalogue::builtin;
use crate::providers::anthropic::AnthropicWire;
use crate::providers::gemini::GeminiWire;
use crate::providers::openai::OpenAiWire;
use crate::providers::Wire;
use proptest::prelude::*;

fn builtin_price(key: &str) -> ModelPrice {
    builtin()
        .get(key)
        .unwrap_or_else(|| panic!("{key} is not in the built-in catalogue"))
        .price
        .clone()
}

fn per_mtok(usd: f64) -> PricePerToken {
    PricePerToken::from_usd_per_mtok(usd).unwrap()
}

fn dollars(text: &str) -> Usd {
    Usd::from_dollars(text.parse().unwrap()).unwrap()
}

#[test]
fn openai_cached_prompt_tokens_are_priced_once_at_the_cache_rate() {
    // 10k prompt tokens of which 4k cached, as OpenAI reports them.
    let body = br#"{"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10000, "completion_tokens": 500, "total_tokens": 10500,
                  "prompt_tokens_details": {"cached_tokens": 4000}}}"#;
    let usage = OpenAiWire::new(Secret::new(String::new()))
        .parse_chat(body)
        .unwrap()
        .usage;
    assert_eq!(
        (usage.input_tokens, usage.cached_input_tokens),
        (10_000, 4_000)
    );
    // gpt-4o: $2.50 input, $1.25 cached, $10 output per million tokens.
    // 6,000 × 2.5 + 4,000 × 1.25 + 500 × 10 = 15,000 + 5,000 + 5,000 micro-dollars.
    let cost = builtin_price("gpt-4o").cost(&usage);
    assert_eq!(cost, dollars("0.025"));
    assert_eq!(cost.to_string(), "0.025");
}

#[test]
fn anthropic_cache_reads_and_writes_are_priced_at_their_own_rates() {
    let body = br#"{"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-sonnet-4-20250514", "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1000, "cache_read_input_tokens": 2000,
                  "cache_creation_input_tokens": 500, "output_tokens": 100}}"#;
    let usage = AnthropicWire::new(Secret::new(String::new()), None)
        .parse_chat(body)
        .unwrap()
        .usage;
    assert_eq!(
        usage.input_tokens, 3_500,
        "canonical input counts every input token"
    );
    let price = builtin_price("claude-sonnet-4-20250514");
    assert_eq!(price.input, per_mtok(3.0));
    assert_eq!(price.cache_read, Some(per_mtok(0.3)), "reads at 0.1×");
    assert_eq!(price.cache_write, Some(per_mtok(3.75)), "writes at 1.25×");
    // 1,000 × 3 + 2,000 × 0.3 + 500 × 3.75 + 100 × 15 = 3,000 + 600 + 1,875 + 1,500 µ$.
    assert_eq!(price.cost(&usage), dollars("0.006975"));
}

#[test]
fn gemini_cached_content_is_part_of_the_prompt_and_priced_at_the_cache_rate() {
    let body = br#"{"candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]},
                     "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 10000, "cachedContentTokenCount": 8000,
                          "candidatesTokenCount": 200, "thoughtsTokenCount": 300,
                          "totalTokenCount": 10500},
        "modelVersion": "gemini-2.5-flash"}"#;
    let usage = GeminiWire::new(Secret::new(String::new()))
        .parse_chat(body)
        .unwrap()
        .usage;
    assert_eq!(
        (usage.input_tokens, usage.cached_input_tokens),
        (10_000, 8_000)
    );
    assert_eq!(
        usage.output_tokens, 500,
        "thinking tokens are billed as output"
    );
    // gemini-2.5-flash: $0.30 input, $0.03 cached, $2.50 output per million tokens.
    // 2,000 × 0.3 + 8,000 × 0.03 + 500 × 2.5 = 600 + 240 + 1,250 µ$.
    let cost = builtin_price("gemini/gemini-2.5-flash").cost(&usage);
    assert_eq!(cost, dollars("0.00209"));
}

#[test]
fn a_request_above_200k_input_tokens_pays_the_tier_price_for_input_and_output() {
    let price = builtin_price("gemini/gemini-2.5-pro");
    let usage = |input_tokens, cached| Usage {
        input_tokens,
        output_tokens: 1_000,
        cached_input_tokens: cached,
        ..Usage::default()
    };
    // At 200k exactly: base rates, $1.25 in / $10 out.
    assert_eq!(price.cost(&usage(200_000, 0)), dollars("0.26"));
    // Above: $2.50 in / $15 out for the whole request.
    assert_eq!(price.cost(&usage(250_000, 0)), dollars("0.64"));
    // Cached tokens of a large request take the tier's cache rate ($0.25).
    assert_eq!(
        price.cost(&usage(250_000, 50_000)),
        dollars("0.5275"),
        "200k × 2.5 + 50k × 0.25 + 1k × 15 µ$"
    );
}

#[test]
fn a_tier_without_cache_prices_inherits_the_base_cache_prices() {
    let price = ModelPrice {
        input: per_mtok(3.0),
        output: per_mtok(15.0),
        cache_read: Some(per_mtok(0.3)),
        cache_write: Some(per_mtok(3.75)),
        tiers: vec![PriceTier {
            above_input_tokens: 128_000,
            input: per_mtok(6.0),
            output: per_mtok(22.5),
            cache_read: None,
            cache_write: None,
        }],
    };
    let rates = price.rates(200_000);
    assert_eq!(rates.input, per_mtok(6.0));
    assert_eq!(rates.cache_read, per_mtok(0.3));
    assert_eq!(rates.cache_write, per_mtok(3.75));
}

#[test]
fn missing_cache_prices_fall_back_to_the_input_price() {
    let price = ModelPrice::flat(per_mtok(2.0), per_mtok(8.0));
    let cached = Usage {
        input_tokens: 1_000,
        cached_input_tokens: 600,
        cache_write_input_tokens: 400,
        ..Usage::default()
    };
    let plain = Usage {
        input_tokens: 1_000,
        ..Usage::default()
    };
    assert_eq!(price.cost(&cached), price.cost(&plain));
    assert_eq!(price.cost(&plain), dollars("0.002"));
}

#[test]
fn cache_counts_above_the_input_are_capped_not_charged_twice() {
    let price = builtin_price("claude-sonnet-4-5");
    let inconsistent = Usage {
        input_tokens: 100,
        cached_input_tokens: 150,
        cache_write_input_tokens: 50,
        ..Usage::default()
    };
    let all_read = Usage {
        input_tokens: 100,
        cached_input_tokens: 100,
        ..Usage::default()
    };
    assert_eq!(price.cost(&inconsistent), price.cost(&all_read));
}

#[test]
fn worst_case_prices_every_input_token_at_the_dearest_input_rate() {
    let price = builtin_price("claude-sonnet-4-5");
    // A cache write ($3.75) costs more than plain input ($3).
    assert_eq!(price.worst_case(1_000, 100), dollars("0.00525"));
    let all_written = Usage {
        input_tokens: 1_000,
        output_tokens: 100,
        cache_write_input_tokens: 1_000,
        ..Usage::default()
    };
    assert_eq!(price.cost(&all_written), price.worst_case(1_000, 100));
}

#[test]
fn an_embedding_model_costs_only_its_input() {
    let price = builtin_price("text-embedding-3-small");
    assert_eq!(price.output, PricePerToken(0));
    let usage = Usage {
        input_tokens: 1_000_000,
        ..Usage::default()
    };
    assert_eq!(price.cost(&usage), dollars("0.02"));
}

fn price_strategy() -> impl Strategy<Value = ModelPrice> {
    let rate = || (0i64..50_000_000).prop_map(PricePerToken);
    let tier = (
        0u64..400_000,
        rate(),
        rate(),
        proptest::option::of(rate()),
        proptest::option::of(rate()),
    )
        .prop_map(
            |(above_input_tokens, input, output, cache_read, cache_write)| PriceTier {
                above_input_tokens,
                input,
                output,
                cache_read,
                cache_write,
            },
        );
    (
        rate(),
        rate(),
        proptest::option::of(rate()),
        proptest::option::of(rate()),
        proptest::collection::vec(tier, 0..3),
    )
        .prop_map(
            |(input, output, cache_read, cache_write, tiers)| ModelPrice {
                input,
                output,
                cache_read,
                cache_write,
                tiers,
            },
        )
}

/// Usage whose cache reads and writes are a split of the input.
fn usage_strategy() -> impl Strategy<Value = Usage> {
    (0u64..1_000_000, 0u64..200_000, 0.0f64..=1.0, 0.0f64..=1.0).prop_map(
        |(input_tokens, output_tokens, read_share, write_share)| {
            let read = (input_tokens as f64 * read_share) as u64;
            let written = ((input_tokens - read) as f64 * write_share) as u64;
            Usage {
                input_tokens,
                output_tokens,
                cached_input_tokens: read,
                cache_write_input_tokens: written,
                estimated: false,
            }
        },
    )
}

proptest! {
    #[test]
    fn cost_is_never_negative(price in price_strategy(), usage in usage_strategy()) {
        prop_assert!(price.cost(&usage) >= Usd::ZERO);
    }

    #[test]
    fn cost_grows_with_output_tokens(
        price in price_strategy(),
        usage in usage_strategy(),
        more in 0u64..100_000,
    ) {
        let longer = Usage { output_tokens: usage.output_tokens + more, ..usage };
        prop_assert!(price.cost(&longer) >= price.cost(&usage));
    }

    #[test]
    fn worst_case_bounds_every_split_of_cached_and_written_tokens(
        price in price_strategy(),
        usage in usage_strategy(),
        spare_output in 0u64..1_000,
    ) {
        let bound = price.worst_case(usage.input_tokens, usage.output_tokens + spare_output);
        prop_assert!(bound >= price.cost(&usage), "{bound} < {}", price.cost(&usage));
    }

    #[test]
    fn cached_tokens_are_priced_once(price in price_strategy(), usage in usage_strategy()) {
        let rates = price.rates(usage.input_tokens);
        let uncached = usage.input_tokens - usage.cached_input_tokens - usage.cache_write_input_tokens;
        let pico = i128::from(rates.input.0) * i128::from(uncached)
            + i128::from(rates.cache_read.0) * i128::from(usage.cached_input_tokens)
            + i128::from(rates.cache_write.0) * i128::from(usage.cache_write_input_tokens)
            + i128::from(rates.output.0) * i128::from(usage.output_tokens);
        let expected = Usd(i64::try_from((pico + 999) / 1000).unwrap());
        prop_assert_eq!(price.cost(&usage), expected);
        // With cache rates equal to the input rate, the split changes nothing.
        let flat = ModelPrice { cache_read: None, cache_write: None, ..price.clone() };
        let unsplit = Usage { cached_input_tokens: 0, cache_write_input_tokens: 0, ..usage };
        let tier_has_no_cache_rates = flat.tier_for(usage.input_tokens)
            .is_none_or(|tier| tier.cache_read.is_none() && tier.cache_write.is_none());
        if tier_has_no_cache_rates {
            prop_assert_eq!(flat.cost(&usage), flat.cost(&unsplit));
        }
    }
}
