//! The in-process store of answers: a moka cache bounded by bytes, with per-entry expiry at
//! TTL + stale window, and the counters `/admin/cache` shows.
//!
//! Freshness is decided here, from each entry's own `stored_at` on tokio's clock (so tests
//! can pause and advance it), not from moka's clock: moka only removes an entry once it is
//! past its TTL and stale window, and frees the bytes. An entry moka has not removed yet but
//! which is past that window answers [`Lookup::Miss`].
//!
//! Admission is moka's TinyLFU: when the cache is full, a new entry replaces a victim only
//! if its key has been asked for more often, so a flood of one-off prompts does not push
//! out the answers that repeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::notification::RemovalCause;
use moka::sync::Cache;
use moka::Expiry;
use serde::Serialize;
use tokio::time::Instant;

use crate::canonical::{ChatResponse, FinishReason, ToolCall};
use crate::config::CacheConfig;
use crate::cost::Usd;

use super::key::CacheKey;

/// What an entry weighs beyond its strings: the answer's struct, its `Arc`, the key, and
/// moka's bookkeeping for one entry (an estimate; the strings dominate real entries).
const ENTRY_OVERHEAD_BYTES: u64 = 384;

/// One stored answer, as the response stage serves it again.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// The whole answer: text, tool calls, finish reason and usage as the provider gave them.
    pub response: ChatResponse,
    /// The configured model that served it (after routing and fallbacks).
    pub served_model: String,
    /// The provider that served it.
    pub provider: String,
    /// When it was stored (tokio's clock: paused and advanced in tests).
    pub stored_at: Instant,
    /// How long it answers as fresh.
    pub ttl: Duration,
    /// How long past `ttl` it is kept as a fallback for when every target fails.
    pub stale: Duration,
    /// The tenant scope it was stored under ([`scope_value`](super::scope_value)), for
    /// purging one tenant.
    pub scope: String,
    /// What the answer cost when it was served live: the cost each hit saves.
    pub cost: Option<Usd>,
}

impl CachedAnswer {
    /// How long ago it was stored.
    pub fn age(&self) -> Duration {
        Instant::now().saturating_duration_since(self.stored_at)
    }

    /// How long after `stored_at` it is kept at all: TTL plus stale window.
    pub fn lifetime(&self) -> Duration {
        self.ttl.saturating_add(self.stale)
    }

    /// Its weight against `max_bytes`: every string it holds plus a fixed overhead.
    pub fn weight_bytes(&self) -> u64 {
        let response = &self.response;
        let tool_calls: usize = response.tool_calls.iter().map(tool_call_bytes).sum();
        let strings = response.id.len()
            + response.model.len()
            + response.text.len()
            + tool_calls
            + self.served_model.len()
            + self.provider.len()
            + self.scope.len();
        ENTRY_OVERHEAD_BYTES.saturating_add(strings as u64)
    }
}

fn tool_call_bytes(call: &ToolCall) -> usize {
    std::mem::size_of::<ToolCall>() + call.id.len() + call.name.len() + call.arguments.len()
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// An answer to serve: within its TTL and within the client's `max-age`. With its age.
    Fresh(Arc<CachedAnswer>, Duration),
    /// An answer that must not be served as fresh (past its TTL, or older than the client's
    /// `max-age`) but is still within its stale window: the fallback if every target
    /// fails. With its age.
    Stale(Arc<CachedAnswer>, Duration),
    /// Nothing usable.
    Miss,
}

/// Counters and sizes for `/admin/cache` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CacheStats {
    /// Entries held (moka's count after its pending work is applied).
    pub entries: u64,
    /// Their total weight in bytes (at most `max_bytes`).
    pub bytes: u64,
    /// Requests answered from the cache as fresh.
    pub hits: u64,
    /// Cacheable requests not answered from the cache.
    pub misses: u64,
    /// Requests answered with a stale entry because every target failed.
    pub stale_served: u64,
    /// Requests that skipped the cache (`Cache-Control: no-cache`/`no-store`, a policy).
    pub bypassed: u64,
    /// Answers accepted for storage.
    pub inserts: u64,
    /// Entries removed (or new entries refused by admission) to stay within `max_bytes`.
    pub evictions: u64,
    /// `hits / (hits + misses)`; 0 before the first lookup.
    pub hit_rate: f64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stale_served: AtomicU64,
    bypassed: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
}

/// Removes each entry once it is past its TTL and stale window (on moka's clock, counted
/// from when moka took it in, minus the age it already had).
struct LifetimeExpiry;

impl Expiry<CacheKey, Arc<CachedAnswer>> for LifetimeExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        answer: &Arc<CachedAnswer>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(answer.lifetime().saturating_sub(answer.age()))
    }

    fn expire_after_update(
        &self,
        _key: &CacheKey,
        answer: &Arc<CachedAnswer>,
        _updated_at: std::time::Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        // A replaced answer lives as long as the new one, not what was left of the old.
        Some(answer.lifetime().saturating_sub(answer.age()))
    }
}

/// The response cache: answers by [`CacheKey`], bounded by bytes. Cheap to clone (clones
/// share the entries and counters).
#[derive(Clone)]
pub struct ResponseCache {
    entries: Cache<CacheKey, Arc<CachedAnswer>>,
    counters: Arc<Counters>,
    max_entry_bytes: u64,
    tool_calls: bool,
    ttl: Duration,
    stale: Duration,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.entries.entry_count())
            .field("bytes", &self.entries.weighted_size())
            .field("max_entry_bytes", &self.max_entry_bytes)
            .field("tool_calls", &self.tool_calls)
            .field("ttl", &self.ttl)
            .field("stale", &self.stale)
            .finish()
    }
}

impl ResponseCache {
    /// An empty cache holding at most `max_bytes` of entries, none above `max_entry_bytes`.
    pub fn new(config: &CacheConfig) -> ResponseCache {
        let counters = Arc::new(Counters::default());
        let evictions = Arc::clone(&counters);
        let entries = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_key: &CacheKey, answer: &Arc<CachedAnswer>| {
                u32::try_from(answer.weight_bytes()).unwrap_or(u32::MAX)
            })
            .expire_after(LifetimeExpiry)
            .eviction_listener(move |_key, _answer, cause| {
                if cause == RemovalCause::Size {
                    evictions.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        ResponseCache {
            entries,
            counters,
            max_entry_bytes: config.max_entry_bytes.min(config.max_bytes),
            tool_calls: config.tool_calls,
            ttl: Duration::from_secs(config.ttl_s),
            stale: Duration::from_secs(config.max_stale_s),
        }
    }

    /// The configured TTL (`ttl_s`), for answers about to be stored.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The configured stale window (`max_stale_s`), for answers about to be stored.
    pub fn stale_window(&self) -> Duration {
        self.stale
    }

    /// Whether answers ending in tool calls are stored (`tool_calls`).
    pub fn tool_calls_allowed(&self) -> bool {
        self.tool_calls
    }

    /// The answer stored under `key`, classified by its age: fresh within its TTL and
    /// within `max_age` (the client's `Cache-Control: max-age`; an entry older than it is
    /// not fresh), stale within the stale window, else a miss. Clones an `Arc`, nothing
    /// more. Counts nothing: the stage records what it did with the result.
    pub fn lookup(&self, key: &CacheKey, max_age: Option<Duration>) -> Lookup {
        let Some(answer) = self.entries.get(key) else {
            return Lookup::Miss;
        };
        let age = answer.age();
        let within_max_age = max_age.is_none_or(|max_age| age <= max_age);
        if age < answer.ttl && within_max_age {
            Lookup::Fresh(answer, age)
        } else if age < answer.lifetime() {
            Lookup::Stale(answer, age)
        } else {
            Lookup::Miss
        }
    }

    /// Any answer under `key` still within its TTL plus stale window (the fallback when
    /// every target failed), with its age.
    pub fn lookup_stale(&self, key: &CacheKey) -> Option<(Arc<CachedAnswer>, Duration)> {
        let answer = self.entries.get(key)?;
        let age = answer.age();
        (age < answer.lifetime()).then_some((answer, age))
    }

    /// Stores `answer` under `key` (replacing what was there). False, and nothing stored,
    /// when the response is not [`storable`], when it weighs more than `max_entry_bytes`,
    /// or when it is already past its TTL and stale window. True means accepted: under
    /// memory pressure moka's admission may still decline it in favour of busier keys.
    pub fn insert(&self, key: CacheKey, answer: CachedAnswer) -> bool {
        if !storable(&answer.response, self.tool_calls)
            || answer.weight_bytes() > self.max_entry_bytes
            || answer.age() >= answer.lifetime()
        {
            return false;
        }
        self.entries.insert(key, Arc::new(answer));
        self.counters.inserts.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Removes every entry.
    pub fn purge_all(&self) {
        self.entries.invalidate_all();
    }

    /// Removes every entry stored under `scope`; returns how many were removed. Walks all
    /// entries (an admin action, not a request-path one); entries of other scopes stay.
    pub fn purge_scope(&self, scope: &str) -> usize {
        let mut purged = 0;
        for (key, answer) in self.entries.iter() {
            if answer.scope == scope && self.entries.remove(&*key).is_some() {
                purged += 1;
            }
        }
        purged
    }

    /// Applies moka's pending work now (evictions, expiries, counts); moka otherwise does it
    /// a little at a time on reads and writes.
    pub fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }

    /// A request was answered from the cache as fresh.
    pub fn record_hit(&self) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A cacheable request was not answered from the cache.
    pub fn record_miss(&self) {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// A request was answered with a stale entry after every target failed.
    pub fn record_stale(&self) {
        self.counters.stale_served.fetch_add(1, Ordering::Relaxed);
    }

    /// A request skipped the cache.
    pub fn record_bypass(&self) {
        self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters and sizes now (applies moka's pending work first, so the entry count
    /// and bytes are current).
    pub fn stats(&self) -> CacheStats {
        self.entries.run_pending_tasks();
        let counters = &self.counters;
        let hits = counters.hits.load(Ordering::Relaxed);
        let misses = counters.misses.load(Ordering::Relaxed);
        let lookups = hits.saturating_add(misses);
        CacheStats {
            entries: self.entries.entry_count(),
            bytes: self.entries.weighted_size(),
            hits,
            misses,
            stale_served: counters.stale_served.load(Ordering::Relaxed),
            bypassed: counters.bypassed.load(Ordering::Relaxed),
            inserts: counters.inserts.load(Ordering::Relaxed),
            evictions: counters.evictions.load(Ordering::Relaxed),
            hit_rate: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
        }
    }
}

/// Whether a response may be stored: it ended normally (`stop`, a stop sequence, or
/// `length`, which a repeat of the same `max_tokens` would hit again), or in tool calls when
/// `tool_calls_allowed`; never a content-filtered one; never an empty one (no text beyond
/// whitespace and no tool calls); and no tool calls at all unless allowed.
pub fn storable(response: &ChatResponse, tool_calls_allowed: bool) -> bool {
    let finish_ok = match response.finish_reason {
        FinishReason::Stop | FinishReason::StopSequence | FinishReason::Length => true,
        FinishReason::ToolCalls => tool_calls_allowed,
        FinishReason::ContentFilter => false,
    };
    let has_tool_calls = !response.tool_calls.is_empty();
    let non_empty = !response.text.trim().is_empty() || has_tool_calls;
    finish_ok && non_empty && (tool_calls_allowed || !has_tool_calls)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
