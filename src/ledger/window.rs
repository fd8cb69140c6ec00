//! One smooth window: a token bucket whose capacity is the per-window limit and which
//! refills continuously (capacity per period), never a fixed window that admits 2× at its
//! edge. A limit of N admits exactly N in a burst and refuses N+1; after half the period,
//! half the capacity is back.
//!
//! The level is kept exactly in integer "token·nanoseconds per period" units
//! (`tokens × period_ns`), so refill adds `capacity` units per nanosecond and every wait is
//! exact to the nanosecond, with no floating-point drift.

use std::time::Duration;

use tokio::time::Instant;

/// Whether a demand can be taken from a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Enough is available now.
    Now,
    /// Enough will have refilled after exactly this long (if nothing else takes it).
    After(Duration),
    /// The demand is larger than the whole capacity: no wait helps.
    Never,
}

/// A smooth window (token bucket with continuous refill) over one resource.
#[derive(Debug, Clone)]
pub struct SmoothWindow {
    capacity: u64,
    period_ns: i128,
    /// Available amount in `tokens × period_ns`; may be negative after a charge.
    level: i128,
    /// When `level` was last brought up to date.
    last: Instant,
}

impl SmoothWindow {
    /// A full window of `capacity` per `period` (a zero period is treated as one
    /// nanosecond).
    pub fn new(capacity: u64, period: Duration, now: Instant) -> Self {
        let period_ns = i128::try_from(period.as_nanos())
            .unwrap_or(i128::MAX)
            .max(1);
        SmoothWindow {
            capacity,
            period_ns,
            level: i128::from(capacity).saturating_mul(period_ns),
            last: now,
        }
    }

    /// The limit: what a full window holds.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn full(&self) -> i128 {
        i128::from(self.capacity).saturating_mul(self.period_ns)
    }

    fn units(&self, amount: u64) -> i128 {
        i128::from(amount).saturating_mul(self.period_ns)
    }

    /// The level at `now`, refilled but not stored.
    fn level_at(&self, now: Instant) -> i128 {
        let full = self.full();
        if self.level >= full {
            return full;
        }
        let elapsed = i128::try_from(now.saturating_duration_since(self.last).as_nanos())
            .unwrap_or(i128::MAX);
        self.level
            .saturating_add(elapsed.saturating_mul(i128::from(self.capacity)))
            .min(full)
    }

    fn refill(&mut self, now: Instant) {
        self.level = self.level_at(now);
        if now > self.last {
            self.last = now;
        }
    }

    /// Whether `amount` could be taken at `now`, and if not, the exact wait.
    pub fn check(&self, amount: u64, now: Instant) -> Admit {
        if amount > self.capacity {
            return Admit::Never;
        }
        let need = self.units(amount).saturating_sub(self.level_at(now));
        if need <= 0 {
            return Admit::Now;
        }
        if self.capacity == 0 {
            // Only a debt with a zero limit: it never refills.
            return Admit::Never;
        }
        let rate = i128::from(self.capacity);
        let nanos = (need + rate - 1) / rate;
        Admit::After(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Take `amount` at `now` (after [`check`](Self::check) said `Now`; taking more than
    /// is available leaves the window in debt).
    pub fn take(&mut self, amount: u64, now: Instant) {
        self.refill(now);
        self.level = self.level.saturating_sub(self.units(amount));
    }

    /// Replace a reservation of `reserved` with the real figure `actual`: refund the
    /// difference (never above capacity) or charge it (the window may go negative). Returns
    /// whether capacity was given back.
    pub fn settle(&mut self, reserved: u64, actual: u64, now: Instant) -> bool {
        self.refill(now);
        if actual >= reserved {
            self.level = self.level.saturating_sub(self.units(actual - reserved));
            false
        } else {
            let before = self.level;
            self.level = self
                .level
                .saturating_add(self.units(reserved - actual))
                .min(self.full());
            self.level > before
        }
    }

    /// A new limit for the window: what is used so far stays used (clamped to the new
    /// capacity), and refill continues at the new rate.
    pub fn set_capacity(&mut self, capacity: u64, now: Instant) {
        if capacity == self.capacity {
            return;
        }
        self.refill(now);
        self.capacity = capacity;
        self.level = self.level.min(self.full());
    }

    /// Whole units available at `now` (rounded down; negative while in debt).
    pub fn available(&self, now: Instant) -> i64 {
        let level = self.level_at(now);
        let whole = level.div_euclid(self.period_ns);
        i64::try_from(whole).unwrap_or(if whole < 0 { i64::MIN } else { i64::MAX })
    }

    /// How long until the window is full again (zero when it is).
    pub fn resets_in(&self, now: Instant) -> Duration {
        match self.check(self.capacity, now) {
            Admit::Now | Admit::Never => Duration::ZERO,
            Admit::After(wait) => wait,
        }
    }

    /// Whether the window is full at `now`, i.e. indistinguishable from a new one.
    pub fn is_full(&self, now: Instant) -> bool {
        self.level_at(now) >= self.full()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn limit_of_n_admits_exactly_n_in_a_burst_and_refuses_n_plus_one() {
        let now = Instant::now();
        let mut window = SmoothWindow::new(10, MINUTE, now);
        for _ in 0..10 {
            assert_eq!(window.check(1, now), Admit::Now);
            window.take(1, now);
        }
        assert!(matches!(window.check(1, now), Admit::After(_)));
        let fresh = SmoothWindow::new(10, MINUTE, now);
        assert_eq!(fresh.check(10, now), Admit::Now);
        assert_eq!(fresh.check(11, now), Admit::Never);
    }

    #[test]
    fn refill_is_smooth_half_back_after_half_the_period() {
        let start = Instant::now();
        let mut window = SmoothWindow::new(1000, MINUTE, start);
        window.take(1000, start);
        let half = start + Duration::from_secs(30);
        assert_eq!(window.available(half), 500);
        assert_eq!(window.check(500, half), Admit::Now);
        assert!(matches!(window.check(501, half), Admit::After(_)));
        // Nothing jumps back at the minute boundary beyond the smooth refill.
        let just_before = start + MINUTE - Duration::from_millis(60);
        assert_eq!(window.available(just_before), 999);
        assert_eq!(window.available(start + MINUTE), 1000);
        assert_eq!(window.available(start + 10 * MINUTE), 1000);
    }

    #[test]
    fn no_double_burst_at_the_minute_edge() {
        let start = Instant::now();
        let mut window = SmoothWindow::new(100, MINUTE, start);
        let edge = start + MINUTE - Duration::from_millis(1);
        window.take(100, edge);
        // A fixed window would admit another 100 right after the boundary.
        let after_edge = start + MINUTE + Duration::from_millis(1);
        assert_eq!(window.available(after_edge), 0);
        assert!(matches!(window.check(2, after_edge), Admit::After(_)));
    }

    #[test]
    fn retry_after_is_exact_to_the_nanosecond() {
        let start = Instant::now();
        let mut window = SmoothWindow::new(60, MINUTE, start);
        window.take(60, start);
        // One token per second refills: 7 tokens need exactly 7 s.
        let Admit::After(wait) = window.check(7, start) else {
            panic!("expected a wait");
        };
        assert_eq!(wait, Duration::from_secs(7));
        assert_eq!(window.check(7, start + wait), Admit::Now);
        assert!(matches!(
            window.check(7, start + wait - Duration::from_nanos(1)),
            Admit::After(d) if d == Duration::from_nanos(1)
        ));
        // A rate that does not divide evenly rounds the wait up, never down.
        let mut odd = SmoothWindow::new(7, MINUTE, start);
        odd.take(7, start);
        let Admit::After(wait) = odd.check(1, start) else {
            panic!("expected a wait");
        };
        assert_eq!(wait, Duration::from_nanos(8_571_428_572));
        assert_eq!(odd.check(1, start + wait), Admit::Now);
        assert!(matches!(
            odd.check(1, start + wait - Duration::from_nanos(1)),
            Admit::After(_)
        ));
    }

    #[test]
    fn demand_larger_than_capacity_is_never_admitted() {
        let now = Instant::now();
        let window = SmoothWindow::new(100, MINUTE, now);
        assert_eq!(window.check(101, now), Admit::Never);
        let zero = SmoothWindow::new(0, MINUTE, now);
        assert_eq!(zero.check(1, now), Admit::Never);
        assert_eq!(zero.check(0, now), Admit::Now);
    }

    #[test]
    fn settle_refunds_unused_reservation() {
        let now = Instant::now();
        let mut window = SmoothWindow::new(100, MINUTE, now);
        window.take(80, now);
        assert!(window.settle(80, 30, now));
        assert_eq!(window.available(now), 70);
        // A refund never lifts the window above its capacity.
        let later = now + MINUTE;
        window.take(10, later);
        assert!(window.settle(50, 0, later));
        assert_eq!(window.available(later), 100);
    }

    #[test]
    fn settle_charges_overage_and_debt_makes_later_requests_wait_longer() {
        let now = Instant::now();
        let mut window = SmoothWindow::new(60, MINUTE, now);
        window.take(60, now);
        assert!(!window.settle(60, 90, now));
        assert_eq!(window.available(now), -30);
        // 30 tokens of debt plus 1 token: 31 s at one token per second.
        assert_eq!(window.check(1, now), Admit::After(Duration::from_secs(31)));
        assert_eq!(window.resets_in(now), Duration::from_secs(90));
    }

    #[test]
    fn lowering_the_capacity_keeps_usage_and_refills_at_the_new_rate() {
        let now = Instant::now();
        let mut window = SmoothWindow::new(100, MINUTE, now);
        window.take(10, now);
        window.set_capacity(50, now);
        assert_eq!(window.available(now), 50);
        window.take(50, now);
        assert_eq!(
            window.available(now + Duration::from_secs(30)),
            25,
            "refills at 50 per minute"
        );
    }

    #[test]
    fn full_window_reports_no_reset_and_is_full() {
        let now = Instant::now();
        let mut window = SmoothWindow::new(10, MINUTE, now);
        assert!(window.is_full(now));
        assert_eq!(window.resets_in(now), Duration::ZERO);
        window.take(1, now);
        assert!(!window.is_full(now));
        assert_eq!(window.resets_in(now), Duration::from_secs(6));
        assert!(window.is_full(now + Duration::from_secs(6)));
    }
}
