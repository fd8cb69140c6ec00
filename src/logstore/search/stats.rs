//! `/admin/stats`: request volume, error rate, latency and first-token percentiles, tokens and
//! cost per interval (and per group), computed by Tantivy aggregations over the index's fast
//! fields: no record is loaded. Percentiles are Tantivy's DDSketch estimates (about 1%
//! relative error); counts, tokens and cost are exact sums.

use std::ops::Bound;
use std::time::Instant;

use serde_json::{json, Map, Value};
use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::agg_result::AggregationResults;
use tantivy::aggregation::{AggregationCollector, AggregationLimits};
use tantivy::query::RangeQuery;

use super::super::{LogError, LogStore};

/// The interval of a stats query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsInterval {
    Minute,
    Hour,
    Day,
}

impl StatsInterval {
    /// The interval in milliseconds (days are UTC days).
    pub fn ms(self) -> i64 {
        match self {
            StatsInterval::Minute => 60_000,
            StatsInterval::Hour => 3_600_000,
            StatsInterval::Day => 86_400_000,
        }
    }

    /// The interval of a query parameter.
    pub fn parse(name: &str) -> Option<StatsInterval> {
        match name {
            "minute" => Some(StatsInterval::Minute),
            "hour" => Some(StatsInterval::Hour),
            "day" => Some(StatsInterval::Day),
            _ => None,
        }
    }
}

/// What `/admin/stats` asks for.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    /// Start (Unix ms, inclusive).
    pub from_ms: i64,
    /// End (Unix ms, exclusive).
    pub to_ms: i64,
    pub interval: StatsInterval,
    /// `model` (asked for), `provider`, `feature`, `user`, `team` or `status`.
    pub group_by: Option<String>,
}

/// Intervals a query may span at most (a minute interval over a week is 10,080).
pub const MAX_INTERVALS: i64 = 20_000;
/// Groups per interval at most (the largest by request count).
pub const MAX_GROUPS: u32 = 100;

fn index_field(group: &str) -> Option<&'static str> {
    Some(match group {
        "model" => "model",
        "provider" => "provider",
        "feature" => "feature",
        "user" => "user",
        "team" => "team",
        "status" => "status",
        _ => return None,
    })
}

impl LogStore {
    /// Run a stats query (blocking: call it off the request threads).
    pub fn stats(&self, query: &StatsQuery) -> Result<Value, LogError> {
        let started = Instant::now();
        if query.from_ms >= query.to_ms {
            return Err(LogError::BadRequest("`from` must be before `to`".into()));
        }
        let intervals = query.to_ms.saturating_sub(query.from_ms) / query.interval.ms();
        if intervals > MAX_INTERVALS {
            return Err(LogError::BadRequest(format!(
                "{intervals} intervals: at most {MAX_INTERVALS}; use a longer interval or a shorter range"
            )));
        }
        let group_field = match query.group_by.as_deref() {
            None => None,
            Some(group) => Some(index_field(group).ok_or_else(|| {
                LogError::BadRequest(format!(
                    "unknown group_by `{group}` (model, provider, feature, user, team, status)"
                ))
            })?),
        };
        let has_ttft = self.schema.schema.get_field("first_token_ms").is_ok();
        let mut metrics = json!({
            "latency": { "percentiles": { "field": "latency_ms", "percents": [50.0, 90.0, 99.0], "keyed": true } },
            "errors": { "range": { "field": "status", "ranges": [{ "from": 400.0 }] } },
            "input_tokens": { "sum": { "field": "input_tokens" } },
            "output_tokens": { "sum": { "field": "output_tokens" } },
            "cost": { "sum": { "field": "cost_usd" } },
        });
        if has_ttft {
            metrics["ttft"] = json!({ "percentiles": { "field": "first_token_ms", "percents": [50.0, 99.0], "keyed": true } });
        }
        let mut per_interval = metrics.clone();
        if let Some(field) = group_field {
            per_interval["groups"] = json!({
                "terms": { "field": field, "size": MAX_GROUPS, "order": { "_count": "desc" } },
                "aggs": metrics,
            });
        }
        // The whole range's figures beside the intervals (its percentiles cannot be derived
        // from the intervals' own).
        let mut request = metrics.clone();
        request["intervals"] = json!({
            "histogram": {
                "field": "time",
                "interval": query.interval.ms() as f64,
                "hard_bounds": { "min": query.from_ms as f64, "max": query.to_ms.saturating_sub(1) as f64 },
            },
            "aggs": per_interval,
        });
        let aggregations: Aggregations = serde_json::from_value(request)
            .map_err(|err| LogError::Index(format!("stats aggregation: {err}")))?;
        let collector = AggregationCollector::from_aggs(aggregations, AggregationLimits::default());
        let range = RangeQuery::new_i64_bounds(
            "time".into(),
            Bound::Included(query.from_ms),
            Bound::Excluded(query.to_ms),
        );
        let searcher = self.reader.searcher();
        let results: AggregationResults = searcher.search(&range, &collector)?;
        let raw = serde_json::to_value(&results).map_err(|err| LogError::Index(err.to_string()))?;
        let buckets = raw["intervals"]["buckets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let rows: Vec<Value> = buckets
            .iter()
            .filter(|b| b["doc_count"].as_u64().unwrap_or(0) > 0)
            .map(|bucket| {
                let mut row = figures(bucket);
                row["start_ms"] = json!(bucket["key"].as_f64().unwrap_or(0.0) as i64);
                row["start"] = json!(chrono::DateTime::from_timestamp_millis(
                    bucket["key"].as_f64().unwrap_or(0.0) as i64
                )
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
                if group_field.is_some() {
                    let groups: Vec<Value> = bucket["groups"]["buckets"]
                        .as_array()
                        .map(|groups| {
                            groups
                                .iter()
                                .map(|group| {
                                    let mut figures = figures(group);
                                    figures["group"] = group["key"].clone();
                                    figures
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    row["groups"] = Value::Array(groups);
                }
                row
            })
            .collect();
        let mut total = raw;
        total["doc_count"] = json!(rows
            .iter()
            .map(|row| row["requests"].as_u64().unwrap_or(0))
            .sum::<u64>());
        Ok(json!({
            "from_ms": query.from_ms,
            "to_ms": query.to_ms,
            "interval": match query.interval {
                StatsInterval::Minute => "minute",
                StatsInterval::Hour => "hour",
                StatsInterval::Day => "day",
            },
            "group_by": query.group_by,
            "intervals": rows,
            "total": figures(&total),
            "took_ms": started.elapsed().as_secs_f64() * 1000.0,
        }))
    }
}

/// One bucket's figures: requests, errors and error rate, latency and first-token
/// percentiles, tokens and cost.
fn figures(bucket: &Value) -> Value {
    let requests = bucket["doc_count"].as_u64().unwrap_or(0);
    // Tantivy adds the gap below the first range as its own bucket: take the `from: 400` one.
    let errors = bucket["errors"]["buckets"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["from"].as_f64() == Some(400.0)))
        .and_then(|b| b["doc_count"].as_u64())
        .unwrap_or(0);
    let percentiles = |name: &str, keys: &[(&str, &str)]| -> Value {
        let mut out = Map::new();
        for (key, label) in keys {
            let value = &bucket[name]["values"][*key];
            out.insert(
                (*label).into(),
                value.as_f64().map_or(Value::Null, |v| json!(v)),
            );
        }
        Value::Object(out)
    };
    json!({
        "requests": requests,
        "errors": errors,
        "error_rate": if requests == 0 { 0.0 } else { errors as f64 / requests as f64 },
        "latency_ms": percentiles("latency", &[("50.0", "p50"), ("90.0", "p90"), ("99.0", "p99")]),
        "first_token_ms": percentiles("ttft", &[("50.0", "p50"), ("99.0", "p99")]),
        "input_tokens": bucket["input_tokens"]["value"].as_f64().unwrap_or(0.0) as u64,
        "output_tokens": bucket["output_tokens"]["value"].as_f64().unwrap_or(0.0) as u64,
        "cost_usd": bucket["cost"]["value"].as_f64().unwrap_or(0.0),
    })
}
