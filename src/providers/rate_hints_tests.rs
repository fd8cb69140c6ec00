//! Tests of rate-hint parsing and the hint store, on tokio's paused clock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use http::{HeaderName, HeaderValue};
use proptest::prelude::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn wall() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn openai_headers_give_tokens_and_requests_with_go_duration_resets() {
    let hints = RateHints::new();
    hints.observe(
        "oa",
        "gpt-4o",
        200,
        &headers(&[
            ("x-ratelimit-limit-tokens", "160000"),
            ("x-ratelimit-remaining-tokens", "159976"),
            ("x-ratelimit-reset-tokens", "6m0s"),
            ("x-ratelimit-limit-requests", "5000"),
            ("x-ratelimit-remaining-requests", "4999"),
            ("x-ratelimit-reset-requests", "12ms"),
        ]),
    );
    let room = hints.headroom("oa", "gpt-4o");
    assert_eq!(room.tokens_remaining, Some(159_976));
    assert_eq!(room.tokens_reset_in, Some(secs(360)));
    assert_eq!(room.tokens_limit, Some(160_000));
    assert_eq!(room.requests_remaining, Some(4999));
    assert_eq!(room.requests_reset_in, Some(Duration::from_millis(12)));
    assert_eq!(room.requests_limit, Some(5000));
    assert_eq!(room.output_tokens_remaining, None);
    assert_eq!(room.blocked_for, None);
}

#[tokio::test(start_paused = true)]
async fn anthropic_headers_give_windows_with_timestamp_resets() {
    let hints = RateHints::new();
    hints.observe_at(
        "an",
        "claude",
        200,
        &headers(&[
            ("anthropic-ratelimit-tokens-limit", "80000"),
            ("anthropic-ratelimit-tokens-remaining", "79000"),
            ("anthropic-ratelimit-tokens-reset", "2025-01-01T00:00:30Z"),
            ("anthropic-ratelimit-input-tokens-remaining", "1"),
            ("anthropic-ratelimit-requests-remaining", "49"),
            (
                "anthropic-ratelimit-requests-reset",
                "2025-01-01T01:00:45+01:00",
            ),
            ("anthropic-ratelimit-output-tokens-remaining", "16000"),
            (
                "anthropic-ratelimit-output-tokens-reset",
                "2025-01-01T00:00:12.5Z",
            ),
        ]),
        Instant::now(),
        wall(),
    );
    let room = hints.headroom("an", "claude");
    assert_eq!(
        room.tokens_remaining,
        Some(79_000),
        "the combined window wins"
    );
    assert_eq!(room.tokens_reset_in, Some(secs(30)));
    assert_eq!(room.tokens_limit, Some(80_000));
    assert_eq!(room.requests_remaining, Some(49));
    assert_eq!(
        room.requests_reset_in,
        Some(secs(45)),
        "offsets are honoured"
    );
    assert_eq!(room.output_tokens_remaining, Some(16_000));
    assert_eq!(
        room.output_tokens_reset_in,
        Some(Duration::from_millis(12_500))
    );
}

#[tokio::test(start_paused = true)]
async fn an_anthropic_reset_already_past_reads_as_unknown() {
    let hints = RateHints::new();
    hints.observe_at(
        "an",
        "claude",
        200,
        &headers(&[
            ("anthropic-ratelimit-requests-remaining", "49"),
            ("anthropic-ratelimit-requests-reset", "2024-12-31T23:59:59Z"),
        ]),
        Instant::now(),
        wall(),
    );
    assert_eq!(hints.headroom("an", "claude"), ProviderHeadroom::default());
}

#[tokio::test(start_paused = true)]
async fn anthropic_input_tokens_stand_in_for_tokens_without_the_combined_header() {
    let hints = RateHints::new();
    hints.observe_at(
        "an",
        "claude",
        200,
        &headers(&[
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-input-tokens-remaining", "39000"),
            (
                "anthropic-ratelimit-input-tokens-reset",
                "2025-01-01T00:01:00Z",
            ),
        ]),
        Instant::now(),
        wall(),
    );
    let room = hints.headroom("an", "claude");
    assert_eq!(room.tokens_remaining, Some(39_000));
    assert_eq!(room.tokens_reset_in, Some(secs(60)));
    assert_eq!(room.tokens_limit, Some(40_000));
}

#[test]
fn go_durations_parse_fractional_and_compound_values() {
    let ms = Duration::from_millis;
    assert_eq!(parse_go_duration("1s"), Some(secs(1)));
    assert_eq!(parse_go_duration("6m0s"), Some(secs(360)));
    assert_eq!(parse_go_duration("20ms"), Some(ms(20)));
    assert_eq!(parse_go_duration("1h2m3.5s"), Some(ms(3_723_500)));
    assert_eq!(parse_go_duration("0.5s"), Some(ms(500)));
    assert_eq!(parse_go_duration(".5s"), Some(ms(500)));
    assert_eq!(parse_go_duration("1.5h"), Some(secs(5400)));
    assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_go_duration(" 2m "), Some(secs(120)));
    assert_eq!(
        parse_go_duration("1500us"),
        Some(Duration::from_micros(1500))
    );
    assert_eq!(parse_go_duration("2µs"), Some(Duration::from_micros(2)));
    assert_eq!(parse_go_duration("7ns"), Some(Duration::from_nanos(7)));
    assert_eq!(
        parse_go_duration("0.1234567890123456789s"),
        Some(Duration::from_nanos(123_456_789))
    );
}

#[test]
fn malformed_values_are_ignored() {
    for bad in [
        "", "s", "1", "10", "-1s", "+1s", "1x", "1 s", "1.2.3s", ".s", "1s2", "ms", "1sm", "∞s",
    ] {
        assert_eq!(parse_go_duration(bad), None, "{bad:?}");
    }
    for bad in ["", "-1", "1.5", "1e3", "12a", "+3", " "] {
        assert_eq!(parse_count(bad), None, "{bad:?}");
    }
    assert_eq!(parse_reset_timestamp("tomorrow", wall()), None);
    assert_eq!(parse_reset_timestamp("2025-01-01 00:00:30", wall()), None);
    let seen = parse_hints(
        200,
        &headers(&[
            ("x-ratelimit-remaining-tokens", "-1"),
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-reset-requests", "soon"),
            ("x-ratelimit-limit-requests", "lots"),
            ("anthropic-ratelimit-output-tokens-remaining", "1.0"),
        ]),
        wall(),
    );
    assert_eq!(seen.tokens, None);
    assert_eq!(seen.output_tokens, None);
    assert_eq!(
        seen.requests,
        Some(Reading {
            remaining: 10,
            limit: None,
            reset_in: None
        })
    );
    let mut binary = HeaderMap::new();
    binary.insert(
        "x-ratelimit-remaining-tokens",
        HeaderValue::from_bytes(b"\xff12").unwrap(),
    );
    assert!(parse_hints(200, &binary, wall()).is_empty());
}

#[test]
fn huge_numbers_saturate() {
    assert_eq!(parse_count("99999999999999999999999999"), Some(u64::MAX));
    assert_eq!(
        parse_go_duration("99999999999999999999999h"),
        Some(MAX_HORIZON)
    );
    assert_eq!(parse_go_duration("25h"), Some(MAX_HORIZON));
    assert_eq!(
        parse_reset_timestamp("9999-12-31T23:59:59Z", wall()),
        Some(MAX_HORIZON)
    );
    let seen = parse_hints(
        429,
        &headers(&[("retry-after", "1e309"), ("retry-after-ms", "")]),
        wall(),
    );
    assert_eq!(
        seen.block,
        Some(DEFAULT_BLOCK),
        "malformed both: the default"
    );
    let seen = parse_hints(
        429,
        &headers(&[("retry-after", "340282366920938463463374607431768211457")]),
        wall(),
    );
    assert_eq!(seen.block, Some(MAX_HORIZON));
}

#[tokio::test(start_paused = true)]
async fn remaining_reads_as_unknown_after_the_reset_passes() {
    let hints = RateHints::new();
    hints.observe(
        "oa",
        "m",
        200,
        &headers(&[
            ("x-ratelimit-remaining-tokens", "100"),
            ("x-ratelimit-reset-tokens", "30s"),
            ("x-ratelimit-remaining-requests", "5"),
            ("x-ratelimit-reset-requests", "1m"),
        ]),
    );
    tokio::time::advance(secs(10)).await;
    let room = hints.headroom("oa", "m");
    assert_eq!(room.tokens_remaining, Some(100));
    assert_eq!(room.tokens_reset_in, Some(secs(20)));
    tokio::time::advance(secs(20)).await;
    let room = hints.headroom("oa", "m");
    assert_eq!(room.tokens_remaining, None);
    assert_eq!(room.tokens_reset_in, None);
    assert_eq!(room.requests_remaining, Some(5));
    tokio::time::advance(secs(30)).await;
    assert_eq!(hints.headroom("oa", "m"), ProviderHeadroom::default());
}

#[tokio::test(start_paused = true)]
async fn remaining_without_a_reset_is_trusted_for_the_untimed_ttl() {
    let hints = RateHints::new();
    hints.observe(
        "oa",
        "m",
        200,
        &headers(&[("x-ratelimit-remaining-tokens", "100")]),
    );
    let room = hints.headroom("oa", "m");
    assert_eq!(room.tokens_remaining, Some(100));
    assert_eq!(room.tokens_reset_in, None);
    tokio::time::advance(UNTIMED_HINT_TTL).await;
    assert_eq!(hints.headroom("oa", "m").tokens_remaining, None);
}

#[tokio::test(start_paused = true)]
async fn a_later_response_replaces_the_window() {
    let hints = RateHints::new();
    let said = |remaining: &str| {
        headers(&[
            ("x-ratelimit-remaining-tokens", remaining),
            ("x-ratelimit-reset-tokens", "10s"),
        ])
    };
    hints.observe("oa", "m", 200, &said("100"));
    hints.observe("oa", "m", 200, &said("900"));
    assert_eq!(hints.headroom("oa", "m").tokens_remaining, Some(900));
}

#[tokio::test(start_paused = true)]
async fn spend_lowers_remaining_and_saturates_at_zero() {
    let hints = RateHints::new();
    hints.observe(
        "oa",
        "m",
        200,
        &headers(&[
            ("x-ratelimit-remaining-tokens", "100"),
            ("x-ratelimit-reset-tokens", "30s"),
            ("x-ratelimit-remaining-requests", "2"),
            ("x-ratelimit-reset-requests", "30s"),
        ]),
    );
    hints.spend("oa", "m", 60);
    let room = hints.headroom("oa", "m");
    assert_eq!(room.tokens_remaining, Some(40));
    assert_eq!(room.requests_remaining, Some(1));
    hints.spend("oa", "m", 60);
    hints.spend("oa", "m", u64::MAX);
    let room = hints.headroom("oa", "m");
    assert_eq!(room.tokens_remaining, Some(0));
    assert_eq!(room.requests_remaining, Some(0));
    assert_eq!(
        room.tokens_reset_in,
        Some(secs(30)),
        "spend keeps the reset"
    );
}

#[tokio::test(start_paused = true)]
async fn spend_on_an_unknown_model_records_nothing() {
    let hints = RateHints::new();
    hints.spend("oa", "m", 10);
    assert_eq!(hints.len(), 0);
    assert_eq!(hints.headroom("oa", "m"), ProviderHeadroom::default());
}

#[tokio::test(start_paused = true)]
async fn a_response_without_hints_stores_nothing() {
    let hints = RateHints::new();
    hints.observe("g", "gemini", 200, &headers(&[("content-type", "json")]));
    hints.observe("g", "gemini", 500, &headers(&[("retry-after", "3")]));
    hints.observe("g", "gemini", 503, &HeaderMap::new());
    assert_eq!(hints.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_blocks_until_it_runs_out() {
    let hints = RateHints::new();
    hints.observe("oa", "m", 429, &headers(&[("retry-after", "7")]));
    assert_eq!(hints.headroom("oa", "m").blocked_for, Some(secs(7)));
    tokio::time::advance(Duration::from_millis(6500)).await;
    assert_eq!(
        hints.headroom("oa", "m").blocked_for,
        Some(Duration::from_millis(500))
    );
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(hints.headroom("oa", "m").blocked_for, None);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_blocks_for_the_default() {
    let hints = RateHints::new();
    hints.observe("oa", "m", 429, &HeaderMap::new());
    assert_eq!(hints.headroom("oa", "m").blocked_for, Some(DEFAULT_BLOCK));
    tokio::time::advance(DEFAULT_BLOCK).await;
    assert_eq!(hints.headroom("oa", "m"), ProviderHeadroom::default());
}

#[test]
fn retry_after_ms_and_decimal_seconds_and_503_block() {
    let block = |status, pairs: &[(&str, &str)]| parse_hints(status, &headers(pairs), wall()).block;
    let ms = Duration::from_millis;
    assert_eq!(
        block(429, &[("retry-after-ms", "250"), ("retry-after", "1")]),
        Some(ms(250))
    );
    assert_eq!(block(429, &[("retry-after", "1.5")]), Some(ms(1500)));
    assert_eq!(block(503, &[("retry-after", "2")]), Some(secs(2)));
    assert_eq!(block(503, &[]), None, "a 503 without retry-after");
    assert_eq!(block(200, &[("retry-after", "2")]), None);
    assert_eq!(
        block(429, &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
        Some(DEFAULT_BLOCK),
        "http dates are not read"
    );
}

#[tokio::test(start_paused = true)]
async fn pairs_are_kept_apart() {
    let hints = RateHints::new();
    hints.observe("a", "m", 429, &headers(&[("retry-after", "5")]));
    assert!(hints.headroom("a", "m").blocked_for.is_some());
    assert_eq!(hints.headroom("b", "m"), ProviderHeadroom::default());
    assert_eq!(hints.headroom("a", "n"), ProviderHeadroom::default());
    assert_eq!(hints.headroom("am", ""), ProviderHeadroom::default());
}

#[tokio::test(start_paused = true)]
async fn the_entry_cap_holds_and_expired_entries_go_first() {
    let hints = RateHints::with_max_entries(64);
    let long = headers(&[
        ("x-ratelimit-remaining-tokens", "1"),
        ("x-ratelimit-reset-tokens", "1h"),
    ]);
    let short = headers(&[
        ("x-ratelimit-remaining-tokens", "1"),
        ("x-ratelimit-reset-tokens", "1s"),
    ]);
    for n in 0..1000 {
        hints.observe("p", &format!("m{n}"), 200, &long);
    }
    assert!(hints.len() <= 64, "{} entries", hints.len());
    assert!(hints.len() >= 32, "{} entries", hints.len());
    // The newest is always kept.
    assert_eq!(hints.headroom("p", "m999").tokens_remaining, Some(1));

    let hints = RateHints::with_max_entries(SHARDS);
    for n in 0..SHARDS * 8 {
        hints.observe("p", &format!("short{n}"), 200, &short);
    }
    tokio::time::advance(secs(2)).await;
    for n in 0..SHARDS * 8 {
        hints.observe("p", &format!("long{n}"), 200, &long);
    }
    assert!(hints.len() <= SHARDS);
    let kept_long = (0..SHARDS * 8)
        .filter(|n| hints.headroom("p", &format!("long{n}")).tokens_remaining == Some(1))
        .count();
    assert_eq!(kept_long, hints.len(), "expired entries were evicted first");
}

proptest! {
    #[test]
    fn parsing_any_text_never_panics(text in "\\PC{0,24}", digits in "[0-9.hmsuµn]{0,40}") {
        let _ = parse_go_duration(&text);
        let _ = parse_go_duration(&digits);
        let _ = parse_count(&digits);
        let _ = parse_reset_timestamp(&text, wall());
        if let Ok(value) = HeaderValue::from_str(&digits) {
            let mut map = HeaderMap::new();
            for name in ["x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", "retry-after"] {
                map.insert(name, value.clone());
            }
            let seen = parse_hints(429, &map, wall());
            prop_assert!(seen.block.is_some_and(|b| b <= MAX_HORIZON));
        }
    }
}
