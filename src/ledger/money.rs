//! Budgets on the ledger: money buckets over calendar periods (DESIGN.md, "Admission and
//! settlement"). A bucket is keyed like a rate-limit bucket (`team-daily:team=support`) and
//! holds, for its current period, the settled spend and what requests in flight reserved.
//!
//! Admission reserves a request's worst-case cost on every budget it matches, all or none
//! ([`MoneyLedger::reserve`]); settlement replaces the reservation with the real cost
//! ([`MoneyLedger::settle`]). With `enforce`, a reservation that would take any bucket past
//! its limit is refused, so concurrent requests can overshoot a budget by no more than the
//! difference between what the requests in flight reserved and what they really cost, which
//! is never positive when the reservation is a true worst case.
//!
//! A bucket's period rolls over on first use after it ended: its spend starts again from
//! zero, while the reservations in flight stay counted (they settle into the new period).
//! Money is integer nano-dollars ([`Usd`]).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::BucketKey;
use crate::config::BudgetPeriod;
use crate::cost::period::{period_end_ms, period_start_ms};
use crate::cost::Usd;

/// One budget a request counts against: its bucket key, limit and period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyLimit {
    /// The bucket (`{budget name}:{field}={value}…`).
    pub key: BucketKey,
    /// The hard limit.
    pub limit: Usd,
    /// The calendar period it counts over.
    pub period: BudgetPeriod,
}

/// A money bucket as seen now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoneyStatus {
    /// The bucket.
    pub key: BucketKey,
    /// Its hard limit.
    pub limit: Usd,
    /// Its period.
    pub period: BudgetPeriod,
    /// Settled spend in the current period.
    pub spent: Usd,
    /// Reserved by requests in flight.
    pub reserved: Usd,
    /// When the current period ends (UTC ms; `i64::MAX` for `total`).
    pub period_end_ms: i64,
}

impl MoneyStatus {
    /// What is left: limit − spent − reserved (negative when over).
    pub fn remaining(&self) -> Usd {
        self.limit - self.spent - self.reserved
    }

    /// (spent + reserved) / limit, in percent (100 for a zero limit).
    pub fn pct(&self) -> f64 {
        let used = (self.spent + self.reserved).nanos();
        if self.limit.nanos() <= 0 {
            return 100.0;
        }
        used as f64 * 100.0 / self.limit.nanos() as f64
    }
}

/// The handle of a money reservation: settle it exactly once.
#[must_use = "a money reservation must be settled, or its amount stays reserved"]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MoneyReservation {
    keys: Vec<BucketKey>,
    amount: Usd,
}

impl MoneyReservation {
    /// What was reserved on each bucket.
    pub fn amount(&self) -> Usd {
        self.amount
    }

    /// The buckets it was reserved on.
    pub fn keys(&self) -> &[BucketKey] {
        &self.keys
    }
}

/// Why a reservation was refused; nothing was taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyRefusal {
    /// This budget (the first, in the request's order, whose limit it would pass) is spent.
    #[error("budget `{}` exceeded", .0.key)]
    Exceeded(MoneyStatus),
    /// The request would create buckets beyond the configured cap.
    #[error("too many live budget buckets (cap {cap})")]
    BucketCap {
        /// The configured cap.
        cap: usize,
    },
}

#[derive(Debug)]
struct Bucket {
    limit: Usd,
    period: BudgetPeriod,
    period_start_ms: i64,
    period_end_ms: i64,
    spent: Usd,
    reserved: Usd,
}

impl Bucket {
    fn new(limit: &MoneyLimit, now_ms: i64, offset_s: i32) -> Bucket {
        Bucket {
            limit: limit.limit,
            period: limit.period,
            period_start_ms: period_start_ms(limit.period, now_ms, offset_s),
            period_end_ms: period_end_ms(limit.period, now_ms, offset_s),
            spent: Usd::ZERO,
            reserved: Usd::ZERO,
        }
    }

    /// Bring the period and limit up to date (a config reload may change either).
    fn refresh(&mut self, limit: &MoneyLimit, now_ms: i64, offset_s: i32) {
        self.limit = limit.limit;
        if self.period != limit.period {
            self.period = limit.period;
            self.period_start_ms = i64::MAX; // forces the roll below
        }
        if now_ms >= self.period_end_ms || now_ms < self.period_start_ms {
            self.period_start_ms = period_start_ms(self.period, now_ms, offset_s);
            self.period_end_ms = period_end_ms(self.period, now_ms, offset_s);
            self.spent = Usd::ZERO;
        }
    }

    fn status(&self, key: &BucketKey) -> MoneyStatus {
        MoneyStatus {
            key: key.clone(),
            limit: self.limit,
            period: self.period,
            spent: self.spent,
            reserved: self.reserved,
            period_end_ms: self.period_end_ms,
        }
    }

    fn is_idle(&self, now_ms: i64) -> bool {
        self.reserved == Usd::ZERO && (self.spent == Usd::ZERO || now_ms >= self.period_end_ms)
    }
}

type Shard = HashMap<BucketKey, Bucket>;

/// The in-process money ledger: buckets in shards of `Mutex<HashMap>` chosen by key hash; a
/// reservation locks the shards it touches in index order (no deadlock), checks every
/// bucket, then takes from all of them.
#[derive(Debug)]
pub struct MoneyLedger {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    live: AtomicUsize,
    max_buckets: usize,
    utc_offset_s: i32,
}

impl MoneyLedger {
    /// A ledger of `shards` shards holding at most `max_buckets` live buckets, whose days and
    /// months start at midnight `utc_offset_s` seconds east of UTC.
    pub fn new(shards: usize, max_buckets: usize, utc_offset_s: i32) -> MoneyLedger {
        MoneyLedger {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
            live: AtomicUsize::new(0),
            max_buckets,
            utc_offset_s,
        }
    }

    fn shard_of(&self, key: &BucketKey) -> usize {
        (self.hasher.hash_one(key) as usize) % self.shards.len()
    }

    fn lock(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Lock every shard `keys` touch, in index order.
    fn lock_all<'a>(
        &'a self,
        keys: impl Iterator<Item = &'a BucketKey>,
    ) -> Vec<(usize, MutexGuard<'a, Shard>)> {
        let mut indexes: Vec<usize> = keys.map(|k| self.shard_of(k)).collect();
        indexes.sort_unstable();
        indexes.dedup();
        indexes.into_iter().map(|i| (i, self.lock(i))).collect()
    }

    /// The buckets as seen now (a bucket never used shows zero spend), in `limits` order.
    pub fn status(&self, limits: &[MoneyLimit], now_ms: i64) -> Vec<MoneyStatus> {
        limits
            .iter()
            .map(|limit| {
                let mut shard = self.lock(self.shard_of(&limit.key));
                match shard.get_mut(&limit.key) {
                    Some(bucket) => {
                        bucket.refresh(limit, now_ms, self.utc_offset_s);
                        bucket.status(&limit.key)
                    }
                    None => Bucket::new(limit, now_ms, self.utc_offset_s).status(&limit.key),
                }
            })
            .collect()
    }

    /// Reserve `amount` on every bucket of `limits`, all or none. With `enforce`, refuse when
    /// any bucket's spent + reserved + `amount` would pass its limit (naming the first such
    /// bucket); without it, always reserve (the policy's hook decided to serve).
    pub fn reserve(
        &self,
        limits: &[MoneyLimit],
        amount: Usd,
        enforce: bool,
        now_ms: i64,
    ) -> Result<MoneyReservation, MoneyRefusal> {
        self.reserve_and_read(limits, amount, enforce, now_ms)
            .map(|(reservation, _)| reservation)
    }

    /// [`reserve`](Self::reserve), also answering each bucket as it was just before this
    /// reservation (in `limits` order, a key named twice once): one pass over the buckets
    /// where a [`status`](Self::status) call and a reservation would take two.
    pub fn reserve_and_read(
        &self,
        limits: &[MoneyLimit],
        amount: Usd,
        enforce: bool,
        now_ms: i64,
    ) -> Result<(MoneyReservation, Vec<MoneyStatus>), MoneyRefusal> {
        let mut guards = self.lock_all(limits.iter().map(|l| &l.key));
        let shard_of = |key: &BucketKey| self.shard_of(key);
        let mut created = 0usize;
        for limit in limits {
            let index = shard_of(&limit.key);
            let Some((_, shard)) = guards.iter_mut().find(|(i, _)| *i == index) else {
                continue;
            };
            match shard.get_mut(&limit.key) {
                Some(bucket) => {
                    bucket.refresh(limit, now_ms, self.utc_offset_s);
                    if enforce && bucket.spent + bucket.reserved + amount > bucket.limit {
                        return Err(MoneyRefusal::Exceeded(bucket.status(&limit.key)));
                    }
                }
                None => {
                    if enforce && amount > limit.limit {
                        let bucket = Bucket::new(limit, now_ms, self.utc_offset_s);
                        return Err(MoneyRefusal::Exceeded(bucket.status(&limit.key)));
                    }
                    created += 1;
                }
            }
        }
        if created > 0 {
            let live = self.live.fetch_add(created, Ordering::AcqRel);
            if live + created > self.max_buckets {
                self.live.fetch_sub(created, Ordering::AcqRel);
                return Err(MoneyRefusal::BucketCap {
                    cap: self.max_buckets,
                });
            }
        }
        let mut keys = Vec::with_capacity(limits.len());
        let mut before = Vec::with_capacity(limits.len());
        for limit in limits {
            if keys.contains(&limit.key) {
                continue;
            }
            let index = shard_of(&limit.key);
            let Some((_, shard)) = guards.iter_mut().find(|(i, _)| *i == index) else {
                continue;
            };
            let bucket = shard
                .entry(limit.key.clone())
                .or_insert_with(|| Bucket::new(limit, now_ms, self.utc_offset_s));
            before.push(bucket.status(&limit.key));
            bucket.reserved += amount;
            keys.push(limit.key.clone());
        }
        Ok((MoneyReservation { keys, amount }, before))
    }

    /// Replace a reservation with the real cost: the reserved amount is released and `actual`
    /// is added to each bucket's current period.
    pub fn settle(&self, reservation: MoneyReservation, actual: Usd, now_ms: i64) {
        for key in &reservation.keys {
            let mut shard = self.lock(self.shard_of(key));
            if let Some(bucket) = shard.get_mut(key) {
                bucket.reserved -= reservation.amount;
                if now_ms >= bucket.period_end_ms {
                    bucket.period_start_ms =
                        period_start_ms(bucket.period, now_ms, self.utc_offset_s);
                    bucket.period_end_ms = period_end_ms(bucket.period, now_ms, self.utc_offset_s);
                    bucket.spent = Usd::ZERO;
                }
                bucket.spent += actual;
            }
        }
    }

    /// Count spend recorded before a restart: `cost` at `ts_ms` goes into the bucket if it
    /// falls in the bucket's current period. Creates the bucket (beyond the cap if need be:
    /// the spend is real).
    pub fn restore(&self, limit: &MoneyLimit, ts_ms: i64, cost: Usd, now_ms: i64) {
        let start = period_start_ms(limit.period, now_ms, self.utc_offset_s);
        if ts_ms < start || ts_ms > now_ms {
            return;
        }
        let mut shard = self.lock(self.shard_of(&limit.key));
        let bucket = shard.entry(limit.key.clone()).or_insert_with(|| {
            self.live.fetch_add(1, Ordering::AcqRel);
            Bucket::new(limit, now_ms, self.utc_offset_s)
        });
        bucket.refresh(limit, now_ms, self.utc_offset_s);
        bucket.spent += cost;
    }

    /// Live buckets as seen now (sorted by key), at most `max`, with keys starting `prefix`.
    pub fn buckets(&self, prefix: &str, max: usize, now_ms: i64) -> Vec<MoneyStatus> {
        let mut all = Vec::new();
        for index in 0..self.shards.len() {
            let mut shard = self.lock(index);
            for (key, bucket) in shard.iter_mut() {
                if key.as_str().starts_with(prefix) {
                    if now_ms >= bucket.period_end_ms {
                        bucket.spent = Usd::ZERO;
                        bucket.period_start_ms =
                            period_start_ms(bucket.period, now_ms, self.utc_offset_s);
                        bucket.period_end_ms =
                            period_end_ms(bucket.period, now_ms, self.utc_offset_s);
                    }
                    all.push(bucket.status(key));
                }
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all.truncate(max);
        all
    }

    /// Drop buckets with nothing in flight whose period is over (or that never spent):
    /// identical to new ones. Returns how many were dropped.
    pub fn evict_idle(&self, now_ms: i64) -> usize {
        let mut dropped = 0;
        for index in 0..self.shards.len() {
            let mut shard = self.lock(index);
            let before = shard.len();
            shard.retain(|_, bucket| !bucket.is_idle(now_ms));
            dropped += before - shard.len();
        }
        self.live.fetch_sub(dropped, Ordering::AcqRel);
        dropped
    }

    /// Live buckets.
    pub fn len(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Whether no bucket is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
#[path = "money_tests.rs"]
mod tests;
