//! `GET /admin/budgets`: every budget with its spent, reserved and remaining money.
//! `GET /admin/spend`: spend reports from the durable spend ledger, for reconciliation.
//!
//! `/admin/spend?group_by=user,feature,model&from=&to=&interval=day|month[&format=csv]`:
//! `from` and `to` are RFC 3339 times or Unix milliseconds (default: the start of the current
//! month to now; `to` is exclusive). JSON rows carry `cost_usd` as an exact decimal string.

use crate::config::BudgetPeriod;
use crate::cost::{Dimension, SpendInterval, SpendQuery, Usd};
use crate::error::GatewayError;
use crate::http::{full, json_value, query_pairs, Body};
use crate::ledger::MoneyStatus;
use crate::pipeline::stages::matcher::Matcher;
use crate::pipeline::AppState;
use http::{HeaderValue, Response};
use serde_json::{json, Value};

/// Buckets listed per `"*"` budget.
const MAX_BUCKETS_PER_BUDGET: usize = 1000;

/// `GET /admin/budgets`.
pub fn budgets(state: &AppState) -> Response<Body> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let listed: Vec<Value> = state
        .config
        .budgets
        .iter()
        .map(|rule| {
            let matcher = Matcher::new(&rule.matcher);
            let limit = Usd::from_dollars(rule.limit_usd).unwrap_or(Usd::ZERO);
            let statuses = match matcher.single_key(&rule.name) {
                Some(key) => state.money.status(
                    &[crate::ledger::MoneyLimit {
                        key: key.into(),
                        limit,
                        period: rule.period,
                    }],
                    now_ms,
                ),
                None => state.money.buckets(
                    &format!("{}:", rule.name),
                    MAX_BUCKETS_PER_BUDGET + 1,
                    now_ms,
                ),
            };
            let truncated = statuses.len() > MAX_BUCKETS_PER_BUDGET;
            let buckets: Vec<Value> = statuses
                .iter()
                .take(MAX_BUCKETS_PER_BUDGET)
                .map(|s| bucket_json(s, rule.soft_pct))
                .collect();
            json!({
                "name": rule.name,
                "match": serde_json::to_value(&rule.matcher).unwrap_or(Value::Null),
                "period": rule.period.as_str(),
                "limit_usd": limit.to_string(),
                "soft_pct": rule.soft_pct,
                "buckets": buckets,
                "truncated": truncated,
            })
        })
        .collect();
    json_value(&json!({ "budgets": listed, "live_buckets": state.money.len() }))
}

fn bucket_json(status: &MoneyStatus, soft_pct: f64) -> Value {
    let pct = status.pct();
    json!({
        "key": status.key.as_str(),
        "scope": Matcher::scope_of(status.key.as_str()),
        "spent_usd": status.spent.to_string(),
        "reserved_usd": status.reserved.to_string(),
        "remaining_usd": status.remaining().to_string(),
        "pct": (pct * 100.0).round() / 100.0,
        "state": if status.remaining() <= Usd::ZERO {
            "exhausted"
        } else if pct >= soft_pct {
            "warning"
        } else {
            "ok"
        },
        "period_ends_at": (status.period != BudgetPeriod::Total)
            .then(|| chrono::DateTime::from_timestamp_millis(status.period_end_ms))
            .flatten()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    })
}

/// `GET /admin/spend`.
pub async fn spend(state: &AppState, query: &str) -> Result<Response<Body>, GatewayError> {
    let ledger = state
        .spend
        .as_ref()
        .ok_or_else(|| GatewayError::internal("this gateway runs without a spend ledger"))?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let offset = state.config.cost.utc_offset_s().unwrap_or(0);
    let mut spend_query = SpendQuery {
        from_ms: crate::cost::period::period_start_ms(BudgetPeriod::Month, now_ms, offset),
        to_ms: now_ms + 1,
        interval: SpendInterval::Day,
        group_by: Vec::new(),
    };
    let mut csv = false;
    for (key, value) in query_pairs(query).map_err(GatewayError::bad_body)? {
        match key.as_str() {
            "from" => spend_query.from_ms = time_param("from", &value)?,
            "to" => spend_query.to_ms = time_param("to", &value)?,
            "interval" => {
                spend_query.interval = match value.as_str() {
                    "day" => SpendInterval::Day,
                    "month" => SpendInterval::Month,
                    _ => return Err(GatewayError::invalid("interval", "must be day or month")),
                }
            }
            "group_by" => {
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let dimension = name
                        .parse::<Dimension>()
                        .map_err(|err| GatewayError::invalid("group_by", err))?;
                    spend_query.group_by.push(dimension);
                }
            }
            "format" => {
                csv = match value.as_str() {
                    "csv" => true,
                    "json" => false,
                    _ => return Err(GatewayError::invalid("format", "must be json or csv")),
                }
            }
            other => {
                return Err(GatewayError::invalid(
                    other,
                    "unknown parameter (from, to, interval, group_by, format)",
                ))
            }
        }
    }
    let report = ledger
        .report(spend_query)
        .await
        .map_err(GatewayError::from)?;
    if csv {
        let mut response = Response::new(full(report.to_csv()));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        response.headers_mut().insert(
            http::header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"switchyard-spend.csv\""),
        );
        return Ok(response);
    }
    let mut body = report.to_json();
    let catalogue = state.prices.catalogue();
    let configured_unpriced = catalogue.unpriced_models();
    if let Some(object) = body.as_object_mut() {
        object.insert(
            "unpriced_configured_models".into(),
            json!(configured_unpriced),
        );
        let prices = state.prices.status();
        object.insert(
            "prices".into(),
            json!({
                "file": prices.file.as_ref().map(|p| p.display().to_string()),
                "loaded_at": prices.loaded_at.map(|t| t.to_rfc3339()),
                "entries": prices.entries,
                "last_error": prices.last_error,
                "reloads": prices.reloads,
            }),
        );
        let stats = ledger.stats();
        object.insert(
            "ledger".into(),
            serde_json::to_value(stats).unwrap_or(Value::Null),
        );
    }
    Ok(json_value(&body))
}

/// A time parameter: RFC 3339 or Unix milliseconds.
pub(super) fn time_param(name: &str, value: &str) -> Result<i64, GatewayError> {
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            GatewayError::invalid(
                name,
                "must be an RFC 3339 time (2026-12-01T00:00:00Z) or Unix milliseconds",
            )
        })
}
