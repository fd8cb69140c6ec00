//! Circuit breakers, one per provider.
//!
//! A breaker opens after `breaker_failures` consecutive failures, or when the failure rate
//! over the last `breaker_window` outcomes reaches `breaker_error_rate` (with at least
//! `breaker_min_requests` of them); after `breaker_open_ms` it half-opens and lets one probe
//! through: success closes it, failure opens it again.
//!
//! **Panic mode.** When every target of a request's chain has an open breaker, refusing it
//! would turn a short provider outage into a total one (five failures of a single-model setup
//! would refuse everything for `breaker_open_ms`). Instead the request becomes the half-open
//! probe of the provider whose breaker opened first ([`Breakers::panic_probe`]), as a load
//! balancer's panic mode does; at most one probe is in flight per provider, and other
//! requests still get 503 while it runs. Times use tokio's clock, so tests run paused.

use crate::config::DispatchConfig;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
enum State {
    Closed,
    /// Open until `until`; `since` orders panic probes (the oldest open breaker first).
    Open {
        until: Instant,
        since: Instant,
    },
    HalfOpen,
}

#[derive(Debug)]
struct Breaker {
    state: State,
    /// When the probe in flight (half-open or panic) started; a probe whose request vanished
    /// without an outcome is forgotten after `breaker_open_ms`.
    probe_since: Option<Instant>,
    consecutive_failures: u32,
    window: VecDeque<bool>,
}

impl Breaker {
    fn new() -> Self {
        Breaker {
            state: State::Closed,
            probe_since: None,
            consecutive_failures: 0,
            window: VecDeque::new(),
        }
    }

    fn probe_in_flight(&mut self, stale_after: Duration) -> bool {
        match self.probe_since {
            Some(since) if since.elapsed() < stale_after => true,
            _ => {
                self.probe_since = None;
                false
            }
        }
    }
}

/// The breakers of every provider, shared by all requests.
#[derive(Debug)]
pub struct Breakers {
    cfg: DispatchConfig,
    breakers: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    /// Closed breakers with these thresholds.
    pub fn new(cfg: DispatchConfig) -> Self {
        Breakers {
            cfg,
            breakers: Mutex::new(HashMap::new()),
        }
    }

    /// The dispatch settings (thresholds, retries, backoff).
    pub fn config(&self) -> &DispatchConfig {
        &self.cfg
    }

    fn open_for(&self) -> Duration {
        Duration::from_millis(self.cfg.breaker_open_ms)
    }

    /// May a call go to `provider` now? In half-open state only one probe is let through.
    pub fn allow(&self, provider: &str) -> bool {
        let stale = self.open_for();
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(breaker) = breakers.get_mut(provider) else {
            return true;
        };
        match breaker.state {
            State::Closed => true,
            State::Open { until, .. } if Instant::now() < until => false,
            State::Open { .. } | State::HalfOpen => {
                if breaker.probe_in_flight(stale) {
                    return false;
                }
                if matches!(breaker.state, State::Open { .. }) {
                    tracing::info!(provider, "circuit half-open; sending a probe");
                }
                breaker.state = State::HalfOpen;
                breaker.probe_since = Some(Instant::now());
                true
            }
        }
    }

    /// Panic mode: every one of `providers` refused a call. Make this request the probe of
    /// the provider whose breaker opened first and has no probe in flight; `None` when each
    /// already has one (the request is refused).
    pub fn panic_probe<'a>(&self, providers: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        let stale = self.open_for();
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let mut oldest: Option<(&'a str, Instant)> = None;
        for provider in providers {
            let Some(breaker) = breakers.get_mut(provider) else {
                continue;
            };
            let State::Open { since, .. } = breaker.state else {
                continue;
            };
            if breaker.probe_in_flight(stale) {
                continue;
            }
            if oldest.is_none_or(|(_, first)| since < first) {
                oldest = Some((provider, since));
            }
        }
        let (provider, _) = oldest?;
        if let Some(breaker) = breakers.get_mut(provider) {
            breaker.probe_since = Some(Instant::now());
        }
        tracing::warn!(
            provider,
            "every target's circuit is open; probing the oldest (panic mode)"
        );
        Some(provider)
    }

    /// Whether the provider's breaker is closed (for `provider_healthy` in policies).
    pub fn healthy(&self, provider: &str) -> bool {
        let breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        breakers
            .get(provider)
            .is_none_or(|b| matches!(b.state, State::Closed))
    }

    /// Give back a probe slot that `allow` or `panic_probe` handed out for a call that was
    /// never made (the adapter refused the request for this provider): the next request
    /// probes instead, and the breaker's state is untouched.
    pub fn release(&self, provider: &str) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(breaker) = breakers.get_mut(provider) {
            breaker.probe_since = None;
        }
    }

    /// Report the outcome of a call that `allow` or `panic_probe` let through.
    pub fn report(&self, provider: &str, success: bool) {
        let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let breaker = breakers
            .entry(provider.to_string())
            .or_insert_with(Breaker::new);
        let was_probe = breaker.probe_since.take().is_some();
        if breaker.window.len() >= self.cfg.breaker_window.max(1) {
            breaker.window.pop_front();
        }
        breaker.window.push_back(success);
        if success {
            breaker.consecutive_failures = 0;
            if !matches!(breaker.state, State::Closed) {
                tracing::info!(provider, "circuit closed after a successful probe");
                breaker.window.clear();
            }
            breaker.state = State::Closed;
            return;
        }
        breaker.consecutive_failures += 1;
        let failures = breaker.window.iter().filter(|ok| !**ok).count();
        let rate_tripped = breaker.window.len() >= self.cfg.breaker_min_requests
            && failures as f64 / breaker.window.len() as f64 >= self.cfg.breaker_error_rate;
        let trip = was_probe
            || matches!(breaker.state, State::HalfOpen)
            || breaker.consecutive_failures >= self.cfg.breaker_failures
            || rate_tripped;
        if trip && (was_probe || !matches!(breaker.state, State::Open { .. })) {
            if !was_probe {
                tracing::warn!(
                    provider,
                    consecutive = breaker.consecutive_failures,
                    "circuit opened"
                );
            }
            let now = Instant::now();
            breaker.state = State::Open {
                until: now + self.open_for(),
                since: now,
            };
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg() -> DispatchConfig {
        DispatchConfig {
            breaker_failures: 3,
            breaker_open_ms: 1_000,
            ..DispatchConfig::default()
        }
    }

    fn trip(breakers: &Breakers, provider: &str) {
        for _ in 0..3 {
            breakers.report(provider, false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_after_consecutive_failures_and_closes_after_probe() {
        let breakers = Breakers::new(cfg());
        for _ in 0..3 {
            assert!(breakers.allow("p"));
            breakers.report("p", false);
        }
        assert!(!breakers.allow("p"), "open after 3 failures");
        assert!(!breakers.healthy("p"));
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(breakers.allow("p"), "half-open lets one probe through");
        assert!(!breakers.allow("p"), "only one probe at a time");
        breakers.report("p", true);
        assert!(breakers.healthy("p"));
        assert!(breakers.allow("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_the_breaker() {
        let breakers = Breakers::new(cfg());
        trip(&breakers, "p");
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(breakers.allow("p"));
        breakers.report("p", false);
        assert!(!breakers.allow("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_on_error_rate() {
        let breakers = Breakers::new(DispatchConfig {
            breaker_failures: 100,
            breaker_min_requests: 10,
            breaker_error_rate: 0.5,
            ..DispatchConfig::default()
        });
        for i in 0..10 {
            breakers.report("p", i % 2 == 0);
        }
        assert!(!breakers.allow("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn panic_probe_picks_the_breaker_that_opened_first_one_probe_at_a_time() {
        let breakers = Breakers::new(cfg());
        trip(&breakers, "a");
        tokio::time::advance(Duration::from_millis(10)).await;
        trip(&breakers, "b");
        assert!(!breakers.allow("a") && !breakers.allow("b"));
        assert_eq!(
            breakers.panic_probe(["b", "a"]),
            Some("a"),
            "a opened first"
        );
        assert_eq!(
            breakers.panic_probe(["b", "a"]),
            Some("b"),
            "a has its probe in flight, so b is next"
        );
        assert_eq!(breakers.panic_probe(["b", "a"]), None, "both probing");
        breakers.report("a", true);
        assert!(breakers.healthy("a") && breakers.allow("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_panic_probe_reopens_and_moves_to_the_back() {
        let breakers = Breakers::new(cfg());
        trip(&breakers, "a");
        tokio::time::advance(Duration::from_millis(10)).await;
        trip(&breakers, "b");
        assert_eq!(breakers.panic_probe(["a", "b"]), Some("a"));
        tokio::time::advance(Duration::from_millis(10)).await;
        breakers.report("a", false);
        assert_eq!(breakers.panic_probe(["a", "b"]), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_never_reports_is_forgotten() {
        let breakers = Breakers::new(cfg());
        trip(&breakers, "p");
        assert_eq!(breakers.panic_probe(["p"]), Some("p"));
        assert_eq!(breakers.panic_probe(["p"]), None);
        tokio::time::advance(Duration::from_millis(1_001)).await;
        assert!(
            breakers.allow("p"),
            "the lost probe no longer blocks half-open"
        );
    }
}
