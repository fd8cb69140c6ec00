//! The cache stage: answers an identical request from the response cache before any other
//! stage runs (so a hit spends no rate-limit tokens and no budget), makes identical concurrent
//! misses share one upstream call (single flight), and stores a complete successful answer in
//! the tail (a stream once it completed). When every target of the chain fails, the pipeline
//! asks it for a recent expired entry ([`CacheStage::stale`]).
//!
//! Who decides: `[cache]` (enabled, ttl, scope, stale window), the policy's `cache(req)` hook
//! (`false`, or its own ttl / scope / stale window), and the client's `Cache-Control`
//! (`no-store`: neither look up nor store; `no-cache`: skip the lookup, still store;
//! `max-age=N`: an entry older than N seconds is not a hit).
//!
//! Cost on the request path: nothing when the cache is off; otherwise one SHA-256 over the
//! request's keyed fields and one moka lookup (see `benches/cache.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::{Flow, Stage};
use crate::cache::{
    scope_value, CacheKey, CachedAnswer, FlightGuard, Flights, Joined, Lookup, ResponseCache,
};
use crate::canonical::ChatResponse;
use crate::config::{CacheConfig, CacheScope};
use crate::context::Endpoint;
use crate::error::GatewayError;
use crate::pipeline::exchange::{Exchange, Finished};
use crate::policy::CacheDecision;

/// What the cache did for a request (`x-switchyard-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from a fresh entry.
    Hit,
    /// Looked up (or told to skip the lookup with `no-cache`) and not found: answered live.
    Miss,
    /// Every target failed: answered from an expired entry within the stale window.
    Stale,
    /// Not cached at all (`no-store`, or the policy said `false`).
    Bypass,
}

impl CacheStatus {
    /// The header and log value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// What the cache stage knows about one request.
#[derive(Default)]
pub struct CacheState {
    /// What it did; `None` when the cache is off or the endpoint is not cached.
    pub status: Option<CacheStatus>,
    /// The request's key.
    pub key: Option<CacheKey>,
    /// The scope the key was made in (`team:support`).
    pub scope: String,
    /// Store the answer in the tail (a miss that may be stored).
    pub store: bool,
    /// The entry's fresh lifetime and stale window, as decided.
    pub ttl: Duration,
    /// How long past its TTL the entry may still answer a failing chain.
    pub stale: Duration,
    /// The answered entry's age (hit or stale).
    pub age: Option<Duration>,
    /// The model and provider that served the cached answer originally.
    pub served_by: Option<(String, String)>,
    /// What the cached answer cost when it was served live: what this hit saved.
    pub saved: Option<crate::cost::Usd>,
    /// Why the chain failed, when a stale entry answered instead.
    pub failure: Option<String>,
    /// Leading the single flight of this key: followers wait for the tail.
    pub(crate) flight: Option<FlightGuard>,
}

/// The cache stage.
pub struct CacheStage {
    config: CacheConfig,
    cache: Arc<ResponseCache>,
    flights: Arc<Flights>,
}

/// The parsed `Cache-Control` of a request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Control {
    no_store: bool,
    no_cache: bool,
    max_age: Option<Duration>,
}

fn control(header: Option<&str>) -> Control {
    let mut control = Control::default();
    for directive in header.unwrap_or("").split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        match directive.as_str() {
            "no-store" => control.no_store = true,
            "no-cache" => control.no_cache = true,
            _ => {
                if let Some(seconds) = directive.strip_prefix("max-age=") {
                    if let Ok(seconds) = seconds.trim_matches('"').parse::<u64>() {
                        control.max_age = Some(Duration::from_secs(seconds));
                    }
                }
            }
        }
    }
    control
}

impl CacheStage {
    /// The stage for `config`, on the shared `cache`.
    pub fn new(config: &CacheConfig, cache: Arc<ResponseCache>) -> CacheStage {
        CacheStage {
            config: config.clone(),
            cache,
            flights: Arc::new(Flights::default()),
        }
    }

    /// The cache itself, for `/admin/cache`.
    pub fn cache(&self) -> &Arc<ResponseCache> {
        &self.cache
    }

    /// Every target failed: a recent expired (or fresh) entry for this request, if the
    /// stale window allows one, marked `stale` in the state.
    pub fn stale(&self, exchange: &mut Exchange) -> Option<Box<ChatResponse>> {
        let state = &mut exchange.stages.cache;
        let key = state.key.as_ref()?;
        if state.stale.is_zero() {
            return None;
        }
        let (answer, age) = self.cache.lookup_stale(key)?;
        if age > answer.ttl + state.stale {
            return None;
        }
        self.cache.record_stale();
        state.status = Some(CacheStatus::Stale);
        state.store = false;
        Some(self.answer(state, &answer, age))
    }

    fn answer(
        &self,
        state: &mut CacheState,
        answer: &CachedAnswer,
        age: Duration,
    ) -> Box<ChatResponse> {
        state.age = Some(age);
        state.served_by = Some((answer.served_model.clone(), answer.provider.clone()));
        state.saved = answer.cost;
        Box::new(answer.response.clone())
    }

    /// The key, lifetime and stale window of this request, or `None` when it is not cached.
    fn decide(
        &self,
        exchange: &Exchange,
    ) -> Result<Option<(CacheScope, Duration, Duration)>, GatewayError> {
        let mut scope = self.config.scope;
        let mut ttl = Duration::from_secs(self.config.ttl_s);
        let mut stale = Duration::from_secs(self.config.max_stale_s);
        let Some(decided) = exchange.decided.as_ref() else {
            return Ok(Some((scope, ttl, stale)));
        };
        if !decided.policy.has_cache() {
            return Ok(Some((scope, ttl, stale)));
        }
        let Some(req) = decided.request.as_ref() else {
            return Ok(Some((scope, ttl, stale)));
        };
        let state = exchange.state.clone();
        let decision = crate::pipeline::policy::hook_result(
            &state,
            &exchange.ctx,
            "cache",
            decided.policy.cache(req),
        )?;
        match decision {
            None | Some(CacheDecision::Default) => {}
            Some(CacheDecision::Skip) => return Ok(None),
            Some(CacheDecision::Custom {
                ttl_s,
                scope: custom_scope,
                stale_s,
            }) => {
                if let Some(ttl_s) = ttl_s {
                    ttl = Duration::from_secs(ttl_s);
                }
                if let Some(custom_scope) = custom_scope {
                    scope = custom_scope;
                }
                if let Some(stale_s) = stale_s {
                    // The policy may shorten the stale window, never lengthen it past the config.
                    stale = Duration::from_secs(stale_s.min(self.config.max_stale_s));
                }
            }
        }
        Ok(Some((scope, ttl, stale)))
    }
}

impl Stage for CacheStage {
    fn on_request(&self, exchange: &mut Exchange) -> Result<Flow, GatewayError> {
        if !self.config.enabled || exchange.ctx.endpoint != Endpoint::Chat {
            return Ok(Flow::Continue);
        }
        let control = control(exchange.ctx.cache_control.as_deref());
        let decided = if control.no_store {
            None
        } else {
            self.decide(exchange)?
        };
        let Some((scope, ttl, stale)) = decided else {
            self.cache.record_bypass();
            exchange.stages.cache.status = Some(CacheStatus::Bypass);
            return Ok(Flow::Continue);
        };
        let Some(principal) = exchange.ctx.principal.as_ref() else {
            return Ok(Flow::Continue);
        };
        let scope = scope_value(scope, principal);
        let key = CacheKey::of(&exchange.request, &scope);
        let state = &mut exchange.stages.cache;
        state.scope = scope;
        state.ttl = ttl;
        state.stale = stale;
        state.store = true;
        state.status = Some(CacheStatus::Miss);
        state.key = Some(key);
        if control.no_cache {
            // A forced refresh: answered live, stored for the next one.
            self.cache.record_miss();
            return Ok(Flow::Continue);
        }
        if let Lookup::Fresh(answer, age) = self.cache.lookup(&key, control.max_age) {
            if age < ttl {
                self.cache.record_hit();
                state.status = Some(CacheStatus::Hit);
                state.store = false;
                return Ok(Flow::Respond(self.answer(state, &answer, age)));
            }
        }
        match self.flights.join(key) {
            Joined::Leader(guard) => {
                self.cache.record_miss();
                state.flight = Some(guard);
                Ok(Flow::Continue)
            }
            Joined::Follower(wait) => {
                // An identical request is being answered: wait for it, then look again.
                let cache = self.cache.clone();
                let patience = Duration::from_millis(self.config.flight_wait_ms);
                let max_age = control.max_age;
                Ok(Flow::Wait(Box::pin(async move {
                    wait.wait(patience).await;
                    let found = match cache.lookup(&key, max_age) {
                        Lookup::Fresh(answer, age) if age < ttl => Some((answer, age)),
                        _ => None,
                    };
                    let apply: super::Apply = Box::new(move |exchange: &mut Exchange| {
                        let state = &mut exchange.stages.cache;
                        let Some((answer, age)) = found else {
                            // The leader failed or could not store: answer live.
                            cache.record_miss();
                            return None;
                        };
                        cache.record_hit();
                        state.status = Some(CacheStatus::Hit);
                        state.store = false;
                        state.age = Some(age);
                        state.served_by =
                            Some((answer.served_model.clone(), answer.provider.clone()));
                        state.saved = answer.cost;
                        Some(Box::new(answer.response.clone()))
                    });
                    Ok(apply)
                })))
            }
        }
    }

    fn on_finish(&self, done: &mut Finished) {
        let state = &mut done.stages.cache;
        // Dropping the flight guard wakes the followers after the entry is stored (or not).
        let flight = state.flight.take();
        if state.store && state.status == Some(CacheStatus::Miss) {
            if let (Some(key), Some(answer)) =
                (state.key, cached_answer(done, self.config.tool_calls))
            {
                self.cache.insert(key, answer);
            }
        }
        drop(flight);
    }
}

/// The answer to store, if the request produced a complete successful one.
fn cached_answer(done: &Finished, tool_calls: bool) -> Option<CachedAnswer> {
    let outcome = &done.outcome;
    if outcome.error.is_some() || outcome.client_disconnected || outcome.status != Some(200) {
        return None;
    }
    let route = outcome.route.as_ref()?;
    let response = ChatResponse {
        id: format!("cached-{}", done.ctx.id),
        model: route.model.upstream_id().to_string(),
        text: outcome.text.clone(),
        tool_calls: outcome.tool_calls.clone(),
        finish_reason: outcome.finish?,
        usage: outcome.usage,
    };
    if !crate::cache::storable(&response, tool_calls) {
        return None;
    }
    let state = &done.stages.cache;
    Some(CachedAnswer {
        response,
        served_model: route.model.name.clone(),
        provider: route.provider_name.to_string(),
        stored_at: tokio::time::Instant::now(),
        ttl: state.ttl,
        stale: state.stale,
        scope: state.scope.clone(),
        cost: outcome.cost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_directives_are_read() {
        assert_eq!(control(None), Control::default());
        let c = control(Some("no-cache, max-age=30"));
        assert!(c.no_cache && !c.no_store);
        assert_eq!(c.max_age, Some(Duration::from_secs(30)));
        assert!(control(Some("No-Store")).no_store);
        assert_eq!(control(Some("max-age=abc")).max_age, None);
    }
}
