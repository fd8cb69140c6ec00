//! Redaction cost on a ~3 KB prompt: with a few findings, and with none (the common case).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use switchyard::config::RedactConfig;
use switchyard::logstore::Redactor;

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

criterion_group!(benches, bench_redact);
criterion_main!(benches);
