//! In-memory sums per dimension value for the current days and months (in the configured
//! offset) and for everything retained, so that a budget check is a hash lookup.
//!
//! Bounds: the [`KEPT_PERIODS`] latest days and months seen are kept (an event for an older
//! one counts only in the total); each table holds at most `max_keys` values over all
//! dimensions, and a new value past that counts in its dimension's [`OTHER`] bucket (and in
//! `overflowed`), so [`Aggregates::usage`] of such a value reads zero.

use std::collections::HashMap;

use super::event::{Dimension, SpendEvent, SpendUsage};
use crate::config::BudgetPeriod;
use crate::cost::period::{local_day, local_month};

/// The bucket that counts new values once a table is full.
pub const OTHER: &str = "(other)";
/// Days (and months) kept in memory: today, yesterday and one more for clocks that step.
pub(crate) const KEPT_PERIODS: usize = 3;

/// The sums of one period, per dimension and value.
#[derive(Debug, Default)]
pub(crate) struct Table {
    by_dim: [HashMap<Box<str>, SpendUsage>; Dimension::ALL.len()],
    /// Values held, [`OTHER`] buckets not counted.
    keys: usize,
}

impl Table {
    fn get(&self, dim: Dimension, value: &str) -> Option<&SpendUsage> {
        self.by_dim.get(dim.index())?.get(value)
    }

    /// Adds `event` under each of its values; returns how many new values overflowed.
    fn add_event(&mut self, event: &SpendEvent, max_keys: usize) -> u64 {
        let mut overflowed = 0;
        for dim in Dimension::ALL {
            let Some(value) = event.value(dim) else {
                continue;
            };
            let keys = self.keys;
            let Some(map) = self.by_dim.get_mut(dim.index()) else {
                continue;
            };
            if let Some(usage) = map.get_mut(value) {
                usage.add(event);
                continue;
            }
            let bucket = if keys < max_keys && value != OTHER {
                self.keys += 1;
                value
            } else {
                overflowed += u64::from(value != OTHER);
                OTHER
            };
            map.entry(bucket.into()).or_default().add(event);
        }
        overflowed
    }

    /// Takes `usage` back out of `value` (or of [`OTHER`] when `value` is not held), and
    /// forgets a value whose requests reach zero.
    fn subtract(&mut self, dim: Dimension, value: &str, usage: &SpendUsage) {
        let Some(map) = self.by_dim.get_mut(dim.index()) else {
            return;
        };
        let bucket = if map.contains_key(value) {
            value
        } else {
            OTHER
        };
        let Some(held) = map.get_mut(bucket) else {
            return;
        };
        held.subtract(usage);
        if held.requests == 0 {
            map.remove(bucket);
            if bucket != OTHER {
                self.keys = self.keys.saturating_sub(1);
            }
        }
    }
}

/// The sums, by period: the latest days and months and the total.
#[derive(Debug)]
pub(crate) struct Aggregates {
    utc_offset_s: i32,
    max_keys: usize,
    days: Vec<(i64, Table)>,
    months: Vec<(i64, Table)>,
    total: Table,
    overflowed: u64,
}

impl Aggregates {
    /// Empty sums counting days in `utc_offset_s`, at most `max_keys` values per table.
    pub(crate) fn new(utc_offset_s: i32, max_keys: usize) -> Aggregates {
        Aggregates {
            utc_offset_s,
            max_keys,
            days: Vec::new(),
            months: Vec::new(),
            total: Table::default(),
            overflowed: 0,
        }
    }

    /// Counts one event.
    pub(crate) fn add(&mut self, event: &SpendEvent) {
        let day = local_day(event.ts_ms, self.utc_offset_s);
        let month = local_month(event.ts_ms, self.utc_offset_s);
        let mut overflowed = 0;
        if let Some(table) = period_table(&mut self.days, day) {
            overflowed += table.add_event(event, self.max_keys);
        }
        if let Some(table) = period_table(&mut self.months, month) {
            overflowed += table.add_event(event, self.max_keys);
        }
        overflowed += self.total.add_event(event, self.max_keys);
        if overflowed > 0 && self.overflowed == 0 {
            tracing::warn!(
                max_keys = self.max_keys,
                "spend aggregates are full; new values count in the `(other)` bucket"
            );
        }
        self.overflowed = self.overflowed.saturating_add(overflowed);
    }

    /// Takes sums back out of the total (their events' file was deleted by retention).
    pub(crate) fn subtract_total(&mut self, sums: &HashMap<(Dimension, String), SpendUsage>) {
        for ((dim, value), usage) in sums {
            self.total.subtract(*dim, value, usage);
        }
    }

    /// The sums for `value` of `dim` in the period holding `now_ms` (zero when unknown).
    pub(crate) fn usage(
        &self,
        dim: Dimension,
        value: &str,
        period: BudgetPeriod,
        now_ms: i64,
    ) -> SpendUsage {
        let table = match period {
            BudgetPeriod::Day => find(&self.days, local_day(now_ms, self.utc_offset_s)),
            BudgetPeriod::Month => find(&self.months, local_month(now_ms, self.utc_offset_s)),
            BudgetPeriod::Total => Some(&self.total),
        };
        table
            .and_then(|table| table.get(dim, value))
            .copied()
            .unwrap_or_default()
    }

    /// New values counted in an [`OTHER`] bucket because a table was full.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed
    }
}

fn find(tables: &[(i64, Table)], period: i64) -> Option<&Table> {
    tables
        .iter()
        .find(|(held, _)| *held == period)
        .map(|(_, table)| table)
}

/// The table of `period`, made when missing; `None` when [`KEPT_PERIODS`] later periods
/// are already held (the oldest held one is dropped for a later period).
fn period_table(tables: &mut Vec<(i64, Table)>, period: i64) -> Option<&mut Table> {
    if let Some(at) = tables.iter().position(|(held, _)| *held == period) {
        return tables.get_mut(at).map(|(_, table)| table);
    }
    if tables.len() >= KEPT_PERIODS {
        let (oldest, _) = tables
            .iter()
            .enumerate()
            .min_by_key(|(_, (held, _))| *held)?;
        if tables.get(oldest).is_some_and(|(held, _)| *held > period) {
            return None;
        }
        tables.swap_remove(oldest);
    }
    tables.push((period, Table::default()));
    tables.last_mut().map(|(_, table)| table)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::cost::period::DAY_MS;
    use crate::cost::Usd;

    fn event(ts_ms: i64, user: &str, nanos: Option<i64>) -> SpendEvent {
        SpendEvent {
            ts_ms,
            request_id: "r".into(),
            user: user.into(),
            team: Some("t".into()),
            tier: None,
            feature: None,
            key: "k".into(),
            model: "m".into(),
            provider: "p".into(),
            input_tokens: 10,
            cached_input_tokens: 1,
            cache_write_input_tokens: 0,
            output_tokens: 5,
            cost: nanos.map(Usd::from_nanos),
        }
    }

    #[test]
    fn only_the_latest_days_are_kept_and_older_events_count_in_the_total_only() {
        let mut sums = Aggregates::new(0, 100);
        for day in 0..5 {
            sums.add(&event(day * DAY_MS, "u", Some(1)));
        }
        assert_eq!(sums.days.len(), KEPT_PERIODS);
        sums.add(&event(0, "u", Some(1)));
        let total = sums.usage(Dimension::User, "u", BudgetPeriod::Total, 0);
        assert_eq!(total.requests, 6);
        assert_eq!(
            sums.usage(Dimension::User, "u", BudgetPeriod::Day, 0)
                .requests,
            0
        );
        let last = sums.usage(Dimension::User, "u", BudgetPeriod::Day, 4 * DAY_MS);
        assert_eq!((last.requests, last.cost), (1, Usd(1)));
    }

    #[test]
    fn a_full_table_counts_new_values_in_the_other_bucket() {
        // Each event brings user, team, key, model, provider: 5 values; "u0" fills it.
        let mut sums = Aggregates::new(0, 6);
        sums.add(&event(0, "u0", Some(1)));
        sums.add(&event(0, "u1", Some(2)));
        sums.add(&event(0, "u2", Some(4)));
        assert_eq!(
            sums.usage(Dimension::User, "u1", BudgetPeriod::Day, 0).cost,
            Usd(2)
        );
        assert_eq!(
            sums.usage(Dimension::User, "u2", BudgetPeriod::Day, 0).cost,
            Usd(0)
        );
        assert_eq!(
            sums.usage(Dimension::User, OTHER, BudgetPeriod::Day, 0)
                .cost,
            Usd(4)
        );
        assert_eq!(
            sums.overflowed(),
            3,
            "day, month and total each overflowed once"
        );
    }

    #[test]
    fn unpriced_events_are_counted_apart_from_cost() {
        let mut sums = Aggregates::new(0, 100);
        sums.add(&event(0, "u", None));
        sums.add(&event(0, "u", Some(7)));
        let usage = sums.usage(Dimension::Model, "m", BudgetPeriod::Month, 0);
        assert_eq!(
            (usage.requests, usage.unpriced_requests, usage.cost),
            (2, 1, Usd(7))
        );
    }

    #[test]
    fn subtracting_a_value_to_zero_forgets_it() {
        let mut sums = Aggregates::new(0, 100);
        let e = event(0, "u", Some(3));
        sums.add(&e);
        let mut usage = SpendUsage::default();
        usage.add(&e);
        let removed = HashMap::from([((Dimension::User, "u".to_string()), usage)]);
        sums.subtract_total(&removed);
        assert_eq!(
            sums.usage(Dimension::User, "u", BudgetPeriod::Total, 0),
            SpendUsage::default()
        );
        assert_eq!(sums.total.keys, 4);
    }
}
