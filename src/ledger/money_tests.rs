#![allow(clippy::unwrap_used)]

use super::*;

const DAY_MS: i64 = 86_400_000;
/// 2026-12-01T12:00:00Z
const NOON: i64 = 1_796_126_400_000;

fn usd(dollars: f64) -> Usd {
    Usd::from_dollars(dollars).unwrap()
}

fn daily(key: &str, limit: f64) -> MoneyLimit {
    MoneyLimit {
        key: BucketKey::from(key),
        limit: usd(limit),
        period: BudgetPeriod::Day,
    }
}

#[test]
fn a_reservation_that_would_pass_the_limit_is_refused_and_names_the_budget() {
    let ledger = MoneyLedger::new(4, 100, 0);
    let limits = [daily("team:team=a", 1.0), daily("user:user=x", 0.25)];
    let first = ledger.reserve(&limits, usd(0.2), true, NOON).unwrap();
    match ledger.reserve(&limits, usd(0.1), true, NOON) {
        Err(MoneyRefusal::Exceeded(status)) => {
            assert_eq!(status.key.as_str(), "user:user=x");
            assert_eq!(status.reserved, usd(0.2));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Nothing was taken from the team budget by the refused request.
    let team = &ledger.status(&limits[..1], NOON)[0];
    assert_eq!(team.reserved, usd(0.2));
    ledger.settle(first, usd(0.05), NOON);
    let status = ledger.status(&limits, NOON);
    assert_eq!(status[0].spent, usd(0.05));
    assert_eq!(status[0].reserved, Usd::ZERO);
    assert_eq!(status[1].remaining(), usd(0.2));
    assert!(ledger.reserve(&limits, usd(0.1), true, NOON).is_ok());
}

#[test]
fn concurrent_reservations_never_take_a_budget_past_its_limit() {
    let ledger = std::sync::Arc::new(MoneyLedger::new(8, 100, 0));
    let limits = vec![daily("b", 1.0)];
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            let limits = limits.clone();
            std::thread::spawn(move || {
                (0..100)
                    .filter_map(|_| ledger.reserve(&limits, usd(0.01), true, NOON).ok())
                    .count()
            })
        })
        .collect();
    let granted: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(granted, 100);
    assert_eq!(ledger.status(&limits, NOON)[0].reserved, usd(1.0));
}

#[test]
fn without_enforcement_the_reservation_is_counted_past_the_limit() {
    let ledger = MoneyLedger::new(1, 100, 0);
    let limits = [daily("b", 0.01)];
    let held = ledger.reserve(&limits, usd(0.05), false, NOON).unwrap();
    let status = &ledger.status(&limits, NOON)[0];
    assert!(status.pct() > 100.0);
    assert!(status.remaining() < Usd::ZERO);
    ledger.settle(held, usd(0.02), NOON);
}

#[test]
fn a_new_day_starts_from_zero_but_keeps_what_is_in_flight() {
    let ledger = MoneyLedger::new(1, 100, 0);
    let limits = [daily("b", 1.0)];
    ledger.settle(
        ledger.reserve(&limits, usd(0.9), true, NOON).unwrap(),
        usd(0.9),
        NOON,
    );
    assert!(ledger.reserve(&limits, usd(0.2), true, NOON).is_err());
    let held = ledger.reserve(&limits, usd(0.05), true, NOON).unwrap();
    let tomorrow = NOON + DAY_MS;
    let status = &ledger.status(&limits, tomorrow)[0];
    assert_eq!(status.spent, Usd::ZERO);
    assert_eq!(status.reserved, usd(0.05));
    ledger.settle(held, usd(0.01), tomorrow);
    assert_eq!(ledger.status(&limits, tomorrow)[0].spent, usd(0.01));
}

#[test]
fn restored_spend_counts_only_inside_the_current_period() {
    let ledger = MoneyLedger::new(2, 100, 0);
    let limit = daily("b", 1.0);
    // NOON is December 1st: ten days later, yesterday is in this month but not today.
    let now = NOON + 10 * DAY_MS;
    ledger.restore(&limit, now - DAY_MS, usd(0.5), now);
    ledger.restore(&limit, now - 3_600_000, usd(0.25), now);
    ledger.restore(&limit, now + 1, usd(8.0), now);
    let month = MoneyLimit {
        period: BudgetPeriod::Month,
        key: BucketKey::from("m"),
        ..limit.clone()
    };
    ledger.restore(&month, now - DAY_MS, usd(0.5), now);
    ledger.restore(&month, NOON - DAY_MS, usd(2.0), now);
    assert_eq!(ledger.status(&[limit], now)[0].spent, usd(0.25));
    assert_eq!(ledger.status(&[month], now)[0].spent, usd(0.5));
}

#[test]
fn idle_buckets_of_past_periods_are_evicted_and_the_cap_holds() {
    let ledger = MoneyLedger::new(2, 2, 0);
    for key in ["a", "b"] {
        let held = ledger
            .reserve(&[daily(key, 1.0)], usd(0.1), true, NOON)
            .unwrap();
        ledger.settle(held, usd(0.1), NOON);
    }
    assert!(matches!(
        ledger.reserve(&[daily("c", 1.0)], usd(0.1), true, NOON),
        Err(MoneyRefusal::BucketCap { cap: 2 })
    ));
    assert_eq!(ledger.evict_idle(NOON), 0, "spend this period is kept");
    assert_eq!(ledger.evict_idle(NOON + DAY_MS), 2);
    assert!(ledger
        .reserve(&[daily("c", 1.0)], usd(0.1), true, NOON + DAY_MS)
        .is_ok());
    assert_eq!(ledger.len(), 1);
}
