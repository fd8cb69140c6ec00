//! The in-process ledger: buckets in N shards of `Mutex<HashMap>` chosen by key hash (no
//! global mutex). A reservation locks the shards it touches in index order (so two requests
//! never deadlock), checks every limit, and only then takes from all of them: all or none.
//! An idle bucket (every window full, nothing in flight) is identical to a new one, so it is
//! evicted; a configured cap bounds the live buckets, and a request that would pass it gets
//! [`LedgerError::BucketCap`] rather than unbounded memory.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::window::{Admit, SmoothWindow};
use super::{
    BucketKey, BucketLimit, BucketStatus, Demand, Denied, Ledger, LedgerError, Limit, LimitWindow,
    Reservation, Reserved, Settled, WindowStatus,
};

/// Sizing of a [`LocalLedger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLedgerConfig {
    /// Number of shards (at least one).
    pub shards: usize,
    /// The most buckets live at once.
    pub max_buckets: usize,
}

impl Default for LocalLedgerConfig {
    fn default() -> Self {
        LocalLedgerConfig {
            shards: 64,
            max_buckets: 100_000,
        }
    }
}

/// One bucket: its windows (indexed by [`LimitWindow::index`]) and its in-flight count.
#[derive(Debug)]
struct Bucket {
    limit: Limit,
    windows: [Option<SmoothWindow>; 4],
    in_flight: u64,
}

impl Bucket {
    fn new(limit: Limit, now: Instant) -> Self {
        let mut bucket = Bucket {
            limit: Limit::default(),
            windows: [None, None, None, None],
            in_flight: 0,
        };
        bucket.apply_limit(limit, now);
        bucket
    }

    /// Bring the windows to `limit`: new windows start full, changed ones keep their usage.
    fn apply_limit(&mut self, limit: Limit, now: Instant) {
        if self.limit == limit {
            return;
        }
        for window in LimitWindow::ALL {
            let Some(period) = window.period() else {
                continue;
            };
            let slot = &mut self.windows[window.index()];
            match (limit.get(window), slot.as_mut()) {
                (None, _) => *slot = None,
                (Some(capacity), Some(existing)) => existing.set_capacity(capacity, now),
                (Some(capacity), None) => *slot = Some(SmoothWindow::new(capacity, period, now)),
            }
        }
        self.limit = limit;
    }

    fn amount(window: LimitWindow, demand: Demand) -> u64 {
        if window.counts_tokens() {
            demand.tokens
        } else {
            1
        }
    }

    /// Every limit of this bucket that `demand` does not pass now, in check order.
    fn refusals(&self, demand: Demand, now: Instant) -> Vec<(LimitWindow, Admit)> {
        let mut refused = Vec::new();
        for window in LimitWindow::ALL {
            let admit = if window == LimitWindow::Concurrency {
                match self.limit.concurrency {
                    Some(0) => Admit::Never,
                    Some(slots) if self.in_flight >= slots => Admit::Never,
                    _ => Admit::Now,
                }
            } else {
                match &self.windows[window.index()] {
                    Some(w) => w.check(Self::amount(window, demand), now),
                    None => Admit::Now,
                }
            };
            if admit != Admit::Now {
                refused.push((window, admit));
            }
        }
        refused
    }

    fn take(&mut self, demand: Demand, now: Instant) -> Vec<LimitWindow> {
        let mut taken = Vec::new();
        for window in LimitWindow::ALL {
            if window == LimitWindow::Concurrency {
                if self.limit.concurrency.is_some() {
                    taken.push(window);
                }
            } else if let Some(w) = self.windows[window.index()].as_mut() {
                w.take(Self::amount(window, demand), now);
                taken.push(window);
            }
        }
        self.in_flight += 1;
        taken
    }

    fn settle(
        &mut self,
        reserved: &Reserved,
        demand: Demand,
        actual: Demand,
        now: Instant,
    ) -> bool {
        let mut freed = false;
        for &window in &reserved.windows {
            if window == LimitWindow::Concurrency {
                freed = true;
            } else if window.counts_tokens() {
                if let Some(w) = self.windows[window.index()].as_mut() {
                    freed |= w.settle(demand.tokens, actual.tokens, now);
                }
            }
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        freed
    }

    /// The token window with the least room left, as seen now.
    fn tightest_tokens(&self, now: Instant) -> Option<WindowStatus> {
        [LimitWindow::TokensPerMinute, LimitWindow::TokensPerDay]
            .into_iter()
            .filter_map(|window| {
                let w = self.windows[window.index()].as_ref()?;
                Some(WindowStatus {
                    window,
                    limit: w.capacity(),
                    remaining: w.available(now),
                    resets_in: w.resets_in(now),
                })
            })
            .min_by_key(|status| status.remaining)
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.in_flight == 0 && self.windows.iter().flatten().all(|w| w.is_full(now))
    }

    fn status(&self, key: &BucketKey, now: Instant) -> BucketStatus {
        let mut windows = Vec::new();
        for window in LimitWindow::ALL {
            let Some(limit) = self.limit.get(window) else {
                continue;
            };
            let (remaining, resets_in) =
                match self.windows.get(window.index()).and_then(Option::as_ref) {
                    Some(w) => (w.available(now), w.resets_in(now)),
                    None => (
                        i64::try_from(limit.saturating_sub(self.in_flight)).unwrap_or(i64::MAX),
                        std::time::Duration::ZERO,
                    ),
                };
            windows.push(WindowStatus {
                window,
                limit,
                remaining,
                resets_in,
            });
        }
        BucketStatus {
            key: key.clone(),
            limit: self.limit,
            windows,
            in_flight: self.in_flight,
        }
    }
}

type Shard = HashMap<BucketKey, Bucket>;

/// The in-process, sharded ledger (the default [`Ledger`]).
#[derive(Debug)]
pub struct LocalLedger {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    live: AtomicUsize,
    max_buckets: usize,
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // A panic while holding a shard cannot leave a bucket half-updated in a way that
    // matters more than refusing every later request, so keep going with the data.
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LocalLedger {
    /// An empty ledger.
    pub fn new(config: LocalLedgerConfig) -> Self {
        let shards = (0..config.shards.max(1))
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        LocalLedger {
            shards,
            hasher: RandomState::new(),
            live: AtomicUsize::new(0),
            max_buckets: config.max_buckets,
        }
    }

    fn shard_of(&self, key: &BucketKey) -> usize {
        // The modulo keeps the value below the shard count, so the cast back is lossless.
        (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
    }

    /// How many buckets are live.
    pub fn live_buckets(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Reserve now; see [`Ledger::reserve`].
    pub fn reserve_now(
        &self,
        buckets: &[BucketLimit],
        demand: Demand,
    ) -> Result<Reservation, LedgerError> {
        self.reserve_at(buckets, demand, Instant::now())
    }

    /// Settle now; see [`Ledger::settle`].
    pub fn settle_now(&self, reservation: Reservation, actual: Demand) -> Settled {
        self.settle_at(reservation, actual, Instant::now())
    }

    /// One bucket as seen now; see [`Ledger::status`].
    pub fn status_now(&self, key: &BucketKey) -> Option<BucketStatus> {
        let now = Instant::now();
        let shard = lock(&self.shards[self.shard_of(key)]);
        shard.get(key).map(|bucket| bucket.status(key, now))
    }

    /// Live buckets whose key starts with `prefix`, sorted by key, at most `max`.
    pub fn buckets_now(&self, prefix: &str, max: usize) -> Vec<BucketStatus> {
        let now = Instant::now();
        let mut found: Vec<BucketStatus> = Vec::new();
        for shard in &self.shards {
            let shard = lock(shard);
            for (key, bucket) in shard.iter() {
                if key.as_str().starts_with(prefix) {
                    found.push(bucket.status(key, now));
                }
            }
            // Keep memory bounded while scanning: the `max` smallest keys so far.
            if found.len() > max.saturating_mul(2).max(1024) {
                found.sort_by(|a, b| a.key.cmp(&b.key));
                found.truncate(max);
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.truncate(max);
        found
    }

    /// Evict every idle bucket (all windows full, nothing in flight); returns how many.
    /// Call it periodically; a reservation that meets the cap also calls it.
    pub fn evict_idle(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|shard| self.evict_idle_in(&mut lock(shard), now))
            .sum()
    }

    fn evict_idle_in(&self, shard: &mut Shard, now: Instant) -> usize {
        let before = shard.len();
        shard.retain(|_, bucket| !bucket.is_idle(now));
        let evicted = before - shard.len();
        self.live.fetch_sub(evicted, Ordering::Relaxed);
        evicted
    }

    pub(crate) fn reserve_at(
        &self,
        buckets: &[BucketLimit],
        demand: Demand,
        now: Instant,
    ) -> Result<Reservation, LedgerError> {
        self.admit_at(buckets, demand, now, true)
            .map(|taken| taken.unwrap_or_default())
    }

    /// Whether `demand` would pass on every bucket now; nothing is taken (and no bucket is
    /// created).
    pub(crate) fn check_at(
        &self,
        buckets: &[BucketLimit],
        demand: Demand,
        now: Instant,
    ) -> Result<(), LedgerError> {
        self.admit_at(buckets, demand, now, false).map(|_| ())
    }

    /// Check every limit, then (when `take`) take from all: the one code path of reserve and
    /// check, so both judge alike.
    fn admit_at(
        &self,
        buckets: &[BucketLimit],
        demand: Demand,
        now: Instant,
        take: bool,
    ) -> Result<Option<Reservation>, LedgerError> {
        // One entry per key (the tighter limits when named twice), with its shard.
        let mut wanted: Vec<(BucketKey, Limit, usize)> = Vec::with_capacity(buckets.len());
        for bucket in buckets {
            match wanted.iter_mut().find(|(key, _, _)| *key == bucket.key) {
                Some(entry) => entry.1 = entry.1.tightest(bucket.limit),
                None => wanted.push((bucket.key.clone(), bucket.limit, self.shard_of(&bucket.key))),
            }
        }
        if take && self.live_buckets() + wanted.len() > self.max_buckets {
            self.evict_idle();
        }
        let mut order: Vec<usize> = wanted.iter().map(|(_, _, shard)| *shard).collect();
        order.sort_unstable();
        order.dedup();
        let mut guards: Vec<(usize, MutexGuard<'_, Shard>)> = order
            .iter()
            .map(|&index| (index, lock(&self.shards[index])))
            .collect();
        let guard_of = |shard: usize| order.binary_search(&shard).unwrap_or_default();

        // Check every limit before taking anything.
        let mut first: Option<(BucketKey, LimitWindow)> = None;
        let mut retry_after = Some(std::time::Duration::ZERO);
        let mut new_buckets = 0;
        for (key, limit, shard) in &wanted {
            let map = &mut guards[guard_of(*shard)].1;
            let refused = match map.get_mut(key) {
                Some(bucket) => {
                    if take {
                        bucket.apply_limit(*limit, now);
                        bucket.refusals(demand, now)
                    } else {
                        let mut probe = Bucket {
                            limit: bucket.limit,
                            windows: bucket.windows.clone(),
                            in_flight: bucket.in_flight,
                        };
                        probe.apply_limit(*limit, now);
                        probe.refusals(demand, now)
                    }
                }
                None => {
                    new_buckets += 1;
                    Bucket::new(*limit, now).refusals(demand, now)
                }
            };
            for (window, admit) in refused {
                if first.is_none() {
                    first = Some((key.clone(), window));
                }
                retry_after = match (retry_after, admit) {
                    (Some(longest), Admit::After(wait)) => Some(longest.max(wait)),
                    _ => None,
                };
            }
        }
        if let Some((key, window)) = first {
            return Err(LedgerError::Denied(Denied {
                key,
                window,
                retry_after,
            }));
        }
        if !take {
            return Ok(None);
        }
        if new_buckets > 0 {
            let before = self.live.fetch_add(new_buckets, Ordering::Relaxed);
            if before + new_buckets > self.max_buckets {
                self.live.fetch_sub(new_buckets, Ordering::Relaxed);
                return Err(LedgerError::BucketCap {
                    cap: self.max_buckets,
                });
            }
        }

        // Every limit passed: take from all, noting the tightest token window.
        let mut reserved = Vec::with_capacity(wanted.len());
        let mut tightest: Option<(BucketKey, WindowStatus)> = None;
        for (key, limit, shard) in wanted {
            let map = &mut guards[guard_of(shard)].1;
            let bucket = map
                .entry(key.clone())
                .or_insert_with(|| Bucket::new(limit, now));
            let windows = bucket.take(demand, now);
            if let Some(status) = bucket.tightest_tokens(now) {
                if tightest
                    .as_ref()
                    .is_none_or(|(_, best)| status.remaining < best.remaining)
                {
                    tightest = Some((key.clone(), status));
                }
            }
            reserved.push(Reserved { key, windows });
        }
        Ok(Some(Reservation {
            demand,
            buckets: reserved,
            tightest_tokens: tightest,
        }))
    }

    pub(crate) fn settle_at(
        &self,
        reservation: Reservation,
        actual: Demand,
        now: Instant,
    ) -> Settled {
        let mut freed = false;
        for reserved in &reservation.buckets {
            let mut shard = lock(&self.shards[self.shard_of(&reserved.key)]);
            // An unsettled reservation keeps its bucket live, so it is found; a ledger
            // rebuilt meanwhile has nothing to give back.
            if let Some(bucket) = shard.get_mut(&reserved.key) {
                freed |= bucket.settle(reserved, reservation.demand, actual, now);
            }
        }
        Settled { freed }
    }
}

impl Default for LocalLedger {
    fn default() -> Self {
        LocalLedger::new(LocalLedgerConfig::default())
    }
}

impl Ledger for LocalLedger {
    fn reserve<'a>(
        &'a self,
        buckets: &'a [BucketLimit],
        demand: Demand,
    ) -> BoxFuture<'a, Result<Reservation, LedgerError>> {
        Box::pin(std::future::ready(self.reserve_now(buckets, demand)))
    }

    fn settle(
        &self,
        reservation: Reservation,
        actual: Demand,
    ) -> BoxFuture<'_, Result<Settled, LedgerError>> {
        Box::pin(std::future::ready(Ok(self.settle_now(reservation, actual))))
    }

    fn check<'a>(
        &'a self,
        buckets: &'a [BucketLimit],
        demand: Demand,
    ) -> BoxFuture<'a, Result<(), LedgerError>> {
        Box::pin(std::future::ready(self.check_at(
            buckets,
            demand,
            Instant::now(),
        )))
    }

    fn buckets<'a>(
        &'a self,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<BucketStatus>, LedgerError>> {
        Box::pin(std::future::ready(Ok(self.buckets_now(prefix, max))))
    }

    fn status<'a>(
        &'a self,
        key: &'a BucketKey,
    ) -> BoxFuture<'a, Result<Option<BucketStatus>, LedgerError>> {
        Box::pin(std::future::ready(Ok(self.status_now(key))))
    }
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
