//! Spend reports: the events of a time range summed by day or month (in the configured
//! offset) and by any dimensions, as rows for CSV or JSON.
//!
//! JSON money: `cost_usd` is the exact decimal string of [`Usd`]'s `Display`
//! (`"0.00012345"`, never a float that a client would round), next to the integer
//! `cost_nanos`. CSV money: `cost_usd` in the same exact decimal.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::event::{Dimension, SpendUsage};
use super::journal::{self, Snapshot};
use super::SpendError;
use crate::cost::period::{day_number_label, local_day, local_month, month_number_label};
use crate::cost::Usd;

/// The most rows a report may have; a query that yields more fails and asks to narrow it.
pub const MAX_REPORT_ROWS: usize = 100_000;

/// How a report splits time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendInterval {
    /// Calendar days in the configured offset (`2024-05-17`).
    #[default]
    Day,
    /// Calendar months in the configured offset (`2024-05`).
    Month,
}

impl SpendInterval {
    /// The name in queries and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SpendInterval::Day => "day",
            SpendInterval::Month => "month",
        }
    }
}

/// What a report covers: events with `from_ms <= ts_ms < to_ms`, split by `interval` and
/// grouped by the values of `group_by` (none: one row per period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendQuery {
    /// Start, Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// End, Unix milliseconds, exclusive.
    pub to_ms: i64,
    /// Days or months.
    pub interval: SpendInterval,
    /// Dimensions to group by, in column order (each at most once).
    pub group_by: Vec<Dimension>,
}

impl SpendQuery {
    /// Checks the range and the group-by list.
    pub fn validate(&self) -> Result<(), SpendError> {
        if self.from_ms >= self.to_ms {
            return Err(SpendError::BadQuery(format!(
                "`from` ({}) must be before `to` ({})",
                self.from_ms, self.to_ms
            )));
        }
        let distinct: BTreeSet<Dimension> = self.group_by.iter().copied().collect();
        if distinct.len() != self.group_by.len() {
            return Err(SpendError::BadQuery(
                "`group_by` names a dimension twice".into(),
            ));
        }
        Ok(())
    }
}

/// One row: a period and one combination of group values, with their sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendRow {
    /// The period's label: `YYYY-MM-DD` or `YYYY-MM`.
    pub period: String,
    /// The values of the query's `group_by` dimensions, in order (`None`: the events had
    /// no team, tier or feature).
    pub group: Vec<Option<String>>,
    /// Requests.
    pub requests: u64,
    /// Input tokens (cached ones included).
    pub input_tokens: u64,
    /// Input tokens read from a prompt cache.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// The cost of the priced requests.
    pub cost: Usd,
    /// Requests with no price.
    pub unpriced_requests: u64,
}

impl SpendRow {
    fn new(period: String, group: Vec<Option<String>>, usage: SpendUsage) -> SpendRow {
        SpendRow {
            period,
            group,
            requests: usage.requests,
            input_tokens: usage.input_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            output_tokens: usage.output_tokens,
            cost: usage.cost,
            unpriced_requests: usage.unpriced_requests,
        }
    }

    pub(crate) fn usage(&self) -> SpendUsage {
        SpendUsage {
            requests: self.requests,
            input_tokens: self.input_tokens,
            cached_input_tokens: self.cached_input_tokens,
            output_tokens: self.output_tokens,
            cost: self.cost,
            unpriced_requests: self.unpriced_requests,
        }
    }
}

/// A spend report: rows sorted by period then group values, their totals, and the models
/// seen without a price (whose cost is unknown, not zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendReport {
    /// The query's start.
    pub from_ms: i64,
    /// The query's end.
    pub to_ms: i64,
    /// The query's interval.
    pub interval: SpendInterval,
    /// The query's group-by dimensions (the group columns).
    pub group_by: Vec<Dimension>,
    /// The rows.
    pub rows: Vec<SpendRow>,
    /// The sums over all rows.
    pub totals: SpendUsage,
    /// Models of unpriced requests in the range, sorted.
    pub unpriced_models: Vec<String>,
}

impl SpendReport {
    /// The report as CSV (RFC 4180, CRLF line ends), columns
    /// `period,<group_by...>,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd,unpriced_requests`.
    /// A text cell starting with `=`, `+`, `-`, `@`, tab or carriage return gets a leading
    /// `'` so that a spreadsheet does not run it as a formula; a missing value is empty.
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let mut header: Vec<&str> = vec!["period"];
        header.extend(self.group_by.iter().map(|dim| dim.as_str()));
        header.extend([
            "requests",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "cost_usd",
            "unpriced_requests",
        ]);
        out.push_str(&header.join(","));
        out.push_str("\r\n");
        for row in &self.rows {
            let mut cells = vec![csv_text(&row.period)];
            cells.extend(
                row.group
                    .iter()
                    .map(|value| value.as_deref().map(csv_text).unwrap_or_default()),
            );
            cells.extend([
                row.requests.to_string(),
                row.input_tokens.to_string(),
                row.cached_input_tokens.to_string(),
                row.output_tokens.to_string(),
                row.cost.to_string(),
                row.unpriced_requests.to_string(),
            ]);
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        out
    }

    /// The report as JSON: `{from_ms, to_ms, interval, group_by, rows: [{period, <dim>:
    /// value|null.., requests, .., cost_usd, cost_nanos, unpriced_requests}], totals,
    /// unpriced_models}`, money as described in the module docs.
    pub fn to_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|row| {
                let mut object = serde_json::Map::new();
                object.insert("period".into(), row.period.clone().into());
                for (dim, value) in self.group_by.iter().zip(&row.group) {
                    object.insert(dim.as_str().into(), value.clone().into());
                }
                row.usage().json_fields(&mut object);
                object.into()
            })
            .collect();
        let mut totals = serde_json::Map::new();
        self.totals.json_fields(&mut totals);
        serde_json::json!({
            "from_ms": self.from_ms,
            "to_ms": self.to_ms,
            "interval": self.interval.as_str(),
            "group_by": self.group_by.iter().map(|d| d.as_str()).collect::<Vec<_>>(),
            "rows": rows,
            "totals": totals,
            "unpriced_models": self.unpriced_models,
        })
    }
}

impl Serialize for SpendReport {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// One CSV text cell: formula characters defused, then quoted when needed.
fn csv_text(text: &str) -> String {
    let defused = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if defused.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

/// Runs `query` over the files in `dir` and the writer's pending frames (blocking).
pub(crate) fn build(
    dir: &Path,
    utc_offset_s: i32,
    max_rows: usize,
    query: &SpendQuery,
    snapshot: &Snapshot,
) -> Result<SpendReport, SpendError> {
    query.validate()?;
    let from_day = journal::utc_day(query.from_ms);
    let to_day = journal::utc_day(query.to_ms.saturating_sub(1));
    let mut groups: BTreeMap<(i64, Vec<Option<String>>), SpendUsage> = BTreeMap::new();
    let mut totals = SpendUsage::default();
    let mut unpriced_models = BTreeSet::new();
    let mut too_many = false;
    journal::scan_days(dir, from_day, to_day, snapshot, &mut |event| {
        if !(query.from_ms..query.to_ms).contains(&event.ts_ms) {
            return true;
        }
        let period = match query.interval {
            SpendInterval::Day => local_day(event.ts_ms, utc_offset_s),
            SpendInterval::Month => local_month(event.ts_ms, utc_offset_s),
        };
        let group: Vec<Option<String>> = query
            .group_by
            .iter()
            .map(|&dim| event.value(dim).map(str::to_owned))
            .collect();
        let key = (period, group);
        let held = groups.len();
        match groups.entry(key) {
            std::collections::btree_map::Entry::Occupied(mut usage) => usage.get_mut().add(&event),
            std::collections::btree_map::Entry::Vacant(_) if held >= max_rows => {
                too_many = true;
                return false;
            }
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(SpendUsage::default()).add(&event)
            }
        }
        totals.add(&event);
        if event.cost.is_none() && !unpriced_models.contains(&event.model) {
            unpriced_models.insert(event.model);
        }
        true
    })?;
    if too_many {
        return Err(SpendError::TooManyRows { max: max_rows });
    }
    let rows = groups
        .into_iter()
        .map(|((period, group), usage)| {
            let label = match query.interval {
                SpendInterval::Day => day_number_label(period),
                SpendInterval::Month => month_number_label(period),
            };
            SpendRow::new(label, group, usage)
        })
        .collect();
    Ok(SpendReport {
        from_ms: query.from_ms,
        to_ms: query.to_ms,
        interval: query.interval,
        group_by: query.group_by.clone(),
        rows,
        totals,
        unpriced_models: unpriced_models.into_iter().collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn report(group: Vec<Option<&str>>) -> SpendReport {
        let usage = SpendUsage {
            requests: 2,
            cost: Usd::from_nanos(1_500_000_000),
            ..SpendUsage::default()
        };
        SpendReport {
            from_ms: 0,
            to_ms: 1,
            interval: SpendInterval::Day,
            group_by: vec![Dimension::User, Dimension::Feature],
            rows: vec![SpendRow::new(
                "2024-05-17".into(),
                group.into_iter().map(|v| v.map(str::to_owned)).collect(),
                usage,
            )],
            totals: usage,
            unpriced_models: vec![],
        }
    }

    #[test]
    fn csv_has_a_stable_header_and_exact_decimal_cost() {
        let csv = report(vec![Some("alice"), None]).to_csv();
        assert_eq!(
            csv,
            "period,user,feature,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd,unpriced_requests\r\n\
             2024-05-17,alice,,2,0,0,0,1.5,0\r\n"
        );
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let csv = report(vec![Some("a,b"), Some("say \"hi\"\nbye")]).to_csv();
        let row = csv.lines().nth(1).unwrap();
        assert!(
            row.starts_with("2024-05-17,\"a,b\",\"say \"\"hi\"\""),
            "{csv}"
        );
        assert!(csv.contains("bye\",2,"), "{csv}");
    }

    #[test]
    fn csv_defuses_cells_that_a_spreadsheet_would_run_as_formulas() {
        for (value, cell) in [
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+1", "'+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("safe=1", "safe=1"),
        ] {
            let csv = report(vec![Some(value), None]).to_csv();
            let row = csv.split("\r\n").nth(1).unwrap();
            assert!(
                row.starts_with(&format!("2024-05-17,{cell},")),
                "{value}: {row}"
            );
        }
    }

    #[test]
    fn json_names_group_columns_and_writes_cost_as_exact_decimal_string() {
        let json = report(vec![Some("alice"), None]).to_json();
        let row = &json["rows"][0];
        assert_eq!(row["user"], "alice");
        assert!(row["feature"].is_null());
        assert_eq!(row["cost_usd"], "1.5");
        assert_eq!(row["cost_nanos"], 1_500_000_000);
        assert_eq!(json["totals"]["requests"], 2);
        assert_eq!(json["group_by"], serde_json::json!(["user", "feature"]));
        assert_eq!(
            serde_json::to_value(report(vec![None, None])).unwrap()["interval"],
            "day"
        );
    }

    #[test]
    fn queries_with_an_empty_range_or_a_repeated_dimension_are_refused() {
        let query = |from_ms, to_ms, group_by| SpendQuery {
            from_ms,
            to_ms,
            interval: SpendInterval::Month,
            group_by,
        };
        assert!(query(5, 5, vec![]).validate().is_err());
        assert!(query(0, 5, vec![Dimension::User, Dimension::User])
            .validate()
            .is_err());
        assert!(query(0, 5, vec![Dimension::User, Dimension::Model])
            .validate()
            .is_ok());
    }
}
