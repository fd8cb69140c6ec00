//! The spend stage (tail only): prices what the request used at the served model's prices and
//! appends it to the durable spend ledger, whether or not the request log is on.
//!
//! Cost in the tail: one price lookup and a few integer multiplications; the ledger append
//! updates its in-memory sums and hands the event to its writer thread (a bounded channel:
//! when it is full the hand-off waits on the background runtime, never on disk, and nothing
//! is dropped).

use std::sync::Arc;

use super::budgets::charged_usage;
use super::Stage;
use crate::cost::{PriceBook, SpendEvent, SpendLedger, Usd};
use crate::pipeline::exchange::Finished;

/// The spend stage.
pub struct Spend {
    prices: Arc<PriceBook>,
    ledger: Option<SpendLedger>,
}

impl Spend {
    /// The stage pricing with `prices` and recording into `ledger` (none in tools and tests
    /// that run without one).
    pub fn new(prices: Arc<PriceBook>, ledger: Option<SpendLedger>) -> Spend {
        Spend { prices, ledger }
    }
}

impl Stage for Spend {
    fn on_finish(&self, done: &mut Finished) {
        let Some(route) = done.outcome.route.as_ref() else {
            // No target answered: nothing was consumed upstream.
            done.outcome.cost = Some(Usd::ZERO);
            return;
        };
        let usage = charged_usage(done);
        let cost = self
            .prices
            .catalogue()
            .price(&route.model.name)
            .map(|price| price.cost(&usage));
        done.outcome.cost = cost;
        let Some(ledger) = &self.ledger else {
            return;
        };
        let principal = done.ctx.principal.as_ref();
        let event = SpendEvent {
            ts_ms: chrono::Utc::now().timestamp_millis(),
            request_id: done.ctx.id.clone(),
            user: principal.map(|p| p.user.clone()).unwrap_or_default(),
            team: principal.and_then(|p| p.team.clone()),
            tier: principal.and_then(|p| p.tier.clone()),
            feature: done.ctx.feature.clone(),
            key: principal.map(|p| p.key_id.clone()).unwrap_or_default(),
            model: route.model.name.clone(),
            requested_model: done.request.model.clone(),
            provider: route.provider_name.to_string(),
            input_tokens: usage.input_tokens,
            cached_input_tokens: usage.cached_input_tokens,
            cache_write_input_tokens: usage.cache_write_input_tokens,
            output_tokens: usage.output_tokens,
            cost,
        };
        if let Err(event) = ledger.try_record(event) {
            // The writer is behind: wait for room off the request's path.
            let ledger = ledger.clone();
            match &done.state.background {
                Some(handle) => {
                    done.state
                        .tails
                        .spawn_on(async move { ledger.record(event).await }, handle);
                }
                None => tracing::error!(
                    request_id = %done.ctx.id,
                    "spend ledger full and no background runtime: event not recorded"
                ),
            }
        }
    }
}
