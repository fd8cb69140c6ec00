//! Calendar periods in a fixed UTC offset: where the day or month holding an instant starts
//! and ends, and their labels (`2024-02-29`, `2024-02`).
//!
//! Budgets and spend reports count days and months in `[cost] timezone`, which is UTC or a
//! fixed offset (no daylight-saving rules). Instants are Unix milliseconds (UTC); an offset
//! is seconds east of UTC. Everything is integer arithmetic on day numbers (the civil
//! calendar algorithms of Howard Hinnant's `chrono`-compatible date library), so the hot
//! path neither allocates nor fails; saturating at the ends of the `i64` range.

use crate::config::BudgetPeriod;

/// Milliseconds in a day.
pub(crate) const DAY_MS: i64 = 86_400_000;

/// The start of the period holding `now_ms` in the fixed offset `utc_offset_s`, as UTC
/// milliseconds: local midnight for `Day`, local midnight of the 1st for `Month`, and
/// `i64::MIN` for `Total` (everything).
pub fn period_start_ms(period: BudgetPeriod, now_ms: i64, utc_offset_s: i32) -> i64 {
    match period {
        BudgetPeriod::Day => day_start_ms(local_day(now_ms, utc_offset_s), utc_offset_s),
        BudgetPeriod::Month => {
            let month = local_month(now_ms, utc_offset_s);
            day_start_ms(month_first_day(month), utc_offset_s)
        }
        BudgetPeriod::Total => i64::MIN,
    }
}

/// The end (exclusive) of the period holding `now_ms`: the start of the next day or month
/// in the offset, as UTC milliseconds; `i64::MAX` for `Total`.
pub fn period_end_ms(period: BudgetPeriod, now_ms: i64, utc_offset_s: i32) -> i64 {
    match period {
        BudgetPeriod::Day => day_start_ms(
            local_day(now_ms, utc_offset_s).saturating_add(1),
            utc_offset_s,
        ),
        BudgetPeriod::Month => {
            let month = local_month(now_ms, utc_offset_s);
            day_start_ms(month_first_day(month.saturating_add(1)), utc_offset_s)
        }
        BudgetPeriod::Total => i64::MAX,
    }
}

/// The local date of `ts_ms` in the offset, as `YYYY-MM-DD`.
pub fn day_label(ts_ms: i64, utc_offset_s: i32) -> String {
    day_number_label(local_day(ts_ms, utc_offset_s))
}

/// The local month of `ts_ms` in the offset, as `YYYY-MM`.
pub fn month_label(ts_ms: i64, utc_offset_s: i32) -> String {
    month_number_label(local_month(ts_ms, utc_offset_s))
}

/// Days since 1970-01-01 of the local date of `ts_ms` in the offset.
pub(crate) fn local_day(ts_ms: i64, utc_offset_s: i32) -> i64 {
    ts_ms
        .saturating_add(i64::from(utc_offset_s) * 1000)
        .div_euclid(DAY_MS)
}

/// Months since 1970-01 (`year * 12 + month - 1 - 1970 * 12`) of the local month of
/// `ts_ms` in the offset.
pub(crate) fn local_month(ts_ms: i64, utc_offset_s: i32) -> i64 {
    let (year, month, _) = civil_from_days(local_day(ts_ms, utc_offset_s));
    (year - 1970) * 12 + i64::from(month) - 1
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub(crate) fn day_number_label(day: i64) -> String {
    let (year, month, day) = civil_from_days(day);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `YYYY-MM` of a month number (months since 1970-01).
pub(crate) fn month_number_label(month: i64) -> String {
    let year = 1970 + month.div_euclid(12);
    let month = month.rem_euclid(12) + 1;
    format!("{year:04}-{month:02}")
}

/// The day number of `YYYY-MM-DD` (four-digit year), if it is a real date.
pub(crate) fn parse_day_label(label: &str) -> Option<i64> {
    let bytes = label.as_bytes();
    if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let text = label.get(range)?;
        text.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let month = u32::try_from(month).ok().filter(|m| (1..=12).contains(m))?;
    let day = u32::try_from(day).ok()?;
    let days = days_from_civil(year, month, day);
    // Round-trips only for a day that exists (rejects 2023-02-29, 2024-04-31).
    (civil_from_days(days) == (year, month, day)).then_some(days)
}

/// UTC milliseconds of local midnight starting day number `day` in the offset.
fn day_start_ms(day: i64, utc_offset_s: i32) -> i64 {
    day.saturating_mul(DAY_MS)
        .saturating_sub(i64::from(utc_offset_s) * 1000)
}

/// The day number of the 1st of month number `month`.
fn month_first_day(month: i64) -> i64 {
    let year = 1970 + month.div_euclid(12);
    // rem_euclid(12) + 1 is in 1..=12.
    let month = u32::try_from(month.rem_euclid(12) + 1).unwrap_or(1);
    days_from_civil(year, month, 1)
}

/// (year, month 1..=12, day 1..=31) of a day number (days since 1970-01-01), proleptic
/// Gregorian. Hinnant's `civil_from_days`.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// The day number (days since 1970-01-01) of a proleptic Gregorian date. Hinnant's
/// `days_from_civil`; `day` may run past the month's end (it counts on).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400); // [0, 399]
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 }; // [0, 11]
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, TimeZone, Utc};
    use proptest::prelude::*;

    fn ms(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn utc_day_and_month_bounds() {
        let now = ms(2024, 5, 17, 13, 45);
        assert_eq!(
            period_start_ms(BudgetPeriod::Day, now, 0),
            ms(2024, 5, 17, 0, 0)
        );
        assert_eq!(
            period_end_ms(BudgetPeriod::Day, now, 0),
            ms(2024, 5, 18, 0, 0)
        );
        assert_eq!(
            period_start_ms(BudgetPeriod::Month, now, 0),
            ms(2024, 5, 1, 0, 0)
        );
        assert_eq!(
            period_end_ms(BudgetPeriod::Month, now, 0),
            ms(2024, 6, 1, 0, 0)
        );
        assert_eq!(period_start_ms(BudgetPeriod::Total, now, 0), i64::MIN);
        assert_eq!(period_end_ms(BudgetPeriod::Total, now, 0), i64::MAX);
    }

    #[test]
    fn positive_offset_moves_the_day_forward_across_utc_midnight() {
        // 22:30 UTC on the 17th is 00:30 on the 18th at +02:00.
        let now = ms(2024, 5, 17, 22, 30);
        let start = period_start_ms(BudgetPeriod::Day, now, 7200);
        assert_eq!(start, ms(2024, 5, 17, 22, 0));
        assert_eq!(
            period_end_ms(BudgetPeriod::Day, now, 7200),
            ms(2024, 5, 18, 22, 0)
        );
        assert_eq!(day_label(now, 7200), "2024-05-18");
        assert_eq!(day_label(now, 0), "2024-05-17");
    }

    #[test]
    fn negative_offset_keeps_the_previous_day_after_utc_midnight() {
        // 03:00 UTC on the 1st of June is 21:30 on the 31st of May at -05:30.
        let now = ms(2024, 6, 1, 3, 0);
        assert_eq!(day_label(now, -19_800), "2024-05-31");
        assert_eq!(month_label(now, -19_800), "2024-05");
        assert_eq!(month_label(now, 0), "2024-06");
        assert_eq!(
            period_start_ms(BudgetPeriod::Month, now, -19_800),
            ms(2024, 5, 1, 5, 30)
        );
        assert_eq!(
            period_end_ms(BudgetPeriod::Month, now, -19_800),
            ms(2024, 6, 1, 5, 30)
        );
    }

    #[test]
    fn month_ends_follow_leap_years() {
        let feb_2024 = ms(2024, 2, 29, 12, 0);
        assert_eq!(day_label(feb_2024, 0), "2024-02-29");
        assert_eq!(
            period_end_ms(BudgetPeriod::Month, feb_2024, 0),
            ms(2024, 3, 1, 0, 0)
        );
        let feb_2023 = ms(2023, 2, 28, 12, 0);
        assert_eq!(
            period_end_ms(BudgetPeriod::Day, feb_2023, 0),
            ms(2023, 3, 1, 0, 0)
        );
        let feb_1900 = ms(1900, 2, 28, 12, 0);
        assert_eq!(
            period_end_ms(BudgetPeriod::Day, feb_1900, 0),
            ms(1900, 3, 1, 0, 0),
            "1900 is not a leap year"
        );
        let feb_2000 = ms(2000, 2, 28, 12, 0);
        assert_eq!(day_label(feb_2000 + DAY_MS, 0), "2000-02-29");
        let december = ms(2024, 12, 31, 23, 59);
        assert_eq!(
            period_end_ms(BudgetPeriod::Month, december, 0),
            ms(2025, 1, 1, 0, 0)
        );
        assert_eq!(month_label(december, 3600), "2025-01");
    }

    #[test]
    fn labels_parse_back_only_for_real_dates() {
        assert_eq!(parse_day_label("1970-01-01"), Some(0));
        assert_eq!(parse_day_label("2024-02-29"), Some(19_782));
        assert_eq!(parse_day_label("2023-02-29"), None);
        assert_eq!(parse_day_label("2024-04-31"), None);
        assert_eq!(parse_day_label("2024-13-01"), None);
        assert_eq!(parse_day_label("2024-1-01"), None);
        assert_eq!(parse_day_label("+024-01-01"), None);
        assert_eq!(month_number_label(-1), "1969-12");
    }

    #[test]
    fn extreme_instants_saturate_instead_of_overflowing() {
        for now in [i64::MIN, i64::MAX, 0, -1] {
            for period in [BudgetPeriod::Day, BudgetPeriod::Month] {
                let start = period_start_ms(period, now, 50_400);
                let end = period_end_ms(period, now, -50_400);
                assert!(start <= end || now == i64::MIN || now == i64::MAX);
            }
        }
    }

    proptest! {
        #[test]
        fn periods_agree_with_chrono(
            now in -2_000_000_000_000i64..10_000_000_000_000,
            offset_min in -14 * 60i32..=14 * 60,
        ) {
            let offset = offset_min * 60;
            let zone = chrono::FixedOffset::east_opt(offset).unwrap();
            let local = zone.timestamp_millis_opt(now).unwrap();
            prop_assert_eq!(day_label(now, offset), local.format("%Y-%m-%d").to_string());
            prop_assert_eq!(month_label(now, offset), local.format("%Y-%m").to_string());
            let midnight = local.date_naive().and_hms_opt(0, 0, 0).unwrap();
            let day_start = zone.from_local_datetime(&midnight).unwrap().timestamp_millis();
            prop_assert_eq!(period_start_ms(BudgetPeriod::Day, now, offset), day_start);
            prop_assert_eq!(period_end_ms(BudgetPeriod::Day, now, offset), day_start + DAY_MS);
            let first = NaiveDate::from_ymd_opt(local.year(), local.month(), 1).unwrap();
            let month_start = zone
                .from_local_datetime(&first.and_hms_opt(0, 0, 0).unwrap())
                .unwrap()
                .timestamp_millis();
            prop_assert_eq!(period_start_ms(BudgetPeriod::Month, now, offset), month_start);
            let start = period_start_ms(BudgetPeriod::Month, now, offset);
            let end = period_end_ms(BudgetPeriod::Month, now, offset);
            prop_assert!(start <= now && now < end);
            prop_assert_eq!(month_label(end, offset) > month_label(now, offset), true);
            prop_assert_eq!(month_label(end - 1, offset), month_label(now, offset));
        }
    }
}
