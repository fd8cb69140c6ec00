//! The response cache: identical chat requests answered without calling a provider.
//!
//! - [`key`]: what is keyed. [`CacheKey::of`] hashes (SHA-256) a canonical encoding of the
//!   requested model, every message (role, text, images, tool calls and results, names),
//!   the tools (parameters with JSON keys sorted), `tool_choice`, `parallel_tool_calls`,
//!   `response_format`, the sampling parameters (`temperature`, `top_p`, `top_k`, `stop`,
//!   `max_tokens`, `seed`, penalties) and the tenant scope ([`scope_value`]: `key:…`,
//!   `user:…`, `team:…` or `global`). Not `stream`, `metadata` or `end_user`.
//! - [`store`]: what is stored. A [`CachedAnswer`] holds the whole answer (text, tool
//!   calls, finish reason, usage), the model and provider that served it, its scope, when
//!   it was stored, its TTL and stale window, and what it cost live. [`ResponseCache`]
//!   classifies a lookup as fresh, stale or a miss, and counts hits, misses, stale answers,
//!   bypasses, inserts and evictions for `/admin/cache`. [`storable`] says which answers
//!   may be kept.
//! - [`flight`]: single flight. [`Flights::join`] makes the first request for a key the
//!   leader and the rest followers that wait for its answer.
//!
//! Bounds: entries weigh their bytes (strings plus a fixed overhead) and moka holds at most
//! `max_bytes` of them, refusing any single entry above `max_entry_bytes`; each entry
//! expires at TTL + stale window; at most [`DEFAULT_MAX_FLIGHTS`] keys (or the number given
//! to [`Flights::new`]) are in flight at once, and a follower waits at most the timeout it
//! passes (`flight_wait_ms`).

pub mod flight;
pub mod key;
pub mod store;

pub use flight::{FlightEnd, FlightGuard, FlightWait, Flights, Joined, DEFAULT_MAX_FLIGHTS};
pub use key::{scope_value, CacheKey};
pub use store::{storable, CacheStats, CachedAnswer, Lookup, ResponseCache};
