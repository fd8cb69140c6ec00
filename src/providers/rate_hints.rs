//! Rate hints: what providers say about their remaining capacity, per (provider, upstream
//! model), so routing can steer around a model that is near its provider's limits.
//!
//! [`super::HttpProvider`] hands every upstream response's headers to
//! [`RateHints::observe`]; the pipeline reads [`RateHints::headroom`] before it sends and
//! calls [`RateHints::spend`] when it does, so concurrent requests don't all trust one stale
//! "remaining". Understood headers:
//!
//! - OpenAI: `x-ratelimit-{remaining,limit,reset}-{tokens,requests}`, resets as Go durations
//!   (`1s`, `6m0s`, `20ms`, `1h2m3.5s`).
//! - Anthropic: `anthropic-ratelimit-{tokens,requests,input-tokens,output-tokens}-{remaining,
//!   limit,reset}`, resets as RFC 3339 timestamps; without the combined tokens headers the
//!   input-tokens ones stand for tokens.
//! - A 429, or a 503 with `retry-after`: `retry-after-ms` (OpenAI) or `retry-after` in
//!   (possibly fractional) seconds blocks the model; a 429 without either blocks for
//!   [`DEFAULT_BLOCK`].
//!
//! Parsing is total: a malformed value is ignored, huge numbers saturate, and no reset or
//! block is believed beyond [`MAX_HORIZON`]. The latest observation of a window replaces the
//! previous one. A remaining count past its reset reads as unknown; one sent without a reset
//! is trusted for [`UNTIMED_HINT_TTL`]. At most [`DEFAULT_MAX_ENTRIES`] pairs are held;
//! expired entries are evicted first, then the one expiring soonest.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Most (provider, upstream model) pairs held by [`RateHints::new`].
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// How long a remaining count that came without a reset time is trusted.
pub const UNTIMED_HINT_TTL: Duration = Duration::from_secs(60);

/// How long a 429 without `retry-after` blocks its model.
pub const DEFAULT_BLOCK: Duration = Duration::from_secs(1);

/// The furthest a reset or block is believed; larger values saturate here.
pub const MAX_HORIZON: Duration = Duration::from_secs(24 * 60 * 60);

/// Lock shards; a power of two.
const SHARDS: usize = 16;

/// What one provider said about one model's capacity, as of now. `None` is unknown: never
/// said, malformed, or past its reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderHeadroom {
    /// Tokens left until `tokens_reset_in` (Anthropic: the combined tokens window, else the
    /// input-tokens one), lowered by [`RateHints::spend`] since.
    pub tokens_remaining: Option<u64>,
    /// Time until the tokens window resets, when the provider said.
    pub tokens_reset_in: Option<Duration>,
    /// The tokens window's size, when the provider said.
    pub tokens_limit: Option<u64>,
    /// Requests left until `requests_reset_in`, lowered by [`RateHints::spend`] since.
    pub requests_remaining: Option<u64>,
    /// Time until the requests window resets, when the provider said.
    pub requests_reset_in: Option<Duration>,
    /// The requests window's size, when the provider said.
    pub requests_limit: Option<u64>,
    /// Output tokens left (Anthropic's separate output window; not lowered by `spend`).
    pub output_tokens_remaining: Option<u64>,
    /// Time until the output-tokens window resets, when the provider said.
    pub output_tokens_reset_in: Option<Duration>,
    /// A 429 (or 503) `retry-after` still running: no capacity at all until it ends.
    pub blocked_for: Option<Duration>,
}

/// Rate hints per (provider name, upstream model id), shared by every registry of a
/// gateway. Cheap to read: an unknown pair costs one hash and one map lookup.
pub struct RateHints {
    shards: Box<[Mutex<Shard>]>,
    /// Hashes (provider, upstream) once; the shard maps reuse that hash as their key.
    keys: RandomState,
    per_shard: usize,
}

/// One shard: entries by the pair's hash (the names are kept to rule out collisions).
type Shard = HashMap<u64, Entry, BuildHasherDefault<Prehashed>>;

impl Default for RateHints {
    fn default() -> Self {
        Self::new()
    }
}

impl RateHints {
    /// An empty store holding up to [`DEFAULT_MAX_ENTRIES`] pairs.
    pub fn new() -> Self {
        Self::with_max_entries(DEFAULT_MAX_ENTRIES)
    }

    /// An empty store holding up to `max_entries` pairs (at least one per shard, 16).
    pub fn with_max_entries(max_entries: usize) -> Self {
        RateHints {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            keys: RandomState::new(),
            per_shard: (max_entries / SHARDS).max(1),
        }
    }

    /// Record what a response (success or error `status`) from `provider` for the model
    /// `upstream` said in its headers. A response saying nothing costs no lock.
    pub fn observe(&self, provider: &str, upstream: &str, status: u16, headers: &HeaderMap) {
        self.observe_at(
            provider,
            upstream,
            status,
            headers,
            Instant::now(),
            Utc::now(),
        );
    }

    /// [`Self::observe`] at a given monotonic `now` and wall clock `wall` (which turns
    /// Anthropic's reset timestamps into durations).
    fn observe_at(
        &self,
        provider: &str,
        upstream: &str,
        status: u16,
        headers: &HeaderMap,
        now: Instant,
        wall: DateTime<Utc>,
    ) {
        let seen = parse_hints(status, headers, wall);
        if seen.is_empty() {
            return;
        }
        let key = self.key(provider, upstream);
        let mut shard = self.lock(key);
        if let Some(entry) = shard.get_mut(&key).filter(|e| e.is(provider, upstream)) {
            entry.apply(&seen, now);
            return;
        }
        if !shard.contains_key(&key) && shard.len() >= self.per_shard {
            make_room(&mut shard, self.per_shard, now);
        }
        let mut entry = Entry::new(provider, upstream);
        entry.apply(&seen, now);
        shard.insert(key, entry);
    }

    /// What is known about `upstream` at `provider` now (tokio's clock). Windows past their
    /// reset and blocks that ended read as unknown.
    pub fn headroom(&self, provider: &str, upstream: &str) -> ProviderHeadroom {
        let key = self.key(provider, upstream);
        let shard = self.lock(key);
        match shard.get(&key) {
            Some(entry) if entry.is(provider, upstream) => entry.headroom(Instant::now()),
            _ => ProviderHeadroom::default(),
        }
    }

    /// The gateway sent a request reserving `tokens` to `upstream` at `provider`: lower the
    /// known tokens remaining by `tokens` and requests remaining by one (both saturate at 0).
    /// Unknown windows stay unknown.
    pub fn spend(&self, provider: &str, upstream: &str, tokens: u64) {
        let key = self.key(provider, upstream);
        let mut shard = self.lock(key);
        if let Some(entry) = shard.get_mut(&key).filter(|e| e.is(provider, upstream)) {
            entry.spend(tokens, Instant::now());
        }
    }

    /// Entries held, expired ones included until evicted.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn key(&self, provider: &str, upstream: &str) -> u64 {
        self.keys.hash_one((provider, upstream))
    }

    /// The shard of `key`, chosen by bits the shard map uses for neither bucket nor tag.
    fn lock(&self, key: u64) -> std::sync::MutexGuard<'_, Shard> {
        let at = ((key >> 32) as usize) & (SHARDS - 1);
        self.shards[at].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Free a slot in a shard holding `cap` entries: drop expired entries, and if none was,
/// the one expiring soonest.
fn make_room(shard: &mut Shard, cap: usize, now: Instant) {
    shard.retain(|_, entry| !entry.expired(now));
    if shard.len() < cap {
        return;
    }
    let soonest = shard
        .iter()
        .min_by_key(|(_, entry)| entry.expires_at())
        .map(|(key, _)| *key);
    if let Some(key) = soonest {
        shard.remove(&key);
    }
}

/// A map hasher for keys that already are hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// One rate window as last observed.
#[derive(Debug, Clone, Copy)]
struct Window {
    remaining: u64,
    limit: Option<u64>,
    /// When the provider said the window resets.
    reset_at: Option<Instant>,
    /// Past this the window reads as unknown: `reset_at`, or [`UNTIMED_HINT_TTL`] after it
    /// was observed.
    fresh_until: Instant,
}

impl Window {
    fn from_reading(reading: &Reading, now: Instant) -> Window {
        let reset_at = reading.reset_in.map(|d| later(now, d));
        Window {
            remaining: reading.remaining,
            limit: reading.limit,
            reset_at,
            fresh_until: reset_at.unwrap_or_else(|| later(now, UNTIMED_HINT_TTL)),
        }
    }

    /// `(remaining, reset_in, limit)` while fresh.
    fn read(window: Option<&Window>, now: Instant) -> (Option<u64>, Option<Duration>, Option<u64>) {
        match window.filter(|w| w.fresh_until > now) {
            Some(w) => (
                Some(w.remaining),
                w.reset_at.map(|at| at.saturating_duration_since(now)),
                w.limit,
            ),
            None => (None, None, None),
        }
    }
}

/// `now + by`, or `now` in the (impossible within [`MAX_HORIZON`]) case of overflow.
fn later(now: Instant, by: Duration) -> Instant {
    now.checked_add(by).unwrap_or(now)
}

/// Everything known about one (provider, upstream) pair.
struct Entry {
    provider: Box<str>,
    upstream: Box<str>,
    tokens: Option<Window>,
    requests: Option<Window>,
    output_tokens: Option<Window>,
    blocked_until: Option<Instant>,
}

impl Entry {
    fn new(provider: &str, upstream: &str) -> Entry {
        Entry {
            provider: provider.into(),
            upstream: upstream.into(),
            tokens: None,
            requests: None,
            output_tokens: None,
            blocked_until: None,
        }
    }

    fn is(&self, provider: &str, upstream: &str) -> bool {
        &*self.provider == provider && &*self.upstream == upstream
    }

    fn apply(&mut self, seen: &Observation, now: Instant) {
        let windows = [
            (&mut self.tokens, &seen.tokens),
            (&mut self.requests, &seen.requests),
            (&mut self.output_tokens, &seen.output_tokens),
        ];
        for (window, reading) in windows {
            if let Some(reading) = reading {
                *window = Some(Window::from_reading(reading, now));
            }
        }
        if let Some(block) = seen.block {
            self.blocked_until = Some(later(now, block));
        }
    }

    fn spend(&mut self, tokens: u64, now: Instant) {
        if let Some(w) = self.tokens.as_mut().filter(|w| w.fresh_until > now) {
            w.remaining = w.remaining.saturating_sub(tokens);
        }
        if let Some(w) = self.requests.as_mut().filter(|w| w.fresh_until > now) {
            w.remaining = w.remaining.saturating_sub(1);
        }
    }

    fn headroom(&self, now: Instant) -> ProviderHeadroom {
        let (tokens_remaining, tokens_reset_in, tokens_limit) =
            Window::read(self.tokens.as_ref(), now);
        let (requests_remaining, requests_reset_in, requests_limit) =
            Window::read(self.requests.as_ref(), now);
        let (output_tokens_remaining, output_tokens_reset_in, _) =
            Window::read(self.output_tokens.as_ref(), now);
        ProviderHeadroom {
            tokens_remaining,
            tokens_reset_in,
            tokens_limit,
            requests_remaining,
            requests_reset_in,
            requests_limit,
            output_tokens_remaining,
            output_tokens_reset_in,
            blocked_for: self
                .blocked_until
                .filter(|until| *until > now)
                .map(|until| until.saturating_duration_since(now)),
        }
    }

    /// When everything this entry knows has gone stale (`None`: it knows nothing).
    fn expires_at(&self) -> Option<Instant> {
        [self.tokens, self.requests, self.output_tokens]
            .iter()
            .flatten()
            .map(|w| w.fresh_until)
            .chain(self.blocked_until)
            .max()
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires_at().is_none_or(|at| at <= now)
    }
}

/// One window as a response stated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    remaining: u64,
    limit: Option<u64>,
    reset_in: Option<Duration>,
}

/// What one response's headers said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Observation {
    tokens: Option<Reading>,
    requests: Option<Reading>,
    output_tokens: Option<Reading>,
    block: Option<Duration>,
}

impl Observation {
    fn is_empty(&self) -> bool {
        *self == Observation::default()
    }
}

/// How a family writes its reset.
#[derive(Clone, Copy)]
enum ResetFormat {
    /// A Go duration (`6m0s`).
    GoDuration,
    /// An RFC 3339 timestamp.
    Timestamp,
}

/// The headers of one rate window.
struct Family {
    remaining: &'static str,
    limit: &'static str,
    reset: &'static str,
    format: ResetFormat,
}

impl Family {
    const fn openai(remaining: &'static str, limit: &'static str, reset: &'static str) -> Self {
        Family {
            remaining,
            limit,
            reset,
            format: ResetFormat::GoDuration,
        }
    }

    const fn anthropic(remaining: &'static str, limit: &'static str, reset: &'static str) -> Self {
        Family {
            remaining,
            limit,
            reset,
            format: ResetFormat::Timestamp,
        }
    }

    /// The window, when its remaining header is present and well formed.
    fn read(&self, headers: &HeaderMap, wall: DateTime<Utc>) -> Option<Reading> {
        Some(Reading {
            remaining: parse_count(header_text(headers, self.remaining)?)?,
            limit: header_text(headers, self.limit).and_then(parse_count),
            reset_in: header_text(headers, self.reset).and_then(|t| match self.format {
                ResetFormat::GoDuration => parse_go_duration(t),
                ResetFormat::Timestamp => parse_reset_timestamp(t, wall),
            }),
        })
    }
}

const OPENAI_TOKENS: Family = Family::openai(
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-reset-tokens",
);
const OPENAI_REQUESTS: Family = Family::openai(
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-requests",
    "x-ratelimit-reset-requests",
);
const ANTHROPIC_TOKENS: Family = Family::anthropic(
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-reset",
);
const ANTHROPIC_INPUT_TOKENS: Family = Family::anthropic(
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-reset",
);
const ANTHROPIC_OUTPUT_TOKENS: Family = Family::anthropic(
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-reset",
);
const ANTHROPIC_REQUESTS: Family = Family::anthropic(
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-reset",
);

/// Read every hint family from `headers`; `wall` is the current wall clock.
fn parse_hints(status: u16, headers: &HeaderMap, wall: DateTime<Utc>) -> Observation {
    Observation {
        tokens: OPENAI_TOKENS
            .read(headers, wall)
            .or_else(|| ANTHROPIC_TOKENS.read(headers, wall))
            .or_else(|| ANTHROPIC_INPUT_TOKENS.read(headers, wall)),
        requests: OPENAI_REQUESTS
            .read(headers, wall)
            .or_else(|| ANTHROPIC_REQUESTS.read(headers, wall)),
        output_tokens: ANTHROPIC_OUTPUT_TOKENS.read(headers, wall),
        block: block_for(status, headers),
    }
}

/// A header's value as text, when present and visible ASCII.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// How long a 429 (or a 503 with a retry hint) blocks its model.
fn block_for(status: u16, headers: &HeaderMap) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let said = header_text(headers, "retry-after-ms")
        .and_then(|t| decimal_nanos(t.trim(), 1_000_000))
        .or_else(|| {
            header_text(headers, "retry-after").and_then(|t| decimal_nanos(t.trim(), 1_000_000_000))
        })
        .map(saturating_duration);
    match said {
        Some(block) => Some(block),
        None if status == 429 => Some(DEFAULT_BLOCK),
        None => None,
    }
}

/// A non-negative decimal integer; larger than `u64` saturates.
fn parse_count(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// A Go duration (`300ms`, `1.5h`, `2h45m`, `0`): a sequence of decimal numbers, each with a
/// unit of `ns`, `us` (`µs`), `ms`, `s`, `m` or `h`. Negative durations are malformed.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.saturating_add(decimal_nanos(number, unit_nanos)?);
        rest = next;
    }
    Some(saturating_duration(total))
}

/// `digits[.digits]` (either side may be empty, not both) times `unit_nanos`, saturating.
/// Fraction digits past the 18th are checked but do not count.
fn decimal_nanos(number: &str, unit_nanos: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    let whole = whole.bytes().fold(0u128, |n, b| {
        n.saturating_mul(10).saturating_add(u128::from(b - b'0'))
    });
    let (numerator, denominator) = fraction.bytes().take(18).fold((0u128, 1u128), |(n, d), b| {
        (n * 10 + u128::from(b - b'0'), d * 10)
    });
    Some(
        whole
            .saturating_mul(unit_nanos)
            .saturating_add(numerator * unit_nanos / denominator),
    )
}

/// Nanoseconds as a duration, at most [`MAX_HORIZON`].
fn saturating_duration(nanos: u128) -> Duration {
    let cap = MAX_HORIZON.as_nanos();
    Duration::from_nanos(u64::try_from(nanos.min(cap)).unwrap_or(u64::MAX))
}

/// Time from `wall` until an RFC 3339 timestamp; a timestamp already past is zero.
fn parse_reset_timestamp(text: &str, wall: DateTime<Utc>) -> Option<Duration> {
    let at = DateTime::parse_from_rfc3339(text.trim()).ok()?;
    let until = at.with_timezone(&Utc).signed_duration_since(wall);
    Some(
        until
            .to_std()
            .map_or(Duration::ZERO, |d| d.min(MAX_HORIZON)),
    )
}

#[cfg(test)]
#[path = "rate_hints_tests.rs"]
mod tests;
