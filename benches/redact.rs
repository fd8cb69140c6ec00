//! Redaction cost on a ~3 KB prompt: with a few findings, and with none (the common case);
//! and on a whole record: the walk of every string and key (what the journal stores) next to
//! the old free-text-fields-only pass and plain serialisation.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use switchyard::canonical::{ChatRequest, Message, Role, Tool, Usage};
use switchyard::config::RedactConfig;
use switchyard::logstore::{LogRecord, Redactor};

/// About 3 KB of support-chat prose.
fn prose() -> String {
    let paragraph = "Hello team, the customer reports that the export job fails after the upgrade \
        to version 2.4 when the report has more than 200 rows. They tried again on 2024-05-01 at \
        10:30 and saw the same timeout. Order #100234987 is affected, ticket 4021-77 is open. ";
    paragraph.repeat(12)
}

fn with_findings() -> String {
    let mut text = prose();
    text.push_str(
        "Contact jane.doe@example.com or +1 (555) 123-4567, card 4111 1111 1111 1111, \
         IBAN DE89 3704 0044 0532 0130 00, from 192.168.10.20 with key sk-proj-Zx81kQ2mN4pL7vB9tR3wY6uE.",
    );
    text
}

fn bench_redact(c: &mut Criterion) {
    let redactor = match Redactor::new(&RedactConfig::default()) {
        Ok(redactor) => redactor,
        Err(err) => panic!("default redactor: {err}"),
    };
    let clean = prose();
    let dirty = with_findings();
    let mut group = c.benchmark_group("redact");
    group.throughput(Throughput::Bytes(clean.len() as u64));
    group.bench_function("3kb_clean", |b| {
        b.iter(|| black_box(redactor.redact(black_box(&clean))))
    });
    group.throughput(Throughput::Bytes(dirty.len() as u64));
    group.bench_function("3kb_with_findings", |b| {
        b.iter(|| black_box(redactor.redact(black_box(&dirty))))
    });
    group.finish();
}

/// A typical record: a 3 KB prompt, a tool with a 20-property schema, a short answer.
fn record() -> LogRecord {
    let mut properties = serde_json::Map::new();
    for i in 0..20 {
        properties.insert(
            format!("field_{i}"),
            serde_json::json!({"type": "string", "description": format!("the value of field {i}")}),
        );
    }
    let mut request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, "You are a helpful support assistant."),
            Message::text(Role::User, prose()),
        ],
        tools: vec![Tool {
            name: "lookup_order".into(),
            description: Some("Look an order up by its number.".into()),
            parameters: serde_json::json!({"type": "object", "properties": properties}),
        }],
        stop: vec!["END".into()],
        ..ChatRequest::default()
    };
    request.metadata.insert("feature".into(), "support".into());
    LogRecord {
        id: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b".into(),
        started_at: "2024-05-01T00:00:00Z".into(),
        started_ms: 1_714_521_600_000,
        finished_at: "2024-05-01T00:00:01Z".into(),
        dialect: "openai".into(),
        endpoint: "chat".into(),
        user: "alice".into(),
        team: Some("support".into()),
        tier: None,
        key_id: "key-1".into(),
        feature: Some("support".into()),
        requested_model: "gpt-4o-mini".into(),
        served_model: Some("gpt-4o-mini".into()),
        provider: Some("openai".into()),
        attempts: Vec::new(),
        status: 200,
        error: None,
        request,
        output_text: "The export job fails because of the row limit; raise it to 500.".into(),
        output_tool_calls: Vec::new(),
        finish_reason: Some("stop".into()),
        usage: Usage::default(),
        cost_usd: 0.001,
        cost_unknown: false,
        latency_ms: 120.0,
        first_token_ms: None,
        stream: false,
        client_disconnected: false,
        policy_version: None,
        replay_of: None,
        correlation_id: None,
        embedding_dimensions: None,
        limits: None,
        budget: None,
        cache: None,
    }
}

fn bench_record(c: &mut Criterion) {
    let redactor = match Redactor::new(&RedactConfig::default()) {
        Ok(redactor) => redactor,
        Err(err) => panic!("default redactor: {err}"),
    };
    let record = record();
    let mut group = c.benchmark_group("redact_record");
    group.bench_function("serialise_only", |b| {
        b.iter(|| black_box(serde_json::to_vec(black_box(&record)).ok()))
    });
    group.bench_function("free_text_fields_then_serialise", |b| {
        b.iter(|| {
            // What the journal did before: message text, metadata values, output, errors.
            let mut copy = record.clone();
            for message in &mut copy.request.messages {
                for part in &mut message.content {
                    if let switchyard::canonical::ContentPart::Text { text } = part {
                        redactor.redact_string(text);
                    }
                }
            }
            for value in copy.request.metadata.values_mut() {
                redactor.redact_string(value);
            }
            redactor.redact_string(&mut copy.output_text);
            black_box(serde_json::to_vec(&copy).ok())
        })
    });
    group.bench_function("every_string_walk", |b| {
        b.iter(|| black_box(redactor.record_json(black_box(record.clone()), true).ok()))
    });
    group.finish();
}

criterion_group!(benches, bench_redact, bench_record);
criterion_main!(benches);
