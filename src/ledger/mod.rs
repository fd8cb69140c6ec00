//! The rate-limit ledger: buckets of smooth windows that a request reserves on at admission
//! and settles after its response (DESIGN.md, "Admission and settlement").
//!
//! A request names every bucket it counts against ([`BucketLimit`]: a key and its
//! [`Limit`]); [`Ledger::reserve`] takes its [`Demand`] from all of them or from none, and
//! answers either a [`Reservation`] or the first limit that did not pass ([`Denied`]).
//! [`Ledger::settle`] replaces the reservation with the real figure: the difference is
//! refunded or charged, and the concurrency slot is released. [`Ledger::status`] reads one
//! bucket for `/admin/limits`, `limit_status(key)` and the `x-ratelimit-*` headers.
//!
//! - `window.rs`: one smooth window (token bucket with continuous refill, exact waits).
//! - `local.rs`: the in-process, sharded implementation (the default).
//!
//! - `queue.rs`: the fair queue in front of the ledger ([`Admission`]): waiting without
//!   polling, round-robin across owners, interactive before batch, bounded.

mod lines;
mod local;
mod money;
mod queue;
mod window;

#[cfg(test)]
mod proptests;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

pub use local::{LocalLedger, LocalLedgerConfig};
pub use money::{MoneyLedger, MoneyLimit, MoneyRefusal, MoneyReservation, MoneyStatus};
pub use queue::{Admission, Admitted, LineStatus, Refusal, RefusalReason, Waiting};
pub use window::{Admit, SmoothWindow};

/// The name of a bucket: any string a `[[limits]]` rule or the policy's `limits` hook builds
/// (`user:alice`, `feature:batch`). Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey(Arc<str>);

impl BucketKey {
    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for BucketKey {
    fn from(key: &str) -> Self {
        BucketKey(Arc::from(key))
    }
}

impl From<String> for BucketKey {
    fn from(key: String) -> Self {
        BucketKey(Arc::from(key))
    }
}

impl fmt::Display for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The limits of one bucket; `None` means "not limited on this resource". A limit of N
/// admits exactly N in a burst, and refills smoothly over its window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    /// Tokens (input + output allowance) per minute.
    pub tokens_per_minute: Option<u64>,
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens per day (a smooth 24 h window, not a calendar day).
    pub tokens_per_day: Option<u64>,
    /// Requests per day (a smooth 24 h window).
    pub requests_per_day: Option<u64>,
    /// Requests in flight at once; a slot is released at settlement.
    pub concurrency: Option<u64>,
}

impl Limit {
    /// The tighter of two limits on each resource (used when a request names one key twice).
    pub fn tightest(self, other: Limit) -> Limit {
        fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
            match (a, b) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
        Limit {
            tokens_per_minute: min(self.tokens_per_minute, other.tokens_per_minute),
            requests_per_minute: min(self.requests_per_minute, other.requests_per_minute),
            tokens_per_day: min(self.tokens_per_day, other.tokens_per_day),
            requests_per_day: min(self.requests_per_day, other.requests_per_day),
            concurrency: min(self.concurrency, other.concurrency),
        }
    }

    /// The limit on one window, if set.
    pub fn get(&self, window: LimitWindow) -> Option<u64> {
        match window {
            LimitWindow::TokensPerMinute => self.tokens_per_minute,
            LimitWindow::RequestsPerMinute => self.requests_per_minute,
            LimitWindow::TokensPerDay => self.tokens_per_day,
            LimitWindow::RequestsPerDay => self.requests_per_day,
            LimitWindow::Concurrency => self.concurrency,
        }
    }
}

/// One bucket a request counts against: its key and the limits that key has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLimit {
    /// The bucket's name.
    pub key: BucketKey,
    /// Its limits.
    pub limit: Limit,
}

impl BucketLimit {
    /// A bucket limit from a key and its limits.
    pub fn new(key: impl Into<BucketKey>, limit: Limit) -> Self {
        BucketLimit {
            key: key.into(),
            limit,
        }
    }
}

/// What one request asks for: its token reservation (input estimate + output allowance).
/// Every request also counts as one request and takes one concurrency slot where limited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Tokens to reserve now (or, at settlement, the real figure).
    pub tokens: u64,
}

/// Which limit of a bucket: the windows of [`Limit`], in its field order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitWindow {
    /// `tokens_per_minute`.
    TokensPerMinute,
    /// `requests_per_minute`.
    RequestsPerMinute,
    /// `tokens_per_day`.
    TokensPerDay,
    /// `requests_per_day`.
    RequestsPerDay,
    /// `concurrency`.
    Concurrency,
}

impl LimitWindow {
    /// Every window, in the order limits are checked.
    pub const ALL: [LimitWindow; 5] = [
        LimitWindow::TokensPerMinute,
        LimitWindow::RequestsPerMinute,
        LimitWindow::TokensPerDay,
        LimitWindow::RequestsPerDay,
        LimitWindow::Concurrency,
    ];

    /// The name used in config, scripts and messages (`tokens_per_minute`).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitWindow::TokensPerMinute => "tokens_per_minute",
            LimitWindow::RequestsPerMinute => "requests_per_minute",
            LimitWindow::TokensPerDay => "tokens_per_day",
            LimitWindow::RequestsPerDay => "requests_per_day",
            LimitWindow::Concurrency => "concurrency",
        }
    }

    /// The refill period of a smooth window; `None` for concurrency, which is a count of
    /// slots released at settlement rather than a window.
    pub fn period(self) -> Option<Duration> {
        match self {
            LimitWindow::TokensPerMinute | LimitWindow::RequestsPerMinute => {
                Some(Duration::from_secs(60))
            }
            LimitWindow::TokensPerDay | LimitWindow::RequestsPerDay => {
                Some(Duration::from_secs(86_400))
            }
            LimitWindow::Concurrency => None,
        }
    }

    /// Whether this window counts tokens (else requests or slots).
    pub fn counts_tokens(self) -> bool {
        matches!(
            self,
            LimitWindow::TokensPerMinute | LimitWindow::TokensPerDay
        )
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for LimitWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the first limit (in the request's bucket order, then [`LimitWindow::ALL`]
/// order) that did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The bucket whose limit did not pass.
    pub key: BucketKey,
    /// Which of its limits.
    pub window: LimitWindow,
    /// When the whole request could pass if nothing else took capacity meanwhile: the
    /// longest exact wait over every limit that did not pass. `None` when no wait helps:
    /// the demand is larger than a limit's whole capacity (it can never pass), or a
    /// concurrency slot is needed (it frees at a settlement, not at a known time).
    pub retry_after: Option<Duration>,
}

/// What went wrong in a ledger call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// A limit did not pass; nothing was taken.
    #[error("rate limit {} of {} exceeded", .0.window, .0.key)]
    Denied(Denied),
    /// The request would create buckets beyond the configured cap on live buckets.
    #[error("too many live rate-limit buckets (cap {cap})")]
    BucketCap {
        /// The configured cap.
        cap: usize,
    },
}

/// What a request took on one bucket, so that settlement gives back exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// The bucket.
    pub key: BucketKey,
    /// The windows (and concurrency slot) this reservation was taken from.
    pub windows: Vec<LimitWindow>,
}

/// The handle of a successful reservation: the demand and what it took on which buckets.
/// Settle it exactly once ([`Ledger::settle`]); an unsettled reservation keeps its
/// concurrency slot and keeps its buckets from being evicted.
#[must_use = "a reservation must be settled, or its concurrency slots stay taken"]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    pub(crate) demand: Demand,
    pub(crate) buckets: Vec<Reserved>,
    /// The token window with the least room left right after the reservation (for the
    /// `x-ratelimit-*-tokens` headers).
    pub(crate) tightest_tokens: Option<(BucketKey, WindowStatus)>,
}

impl Reservation {
    /// What was reserved.
    pub fn demand(&self) -> Demand {
        self.demand
    }

    /// What was taken on each bucket, in the request's order (a key named twice once).
    pub fn buckets(&self) -> &[Reserved] {
        &self.buckets
    }

    /// The token window with the least room left right after this reservation, if any
    /// bucket limits tokens: the tightest limit that applied.
    pub fn tightest_tokens(&self) -> Option<&(BucketKey, WindowStatus)> {
        self.tightest_tokens.as_ref()
    }
}

/// The result of a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// Whether capacity was given back (a refund or a released concurrency slot), so that
    /// waiters on these buckets could now proceed: the wake hook for the fair queue.
    pub freed: bool,
}

/// One window of a bucket as seen now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    /// Which window.
    pub window: LimitWindow,
    /// Its limit.
    pub limit: u64,
    /// What is available now (negative after a charge beyond the reservation).
    pub remaining: i64,
    /// How long until the window is full again (zero when it is; for concurrency, zero).
    pub resets_in: Duration,
}

/// A bucket as seen now, for `/admin/limits`, `limit_status(key)` and response headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketStatus {
    /// The bucket.
    pub key: BucketKey,
    /// The limits it last reserved under.
    pub limit: Limit,
    /// Each limited window, in [`LimitWindow::ALL`] order.
    pub windows: Vec<WindowStatus>,
    /// Reservations not yet settled.
    pub in_flight: u64,
}

/// The ledger: reserve at admission, settle after the response, read a bucket's status.
/// The in-process [`LocalLedger`] is the default; a Redis-backed store implements the same
/// trait for cluster mode, so the pipeline does not change.
pub trait Ledger: Send + Sync {
    /// Take `demand` (and one request, and one concurrency slot where limited) from every
    /// bucket in `buckets`, all or none. A key named twice counts once, under the tighter
    /// of its limits.
    fn reserve<'a>(
        &'a self,
        buckets: &'a [BucketLimit],
        demand: Demand,
    ) -> BoxFuture<'a, Result<Reservation, LedgerError>>;

    /// Replace a reservation with the real figure: the token difference is refunded or
    /// charged (a window may go negative, so later requests wait longer); concurrency slots
    /// are released. Requests stay counted.
    fn settle(
        &self,
        reservation: Reservation,
        actual: Demand,
    ) -> BoxFuture<'_, Result<Settled, LedgerError>>;

    /// Whether `demand` would pass on every bucket now, without taking anything: the fair
    /// queue asks before a newcomer joins waiters (a denial says how long it would wait).
    fn check<'a>(
        &'a self,
        buckets: &'a [BucketLimit],
        demand: Demand,
    ) -> BoxFuture<'a, Result<(), LedgerError>>;

    /// Live buckets as seen now, at most `max` of them (sorted by key), for `/admin/limits`;
    /// with `prefix`, only keys starting with it.
    fn buckets<'a>(
        &'a self,
        prefix: &'a str,
        max: usize,
    ) -> BoxFuture<'a, Result<Vec<BucketStatus>, LedgerError>>;

    /// One bucket as seen now, or `None` if it is not live (never used, or evicted idle:
    /// an evicted bucket was full, exactly as a new one).
    fn status<'a>(
        &'a self,
        key: &'a BucketKey,
    ) -> BoxFuture<'a, Result<Option<BucketStatus>, LedgerError>>;
}
