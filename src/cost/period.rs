//! Calendar periods of budgets and reports (day, month, total) in a fixed UTC offset.

use chrono::{Datelike, Duration, NaiveDate, TimeZone, Utc};

use crate::config::BudgetPeriod;

/// The local calendar date of `ts_ms` in the offset.
fn local_date(ts_ms: i64, utc_offset_s: i32) -> NaiveDate {
    let shifted = ts_ms.saturating_add(i64::from(utc_offset_s) * 1000);
    Utc.timestamp_millis_opt(shifted)
        .single()
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// Local midnight of `date` as UTC milliseconds.
fn midnight_ms(date: NaiveDate, utc_offset_s: i32) -> i64 {
    let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    Utc.from_utc_datetime(&midnight).timestamp_millis() - i64::from(utc_offset_s) * 1000
}

fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

fn next_month(date: NaiveDate) -> NaiveDate {
    let first = first_of_month(date);
    let (year, month) = if first.month() == 12 {
        (first.year() + 1, 1)
    } else {
        (first.year(), first.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).unwrap_or(first)
}

/// When the period holding `now_ms` started, as UTC ms (`Total`: `i64::MIN`).
pub fn period_start_ms(period: BudgetPeriod, now_ms: i64, utc_offset_s: i32) -> i64 {
    let date = local_date(now_ms, utc_offset_s);
    match period {
        BudgetPeriod::Day => midnight_ms(date, utc_offset_s),
        BudgetPeriod::Month => midnight_ms(first_of_month(date), utc_offset_s),
        BudgetPeriod::Total => i64::MIN,
    }
}

/// When the period holding `now_ms` ends (the next one starts), as UTC ms (`Total`:
/// `i64::MAX`).
pub fn period_end_ms(period: BudgetPeriod, now_ms: i64, utc_offset_s: i32) -> i64 {
    let date = local_date(now_ms, utc_offset_s);
    match period {
        BudgetPeriod::Day => midnight_ms(date + Duration::days(1), utc_offset_s),
        BudgetPeriod::Month => midnight_ms(next_month(date), utc_offset_s),
        BudgetPeriod::Total => i64::MAX,
    }
}

/// `YYYY-MM-DD` of `ts_ms` in the offset.
pub fn day_label(ts_ms: i64, utc_offset_s: i32) -> String {
    local_date(ts_ms, utc_offset_s)
        .format("%Y-%m-%d")
        .to_string()
}

/// `YYYY-MM` of `ts_ms` in the offset.
pub fn month_label(ts_ms: i64, utc_offset_s: i32) -> String {
    local_date(ts_ms, utc_offset_s).format("%Y-%m").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    #[test]
    fn days_and_months_start_at_local_midnight() {
        let now = ms("2026-03-31T23:30:00Z");
        assert_eq!(
            period_start_ms(BudgetPeriod::Day, now, 0),
            ms("2026-03-31T00:00:00Z")
        );
        assert_eq!(
            period_end_ms(BudgetPeriod::Day, now, 0),
            ms("2026-04-01T00:00:00Z")
        );
        // At +02:00 it is already April 1st, 01:30.
        assert_eq!(
            period_start_ms(BudgetPeriod::Day, now, 7200),
            ms("2026-04-01T00:00:00+02:00")
        );
        assert_eq!(
            period_start_ms(BudgetPeriod::Month, now, 7200),
            ms("2026-04-01T00:00:00+02:00")
        );
        assert_eq!(
            period_end_ms(BudgetPeriod::Month, ms("2026-12-15T00:00:00Z"), 0),
            ms("2027-01-01T00:00:00Z")
        );
        assert_eq!(day_label(now, -3600), "2026-03-31");
        assert_eq!(month_label(ms("2028-02-29T12:00:00Z"), 0), "2028-02");
        assert_eq!(period_start_ms(BudgetPeriod::Total, now, 0), i64::MIN);
    }
}
