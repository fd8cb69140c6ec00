//! Single flight: while one request for a key is with a provider, identical requests wait
//! for its answer instead of calling the provider too.
//!
//! The first to [`Flights::join`] a key is the [`Joined::Leader`] and gets a [`FlightGuard`];
//! every later one is a [`Joined::Follower`] with a [`FlightWait`]. The flight ends when the
//! guard goes: [`FlightGuard::done`] after the leader stored its answer, or the guard's drop
//! when the leader failed or its request was cancelled. Either way every follower wakes at
//! once (a `watch` channel: no polling, no lost wake-up).
//!
//! A follower then looks the cache up again. If the answer is not there (the leader failed,
//! its answer was not storable, or the wait timed out) the follower goes on its own:
//!
//! - after [`FlightEnd::Abandoned`] it may [`Flights::join`] again with what is left of its
//!   wait: the first to rejoin becomes the next leader and the rest follow it, so a failed
//!   leader does not turn its followers into a herd;
//! - after [`FlightEnd::Done`] without a stored answer, or [`FlightEnd::TimedOut`], it calls
//!   the provider itself (rejoining would only wait for the same outcome).
//!
//! Bounded: at most `max_flights` keys are registered at once. Beyond that `join` answers
//! `Leader` with a guard that registers nothing, so the request simply goes without single
//! flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::key::CacheKey;

/// The default bound on keys in flight at once.
pub const DEFAULT_MAX_FLIGHTS: usize = 100_000;

/// Shards of the flight map (a join locks one shard, briefly).
const SHARDS: usize = 16;

/// Where a flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlightState {
    /// The leader is still at work.
    Running,
    /// The leader finished (`done`): its answer is in the cache if it was storable.
    Done,
}

/// One registered flight: which leader owns it and how followers learn that it ended.
struct Registered {
    id: u64,
    state: watch::Receiver<FlightState>,
}

struct Inner {
    shards: Box<[Mutex<HashMap<CacheKey, Registered>>]>,
    registered: AtomicUsize,
    max_flights: usize,
    next_id: AtomicU64,
}

impl Inner {
    fn shard(&self, key: &CacheKey) -> MutexGuard<'_, HashMap<CacheKey, Registered>> {
        // Nothing panics while a shard is locked; a poisoned lock still holds a sound map.
        // The digest is uniform: its first byte spreads keys evenly over the shards.
        let index = usize::from(key.as_bytes()[0]) % self.shards.len().max(1);
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The keys in flight. Cheap to clone (clones share the map).
#[derive(Clone)]
pub struct Flights {
    inner: Arc<Inner>,
}

impl Default for Flights {
    fn default() -> Self {
        Flights::new(DEFAULT_MAX_FLIGHTS)
    }
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("in_flight", &self.in_flight())
            .field("max_flights", &self.inner.max_flights)
            .finish()
    }
}

/// What [`Flights::join`] made of a request.
#[derive(Debug)]
pub enum Joined {
    /// No identical request is in flight: call the provider, store the answer, then end the
    /// flight ([`FlightGuard::done`], or drop the guard).
    Leader(FlightGuard),
    /// An identical request is in flight: [`FlightWait::wait`] for it, then look up again.
    Follower(FlightWait),
}

impl Flights {
    /// An empty map holding at most `max_flights` keys in flight.
    pub fn new(max_flights: usize) -> Flights {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        Flights {
            inner: Arc::new(Inner {
                shards,
                registered: AtomicUsize::new(0),
                max_flights,
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Joins the flight for `key`: leader if none is in flight (or the map is full),
    /// follower otherwise.
    pub fn join(&self, key: CacheKey) -> Joined {
        let mut shard = self.inner.shard(&key);
        if let Some(flight) = shard.get(&key) {
            return Joined::Follower(FlightWait {
                state: flight.state.clone(),
            });
        }
        let (sender, receiver) = watch::channel(FlightState::Running);
        if self.inner.registered.fetch_add(1, Ordering::Relaxed) >= self.inner.max_flights {
            self.inner.registered.fetch_sub(1, Ordering::Relaxed);
            drop(shard);
            return Joined::Leader(FlightGuard {
                flights: Arc::clone(&self.inner),
                key,
                id: None,
                state: sender,
            });
        }
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        shard.insert(
            key,
            Registered {
                id,
                state: receiver,
            },
        );
        drop(shard);
        Joined::Leader(FlightGuard {
            flights: Arc::clone(&self.inner),
            key,
            id: Some(id),
            state: sender,
        })
    }

    /// How many keys are in flight now.
    pub fn in_flight(&self) -> usize {
        self.inner.registered.load(Ordering::Relaxed)
    }
}

/// The leader's hold on a flight. The flight ends when it is dropped or
/// [`done`](FlightGuard::done): every follower wakes. Carry it until the answer is stored
/// (the request's finish step), so a cancelled request still ends its flight.
pub struct FlightGuard {
    flights: Arc<Inner>,
    key: CacheKey,
    /// `None` when the map was full and nothing was registered.
    id: Option<u64>,
    state: watch::Sender<FlightState>,
}

impl FlightGuard {
    /// Ends the flight after the leader's attempt finished (call it once the answer is
    /// stored, or is known not to be): followers wake with [`FlightEnd::Done`].
    pub fn done(self) {
        self.state.send_replace(FlightState::Done);
        // Drop unregisters the key.
    }

    /// The key this flight is for.
    pub fn key(&self) -> &CacheKey {
        &self.key
    }

    /// Whether the flight is registered (false when the map was full: nobody can follow).
    pub fn is_registered(&self) -> bool {
        self.id.is_some()
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        // Unregister first, so a request that arrives now leads a new flight; the sender is
        // dropped after this body, waking followers that were not woken by `done`.
        let Some(id) = self.id else {
            return;
        };
        let mut shard = self.flights.shard(&self.key);
        if shard.get(&self.key).is_some_and(|flight| flight.id == id) {
            shard.remove(&self.key);
            self.flights.registered.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for FlightGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlightGuard")
            .field("key", &self.key)
            .field("registered", &self.id.is_some())
            .finish()
    }
}

/// How a follower's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlightEnd {
    /// The leader finished: look the cache up (a miss means its answer was not storable).
    Done,
    /// The leader went without finishing (failed or cancelled): look up, then rejoin or go.
    Abandoned,
    /// The wait ran out first: go on alone.
    TimedOut,
}

/// A follower's ticket: wait for the leader's flight to end.
#[derive(Debug)]
pub struct FlightWait {
    state: watch::Receiver<FlightState>,
}

impl FlightWait {
    /// Waits until the leader's flight ends or `timeout` passes (`flight_wait_ms`).
    pub async fn wait(mut self, timeout: Duration) -> FlightEnd {
        let ended = self.state.wait_for(|state| *state == FlightState::Done);
        match tokio::time::timeout(timeout, ended).await {
            Ok(Ok(_)) => FlightEnd::Done,
            Ok(Err(_)) => FlightEnd::Abandoned,
            Err(_) => FlightEnd::TimedOut,
        }
    }
}

#[cfg(test)]
#[path = "flight_tests.rs"]
mod tests;
