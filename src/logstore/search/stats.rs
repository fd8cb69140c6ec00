//! `/admin/stats`: request volume, error rate, latency and first-token percentiles, tokens and
//! cost per interval (and per group), computed in one pass over the index's fast-field columns
//! (`stats_collect.rs`): no record is loaded. Counts, tokens and cost are exact sums;
//! percentiles are exact (nearest rank) up to 2M matching records, and from an even sample
//! beyond (`sampled_every` in the answer says which).

use std::ops::Bound;
use std::time::Instant;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tantivy::collector::Count;
use tantivy::query::RangeQuery;

use super::stats_collect::{percentile, Cell, GroupField, GroupKey, StatsCollector, MAX_SAMPLES};

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

/// One stats query runs at a time: each may hold up to [`MAX_SAMPLES`] values per series.
static QUERY_GATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
        let group = match query.group_by.as_deref() {
            None => GroupField::None,
            Some("status") => GroupField::Number("status"),
            Some(group) => GroupField::Text(index_field(group).ok_or_else(|| {
                LogError::BadRequest(format!(
                    "unknown group_by `{group}` (model, provider, feature, user, team, status)"
                ))
            })?),
        };
        let _gate = QUERY_GATE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let range = RangeQuery::new_i64_bounds(
            "time".into(),
            Bound::Included(query.from_ms),
            Bound::Excluded(query.to_ms),
        );
        let searcher = self.reader.searcher();
        let matching = searcher.search(&range, &Count)? as u64;
        let collector = StatsCollector {
            interval_ms: query.interval.ms(),
            group,
            stride: matching.div_ceil(MAX_SAMPLES).max(1),
            has_first_token: self.schema.schema.get_field("first_token_ms").is_ok(),
        };
        let cells = searcher.search(&range, &collector)?;
        let grouped = !matches!(group, GroupField::None);
        let mut by_interval: BTreeMap<i64, Vec<(Option<GroupKey>, Cell)>> = BTreeMap::new();
        for ((interval, key), cell) in cells {
            by_interval.entry(interval).or_default().push((key, cell));
        }
        let mut total = Cell::default();
        let mut rows = Vec::with_capacity(by_interval.len());
        for (start_ms, mut cells) in by_interval {
            let mut interval = Cell::default();
            let mut groups = Vec::new();
            if grouped {
                cells.sort_by(|a, b| b.1.requests.cmp(&a.1.requests).then_with(|| a.0.cmp(&b.0)));
                for (key, cell) in cells.iter_mut().filter(|(key, _)| key.is_some()) {
                    if groups.len() >= MAX_GROUPS as usize {
                        break;
                    }
                    let mut figures = figures(cell);
                    figures["group"] = match key {
                        Some(GroupKey::Text(text)) => json!(text),
                        Some(GroupKey::Number(number)) => json!(number),
                        None => Value::Null,
                    };
                    groups.push(figures);
                }
            }
            for (_, cell) in cells {
                interval.absorb_sums(&cell);
                interval.latency_ms.extend_from_slice(&cell.latency_ms);
                interval
                    .first_token_ms
                    .extend_from_slice(&cell.first_token_ms);
            }
            let mut row = figures(&mut interval);
            row["start_ms"] = json!(start_ms);
            row["start"] = json!(chrono::DateTime::from_timestamp_millis(start_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
            if grouped {
                row["groups"] = Value::Array(groups);
            }
            rows.push(row);
            total.absorb_sums(&interval);
            total.latency_ms.append(&mut interval.latency_ms);
            total.first_token_ms.append(&mut interval.first_token_ms);
        }
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
            "total": figures(&mut total),
            "sampled_every": collector.stride,
            "took_ms": started.elapsed().as_secs_f64() * 1000.0,
        }))
    }
}

/// One cell's figures: requests, errors and error rate, latency and first-token percentiles
/// (nearest rank), tokens and cost. Reorders the cell's values.
fn figures(cell: &mut Cell) -> Value {
    let requests = cell.requests;
    let latency = &mut cell.latency_ms;
    let first = &mut cell.first_token_ms;
    json!({
        "requests": requests,
        "errors": cell.errors,
        "error_rate": if requests == 0 { 0.0 } else { cell.errors as f64 / requests as f64 },
        "latency_ms": {
            "p50": percentile(latency, 50.0),
            "p90": percentile(latency, 90.0),
            "p99": percentile(latency, 99.0),
        },
        "first_token_ms": {
            "p50": percentile(first, 50.0),
            "p99": percentile(first, 99.0),
        },
        "input_tokens": cell.input_tokens,
        "output_tokens": cell.output_tokens,
        "cost_usd": cell.cost_usd,
    })
}
