//! Cost of the metrics stage on the request path (DESIGN.md budget: metrics ≤ 1 µs): one
//! [`Metrics::record`] of a typical finished request (a served chat with one attempt,
//! tokens, cost, a feature and a limits wait), and of a fallback (two attempts), into a
//! registry whose label sets already exist, as they do after the first requests.
//!
//! `cargo bench --bench metrics`

use std::path::Path;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use switchyard::config::Config;
use switchyard::observe::{Metrics, RequestSample};

const CONFIG: &str = r#"
[[providers]]
name = "openai"
kind = "mock"

[[providers]]
name = "anthropic"
kind = "mock"

[[models]]
name = "gpt-4o-mini"
provider = "openai"

[[models]]
name = "claude-haiku"
provider = "anthropic"

[metrics]
features = ["chat", "search"]
"#;

fn sample(attempts: Vec<(&'static str, f64, &'static str)>) -> RequestSample<'static> {
    RequestSample {
        requested_model: "gpt-4o-mini",
        served_model: Some("gpt-4o-mini"),
        provider: Some("openai"),
        dialect: "openai",
        feature: Some("chat"),
        status: 200,
        cache: "miss",
        stream: false,
        duration_s: 0.412,
        first_token_s: Some(0.2),
        attempts,
        input_tokens: 812,
        output_tokens: 96,
        cached_input_tokens: 0,
        cost_usd: Some(0.000_179_4),
        queued_s: Some(0.0),
        budget_action: None,
    }
}

fn bench(c: &mut Criterion) {
    let config = match Config::parse(CONFIG, Path::new("metrics.toml")) {
        Ok(config) => config,
        Err(err) => panic!("bench config: {err}"),
    };
    let metrics = Metrics::new(&config);
    let mut group = c.benchmark_group("metrics");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record", |b| {
        b.iter(|| metrics.record(black_box(&sample(vec![("openai", 0.4, "ok")]))))
    });
    group.bench_function("record_fallback", |b| {
        b.iter(|| {
            metrics.record(black_box(&sample(vec![
                ("anthropic", 0.1, "error"),
                ("openai", 0.3, "ok"),
            ])))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
