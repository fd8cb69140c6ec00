//! Cost of the response cache on the request path (DESIGN.md budget: a lookup ≤ 5 µs for a
//! 2 KB request), for a realistic chat of about 2 KB and one of about 50 KB (a system prompt
//! and alternating user/assistant turns, one tool):
//!
//! - `cache/key/*`: [`CacheKey::of`] alone (the canonical encoding streamed into SHA-256);
//! - `cache/lookup_hit/*`: what a hit costs the request: the key, then a fresh lookup;
//! - `cache/lookup_hit_prehashed`: the lookup alone, the key already computed;
//! - `cache/insert`: storing a ~1 KB answer under one of 10,000 keys in turn (moka's
//!   housekeeping included; the answer is built outside the measurement).
//!
//! The cache holds 10,000 entries while measuring, so moka's maps have a realistic size.
//!
//! `cargo bench --bench cache`

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use switchyard::cache::{CacheKey, CachedAnswer, Lookup, ResponseCache};
use switchyard::canonical::{ChatRequest, ChatResponse, FinishReason, Message, Role, Tool, Usage};
use switchyard::config::CacheConfig;
use switchyard::cost::Usd;

const ENTRIES: usize = 10_000;
const SCOPE: &str = "team:core";

/// A chat of about `target_bytes` of text: a system prompt, then user/assistant turns.
fn chat(target_bytes: usize) -> ChatRequest {
    let system = "You are a careful support assistant for an accounting product. Answer in \
        short paragraphs, cite the relevant help article when there is one, and never invent \
        figures. If the question is about billing, ask for the invoice number first.";
    let question = "The export job fails after the upgrade to version 2.4 when the report has \
        more than 200 rows; we tried again this morning and saw the same timeout. What can we do? ";
    let answer = "This is a known limit of the 2.4 exporter: large reports time out after 30 \
        seconds. Split the report by month, or raise the export timeout in Settings → Reports. \
        A fix ships in 2.4.1. ";
    let mut messages = vec![Message::text(Role::System, system)];
    let mut size = system.len();
    let mut turn = 0;
    while size < target_bytes {
        let (role, text) = if turn % 2 == 0 {
            (Role::User, format!("{question}(turn {turn})"))
        } else {
            (Role::Assistant, format!("{answer}(turn {turn})"))
        };
        size += text.len();
        messages.push(Message::text(role, text));
        turn += 1;
    }
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages,
        tools: vec![Tool {
            name: "lookup_invoice".into(),
            description: Some("Find an invoice by its number".into()),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {"number": {"type": "string"}, "year": {"type": "integer"}},
                "required": ["number"]
            }),
        }],
        temperature: Some(0.0),
        max_tokens: Some(512),
        ..ChatRequest::default()
    }
}

fn request_bytes(request: &ChatRequest) -> u64 {
    serde_json::to_vec(request).map_or(0, |body| body.len() as u64)
}

fn answer(text_bytes: usize) -> CachedAnswer {
    CachedAnswer {
        response: ChatResponse {
            id: "chatcmpl-bench".into(),
            model: "gpt-4o-mini-2024-07-18".into(),
            text: "x".repeat(text_bytes),
            tool_calls: Vec::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage {
                input_tokens: 500,
                output_tokens: 250,
                ..Usage::default()
            },
        },
        served_model: "gpt-4o-mini".into(),
        provider: "openai".into(),
        stored_at: tokio::time::Instant::now(),
        ttl: Duration::from_secs(600),
        stale: Duration::from_secs(86_400),
        scope: SCOPE.into(),
        cost: Some(Usd::from_nanos(225_000)),
    }
}

fn filler_key(n: usize) -> CacheKey {
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::text(Role::User, format!("filler question {n}"))],
        ..ChatRequest::default()
    };
    CacheKey::of(&request, SCOPE)
}

fn filled_cache() -> ResponseCache {
    let cache = ResponseCache::new(&CacheConfig {
        enabled: true,
        ..CacheConfig::default()
    });
    for n in 0..ENTRIES {
        cache.insert(filler_key(n), answer(1_000));
    }
    cache.run_pending_tasks();
    cache
}

fn bench_cache(c: &mut Criterion) {
    let cache = filled_cache();
    let cases = [("2kb", chat(2 * 1024)), ("50kb", chat(50 * 1024))];
    for (_, request) in &cases {
        cache.insert(CacheKey::of(request, SCOPE), answer(1_000));
    }
    cache.run_pending_tasks();

    let mut group = c.benchmark_group("cache");
    for (name, request) in &cases {
        group.throughput(Throughput::Bytes(request_bytes(request)));
        group.bench_function(format!("key/{name}"), |b| {
            b.iter(|| CacheKey::of(black_box(request), black_box(SCOPE)))
        });
        group.bench_function(format!("lookup_hit/{name}"), |b| {
            b.iter(|| {
                let key = CacheKey::of(black_box(request), black_box(SCOPE));
                match cache.lookup(&key, None) {
                    Lookup::Fresh(answer, age) => black_box((answer, age)),
                    _ => panic!("the {name} request must hit"),
                }
            })
        });
    }

    let key = CacheKey::of(&cases[0].1, SCOPE);
    group.throughput(Throughput::Elements(1));
    group.bench_function("lookup_hit_prehashed", |b| {
        b.iter(|| match cache.lookup(black_box(&key), None) {
            Lookup::Fresh(answer, age) => black_box((answer, age)),
            _ => panic!("the prehashed key must hit"),
        })
    });

    let keys: Vec<CacheKey> = (0..ENTRIES).map(filler_key).collect();
    let mut next = 0;
    group.bench_function("insert", |b| {
        b.iter_batched(
            || {
                next = (next + 1) % keys.len();
                (keys[next], answer(1_000))
            },
            |(key, answer)| black_box(cache.insert(key, answer)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_cache);
criterion_main!(benches);
