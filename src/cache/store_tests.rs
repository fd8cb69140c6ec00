#![allow(clippy::unwrap_used, clippy::expect_used)]

use tokio::time::advance;

use crate::canonical::{ChatRequest, Message, Role, Usage};

use super::*;

fn config() -> CacheConfig {
    CacheConfig {
        enabled: true,
        ttl_s: 10,
        max_bytes: 1024 * 1024,
        max_entry_bytes: 64 * 1024,
        max_stale_s: 20,
        ..CacheConfig::default()
    }
}

fn response(text: &str) -> ChatResponse {
    ChatResponse {
        id: "resp_1".into(),
        model: "gpt-4o-mini-2024-07-18".into(),
        text: text.into(),
        tool_calls: Vec::new(),
        finish_reason: FinishReason::Stop,
        usage: Usage {
            input_tokens: 12,
            output_tokens: 3,
            ..Usage::default()
        },
    }
}

fn answer(text: &str, scope: &str) -> CachedAnswer {
    CachedAnswer {
        response: response(text),
        served_model: "gpt-4o-mini".into(),
        provider: "openai".into(),
        stored_at: Instant::now(),
        ttl: Duration::from_secs(10),
        stale: Duration::from_secs(20),
        scope: scope.into(),
        cost: Some(Usd::from_nanos(1_500)),
    }
}

fn key(n: usize) -> CacheKey {
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::text(Role::User, format!("question {n}"))],
        ..ChatRequest::default()
    };
    CacheKey::of(&request, "global")
}

fn fresh_age(lookup: Lookup) -> Duration {
    match lookup {
        Lookup::Fresh(_, age) => age,
        other => panic!("expected fresh, got {other:?}"),
    }
}

fn stale_age(lookup: Lookup) -> Duration {
    match lookup {
        Lookup::Stale(_, age) => age,
        other => panic!("expected stale, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_stored_answer_is_found_whole() {
    let cache = ResponseCache::new(&config());
    assert!(cache.insert(key(1), answer("Paris", "global")));
    match cache.lookup(&key(1), None) {
        Lookup::Fresh(found, age) => {
            assert_eq!(age, Duration::ZERO);
            assert_eq!(*found, answer("Paris", "global"));
        }
        other => panic!("expected fresh, got {other:?}"),
    }
    assert!(matches!(cache.lookup(&key(2), None), Lookup::Miss));
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_fresh_within_ttl_stale_after_and_gone_past_the_stale_window() {
    let cache = ResponseCache::new(&config());
    cache.insert(key(1), answer("Paris", "global"));

    advance(Duration::from_secs(9)).await;
    assert_eq!(
        fresh_age(cache.lookup(&key(1), None)),
        Duration::from_secs(9)
    );

    advance(Duration::from_secs(2)).await;
    assert_eq!(
        stale_age(cache.lookup(&key(1), None)),
        Duration::from_secs(11)
    );
    assert_eq!(
        cache.lookup_stale(&key(1)).unwrap().1,
        Duration::from_secs(11)
    );

    advance(Duration::from_secs(19)).await;
    assert!(matches!(cache.lookup(&key(1), None), Lookup::Miss));
    assert!(cache.lookup_stale(&key(1)).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_answer_older_than_max_age_is_not_fresh() {
    let cache = ResponseCache::new(&config());
    cache.insert(key(1), answer("Paris", "global"));
    advance(Duration::from_secs(5)).await;

    let five = Duration::from_secs(5);
    assert_eq!(
        stale_age(cache.lookup(&key(1), Some(Duration::from_secs(3)))),
        five
    );
    assert_eq!(stale_age(cache.lookup(&key(1), Some(Duration::ZERO))), five);
    assert_eq!(fresh_age(cache.lookup(&key(1), Some(five))), five);
    assert_eq!(
        fresh_age(cache.lookup(&key(1), Some(Duration::from_secs(60)))),
        five
    );
}

#[test]
fn moka_removes_an_entry_past_its_ttl_and_stale_window() {
    // moka's own clock cannot be paused: this one test uses short real durations.
    let cache = ResponseCache::new(&config());
    let mut short = answer("Paris", "global");
    short.stored_at = Instant::now();
    short.ttl = Duration::from_millis(20);
    short.stale = Duration::from_millis(20);
    assert!(cache.insert(key(1), short));
    cache.run_pending_tasks();
    assert_eq!(cache.stats().entries, 1);

    std::thread::sleep(Duration::from_millis(80));
    assert!(cache.lookup_stale(&key(1)).is_none());
    // moka itself no longer answers it: the expiry it was given is TTL + stale.
    assert!(cache.entries.get(&key(1)).is_none());
    // Its timer wheel frees expired entries in buckets of about 1.07 s.
    std::thread::sleep(Duration::from_millis(1_250));
    assert_eq!(cache.stats().entries, 0);
    assert_eq!(cache.stats().bytes, 0);
}

#[tokio::test(start_paused = true)]
async fn the_byte_bound_evicts_entries() {
    let config = CacheConfig {
        max_bytes: 64 * 1024,
        ..config()
    };
    let cache = ResponseCache::new(&config);
    let text = "x".repeat(2_000);
    let one = answer(&text, "global").weight_bytes();
    for n in 0..100 {
        assert!(cache.insert(key(n), answer(&text, "global")));
    }
    let stats = cache.stats();
    assert!(
        100 * one > config.max_bytes,
        "the entries must overflow the bound"
    );
    assert!(
        stats.bytes <= config.max_bytes,
        "{} bytes held",
        stats.bytes
    );
    assert!(stats.entries < 100);
    assert!(stats.evictions > 0);
    assert_eq!(stats.inserts, 100);
}

#[tokio::test(start_paused = true)]
async fn an_entry_above_max_entry_bytes_is_refused() {
    let config = CacheConfig {
        max_entry_bytes: 4096,
        ..config()
    };
    let cache = ResponseCache::new(&config);
    assert!(!cache.insert(key(1), answer(&"x".repeat(5000), "global")));
    assert!(matches!(cache.lookup(&key(1), None), Lookup::Miss));
    assert!(cache.insert(key(2), answer(&"x".repeat(3000), "global")));
    assert_eq!(cache.stats().inserts, 1);
}

#[tokio::test(start_paused = true)]
async fn the_weight_counts_every_string_and_the_overhead() {
    let mut with_calls = answer("abc", "team:core");
    let base = with_calls.weight_bytes();
    assert_eq!(
        base,
        ENTRY_OVERHEAD_BYTES + (6 + 22 + 3 + 11 + 6 + 9) as u64
    );
    with_calls.response.tool_calls.push(ToolCall {
        id: "c1".into(),
        name: "f".into(),
        arguments: "{}".into(),
    });
    assert_eq!(
        with_calls.weight_bytes(),
        base + (std::mem::size_of::<ToolCall>() + 5) as u64
    );
}

#[tokio::test(start_paused = true)]
async fn an_unstorable_answer_is_refused() {
    let cache = ResponseCache::new(&config());
    let mut filtered = answer("no", "global");
    filtered.response.finish_reason = FinishReason::ContentFilter;
    assert!(!cache.insert(key(1), filtered));
    assert!(!cache.insert(key(2), answer("", "global")));
    assert_eq!(cache.stats().inserts, 0);
}

#[tokio::test(start_paused = true)]
async fn an_answer_already_past_its_lifetime_is_refused() {
    let cache = ResponseCache::new(&config());
    let old = answer("Paris", "global");
    advance(Duration::from_secs(30)).await;
    assert!(!cache.insert(key(1), old));
}

#[tokio::test(start_paused = true)]
async fn inserting_again_replaces_the_answer() {
    let cache = ResponseCache::new(&config());
    cache.insert(key(1), answer("Paris", "global"));
    advance(Duration::from_secs(15)).await;
    cache.insert(key(1), answer("Paris, France", "global"));
    match cache.lookup(&key(1), None) {
        Lookup::Fresh(found, age) => {
            assert_eq!(found.response.text, "Paris, France");
            assert_eq!(age, Duration::ZERO);
        }
        other => panic!("expected fresh, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn purge_scope_removes_only_that_scope() {
    let cache = ResponseCache::new(&config());
    for n in 0..3 {
        cache.insert(key(n), answer("a", "team:core"));
    }
    for n in 3..5 {
        cache.insert(key(n), answer("b", "team:ml"));
    }
    cache.insert(key(5), answer("c", "team:core-2"));

    assert_eq!(cache.purge_scope("team:core"), 3);
    for n in 0..3 {
        assert!(matches!(cache.lookup(&key(n), None), Lookup::Miss));
    }
    for n in 3..6 {
        assert!(matches!(cache.lookup(&key(n), None), Lookup::Fresh(..)));
    }
    assert_eq!(cache.purge_scope("team:core"), 0);
    assert_eq!(cache.stats().entries, 3);
}

#[tokio::test(start_paused = true)]
async fn purge_all_removes_everything() {
    let cache = ResponseCache::new(&config());
    for n in 0..4 {
        cache.insert(key(n), answer("a", "global"));
    }
    cache.purge_all();
    for n in 0..4 {
        assert!(matches!(cache.lookup(&key(n), None), Lookup::Miss));
    }
    assert_eq!(cache.stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn stats_count_what_the_stage_records() {
    let cache = ResponseCache::new(&config());
    assert_eq!(cache.stats().hit_rate, 0.0);
    cache.insert(key(1), answer("Paris", "global"));
    for _ in 0..3 {
        cache.record_hit();
    }
    cache.record_miss();
    cache.record_stale();
    cache.record_bypass();
    cache.record_bypass();
    let stats = cache.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.stale_served,
            stats.bypassed,
            stats.inserts
        ),
        (3, 1, 1, 2, 1)
    );
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.bytes, answer("Paris", "global").weight_bytes());
    assert_eq!(stats.hit_rate, 0.75);
    // Clones share entries and counters.
    cache.clone().record_hit();
    assert_eq!(cache.stats().hits, 4);
}

fn with_finish(finish: FinishReason, text: &str, calls: usize) -> ChatResponse {
    let mut response = response(text);
    response.finish_reason = finish;
    for n in 0..calls {
        response.tool_calls.push(ToolCall {
            id: format!("call_{n}"),
            name: "weather".into(),
            arguments: "{}".into(),
        });
    }
    response
}

#[test]
fn storable_rules() {
    use FinishReason::*;
    let cases = [
        // (finish, text, tool calls, tool calls allowed, storable)
        (Stop, "hi", 0, false, true),
        (StopSequence, "hi", 0, false, true),
        (Length, "hi", 0, false, true),
        (ContentFilter, "hi", 0, false, false),
        (ContentFilter, "hi", 0, true, false),
        (Stop, "", 0, false, false),
        (Stop, " \n", 0, true, false),
        (ToolCalls, "", 1, false, false),
        (ToolCalls, "", 1, true, true),
        (ToolCalls, "", 0, true, false),
        (Stop, "hi", 1, false, false),
        (Stop, "hi", 1, true, true),
    ];
    for (finish, text, calls, allowed, expected) in cases {
        assert_eq!(
            storable(&with_finish(finish, text, calls), allowed),
            expected,
            "{finish:?} text {text:?} calls {calls} allowed {allowed}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn tool_call_answers_are_stored_only_when_configured() {
    let mut tool_answer = answer("", "global");
    tool_answer.response = with_finish(FinishReason::ToolCalls, "", 1);

    let without = ResponseCache::new(&config());
    assert!(!without.insert(key(1), tool_answer.clone()));

    let with = ResponseCache::new(&CacheConfig {
        tool_calls: true,
        ..config()
    });
    assert!(with.insert(key(1), tool_answer));
    assert!(matches!(with.lookup(&key(1), None), Lookup::Fresh(..)));
}
