//! `/admin/stats` end to end: traffic through the in-process gateway, then the aggregations
//! over the real Tantivy index compared with the figures computed from the individual records.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, swap, Script, Scripted};
use common::{admin_json, chat_as, users};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use switchyard::logstore::SearchParams;

/// Per model: requests, errors, input tokens, output tokens, cost, latencies.
type Figures = (u64, u64, u64, u64, f64, Vec<f64>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_per_interval_and_model_equal_the_sums_of_the_records() {
    let p1 = Scripted::new("p1", vec![Script::Answer("ok")]);
    // m2 fails one call in three.
    let p2 = Scripted::new(
        "p2",
        (0..30)
            .map(|i| {
                if i % 3 == 0 {
                    Script::Fail(500)
                } else {
                    Script::Answer("fine")
                }
            })
            .collect(),
    );
    let gw = start(&config(None, &users()), |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    let url = gw.url("/v1/chat/completions");
    for i in 0..45 {
        let model = if i % 3 == 0 { "m2" } else { "m1" };
        let user = ["alice", "bob", "carol"][i % 3];
        let body = json!({ "model": model, "max_tokens": 10, "messages": [{ "role": "user", "content": format!("q{i}") }] });
        chat_as(&url, user, "stats", &body).await;
    }
    let records = gw.wait_records("stats", 45).await;
    assert_eq!(records.len(), 45);
    let all = gw
        .records(SearchParams {
            feature: Some("stats".into()),
            limit: 200,
            ..SearchParams::default()
        })
        .await;
    assert_eq!(all.len(), 45);

    // Expected per requested model: requests, errors, tokens, cost, latencies.
    let mut expected: BTreeMap<String, Figures> = BTreeMap::new();
    for r in &all {
        let entry = expected
            .entry(r["requested_model"].as_str().unwrap().to_string())
            .or_default();
        entry.0 += 1;
        entry.1 += u64::from(r["status"].as_u64().unwrap() >= 400);
        entry.2 += r["usage"]["input_tokens"].as_u64().unwrap();
        entry.3 += r["usage"]["output_tokens"].as_u64().unwrap();
        entry.4 += r["cost_usd"].as_f64().unwrap();
        entry.5.push(r["latency_ms"].as_f64().unwrap());
    }
    assert_eq!(expected["m2"].1, 5, "one m2 call in three failed");

    let now = chrono::Utc::now().timestamp_millis();
    let stats = admin_json(&gw.url(&format!(
        "/admin/stats?interval=day&group_by=model&from={}&to={}",
        now - 3_600_000,
        now + 60_000
    )))
    .await;
    let intervals = stats["intervals"].as_array().unwrap();
    let total: u64 = intervals
        .iter()
        .map(|i| i["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 45, "{stats}");
    let mut seen = BTreeMap::new();
    for interval in intervals {
        for group in interval["groups"].as_array().unwrap() {
            let model = group["group"].as_str().unwrap().to_string();
            let row = seen
                .entry(model)
                .or_insert((0u64, 0u64, 0u64, 0u64, 0.0f64, Vec::new()));
            row.0 += group["requests"].as_u64().unwrap();
            row.1 += group["errors"].as_u64().unwrap();
            row.2 += group["input_tokens"].as_u64().unwrap();
            row.3 += group["output_tokens"].as_u64().unwrap();
            row.4 += group["cost_usd"].as_f64().unwrap();
            row.5.push(group["latency_ms"]["p50"].as_f64().unwrap());
        }
    }
    for (model, want) in &expected {
        let got = &seen[model];
        assert_eq!(
            (got.0, got.1, got.2, got.3),
            (want.0, want.1, want.2, want.3),
            "{model}"
        );
        assert!(
            (got.4 - want.4).abs() < 1e-12,
            "{model}: cost {} vs {}",
            got.4,
            want.4
        );
        let min = want.5.iter().copied().fold(f64::MAX, f64::min);
        let max = want.5.iter().copied().fold(0.0, f64::max);
        let p50 = got.5[0];
        assert!(
            p50 >= min * 0.98 && p50 <= max * 1.02,
            "{model}: p50 {p50} outside [{min}, {max}]"
        );
    }
    let error_rate = intervals[0]["error_rate"].as_f64().unwrap();
    assert!((error_rate - 5.0 / 45.0).abs() < 1e-9, "{error_rate}");

    // The whole range's figures: the sums of every record, percentiles within their latencies.
    let total = &stats["total"];
    assert_eq!(
        (total["requests"].as_u64(), total["errors"].as_u64()),
        (Some(45), Some(5)),
        "{total}"
    );
    let cost: f64 = expected.values().map(|row| row.4).sum();
    assert!(
        (total["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12,
        "{total}"
    );
    // Percentiles are exact: the nearest rank of the records' own latencies.
    let mut latencies: Vec<f64> = expected.values().flat_map(|row| row.5.clone()).collect();
    for (pct, at) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0)] {
        assert_eq!(
            total["latency_ms"][pct].as_f64(),
            Some(nearest_rank(&mut latencies, at)),
            "{pct}: {total}"
        );
    }
    if intervals.len() == 1 {
        for (model, want) in &mut expected {
            assert_eq!(seen[model].5[0], nearest_rank(&mut want.5, 50.0), "{model}");
        }
    }

    // Bad parameters are 400s naming the parameter.
    let bad = common::client()
        .get(gw.url("/admin/stats?group_by=colour"))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("colour"));
}

/// The value at percentile `pct` of `values` by nearest rank.
fn nearest_rank(values: &mut [f64], pct: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let rank = ((pct / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}
