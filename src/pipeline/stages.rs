//! The stage list: the stages that run between the policy decision and dispatch, and whose
//! finish hooks run in the exchange's single tail.
//!
//! A stage is a type implementing [`Stage`], built once at start from the config, with a
//! typed per-request [`Stage::State`]. Adding one touches its own file and this list only:
//! a field in [`Stages`], a field in [`StageStates`], and one line in each of
//! [`Stages::on_request`] and [`Stages::on_finish`], in the documented order.
//!
//! Order before dispatch (`on_request`), each may answer early, wait or refuse:
//! 0. `cache` (`stages/cache.rs`): answer a fresh hit (before the budgets and limits, so a
//!    hit spends neither), or wait for an identical request in flight (single flight).
//! 1. `budgets` (`stages/budgets.rs`): price the worst case, let the `budget` hook choose an
//!    action (downgrade, cap, queue, block), reserve on every matching budget, or refuse
//!    with 402. Before the limits, so that they reserve for the model and `max_tokens` the
//!    budget left, in the lane it chose.
//! 2. `limits` (`stages/limits.rs`): reserve on every matching rate limit, wait in the fair
//!    queue, or refuse with 429.
//!
//! Order in the tail (`on_finish`), after usage is settled and before the log hand-off:
//! 1. `spend` (`stages/spend.rs`): price the usage and append it to the spend ledger.
//! 2. `cache`: store a complete successful answer, then wake the identical requests waiting.
//! 3. `budgets`: settle the worst-case reservation to the real cost.
//! 4. `limits`: settle the reservation to the real usage (refund or charge).
//! 5. `metrics` (`stages/metrics.rs`): one sample into the Prometheus registry.
//!
//! A disabled feature is a stage whose hooks return at once, never an `if` elsewhere.

mod budgets;
mod cache;
mod limits;
pub mod matcher;
mod metrics;
mod spend;

pub use budgets::{charged_usage, Budgets, BudgetsState};
pub use cache::{CacheStage, CacheState, CacheStatus};
pub use limits::{settled_tokens, LimitsState};
pub use metrics::MetricsStage;
pub use spend::Spend;

use super::exchange::{Exchange, Finished};
use crate::cache::ResponseCache;
use crate::canonical::ChatResponse;
use crate::config::Config;
use crate::cost::{PriceBook, SpendLedger};
use crate::error::GatewayError;
use crate::ledger::{Admission, MoneyLedger};
use futures_util::future::BoxFuture;
use std::sync::Arc;

/// What a stage's `on_request` decides.
pub enum Flow {
    /// Go on to the next stage, then dispatch.
    Continue,
    /// Answer now with this response (rendered in the client's dialect, streamed if asked);
    /// later stages and dispatch are skipped, the finish step still runs.
    Respond(Box<ChatResponse>),
    /// Wait for this future (a queue slot, an identical request in flight), apply what it
    /// produced to the exchange, then go on, or answer if the applied step says so; its error
    /// refuses the request.
    Wait(BoxFuture<'static, Result<Apply, GatewayError>>),
}

/// What a waiting stage writes into the exchange once its wait is over; an answer ends the
/// stages there like [`Flow::Respond`].
pub type Apply = Box<dyn FnOnce(&mut Exchange) -> Option<Box<ChatResponse>> + Send>;

/// One stage of the request path. Its per-request state is its own typed field of
/// [`StageStates`], reached through the exchange (`exchange.stages.<name>`).
pub trait Stage: Send + Sync + 'static {
    /// Before dispatch, after the policy decided the chain. The default goes on.
    fn on_request(&self, _exchange: &mut Exchange) -> Result<Flow, GatewayError> {
        Ok(Flow::Continue)
    }

    /// Exactly once per request, whatever happened (success, error, stream end, client gone,
    /// shutdown), with real or estimated usage settled. Must be cheap and never fail.
    fn on_finish(&self, _done: &mut Finished) {}
}

/// Every stage, built once at start.
pub struct Stages {
    cache: CacheStage,
    budgets: Arc<Budgets>,
    limits: limits::Limits,
    spend: Spend,
    metrics: MetricsStage,
}

/// Every stage's per-request state.
#[derive(Default)]
pub struct StageStates {
    pub cache: CacheState,
    pub budgets: BudgetsState,
    pub limits: LimitsState,
}

/// The shared state the stages use, built once at start.
pub struct StageParts {
    /// Rate-limit admission (ledger and fair queue).
    pub admission: Arc<Admission>,
    /// Budget buckets.
    pub money: Arc<MoneyLedger>,
    /// The live price catalogue.
    pub prices: Arc<PriceBook>,
    /// The durable spend ledger (`None` in tools and tests that run without one).
    pub spend: Option<SpendLedger>,
    /// The response cache.
    pub cache: Arc<ResponseCache>,
    /// The Prometheus registry.
    pub metrics: Arc<crate::observe::Metrics>,
}

impl Stages {
    /// Build the stages from the config and the shared state they use.
    pub fn new(config: &Config, parts: StageParts) -> Stages {
        Stages {
            cache: CacheStage::new(&config.cache, parts.cache),
            budgets: Arc::new(Budgets::new(config, parts.money, parts.prices.clone())),
            limits: limits::Limits::new(config, parts.admission, parts.metrics.clone()),
            spend: Spend::new(parts.prices, parts.spend),
            metrics: MetricsStage::new(config.metrics.enabled.then_some(parts.metrics)),
        }
    }

    /// Every target failed: a stale cached answer for this request, if one may be served.
    pub fn stale(&self, exchange: &mut Exchange) -> Option<Box<ChatResponse>> {
        self.cache.stale(exchange)
    }

    /// The budgets stage (its matcher rebuilds budgets from the spend ledger at start).
    pub fn budgets(&self) -> &Arc<Budgets> {
        &self.budgets
    }

    /// Run each stage's `on_request` in order; an early answer skips the rest and dispatch.
    pub async fn on_request(
        &self,
        exchange: &mut Exchange,
    ) -> Result<Option<Box<ChatResponse>>, GatewayError> {
        if let Some(answer) = run(&self.cache, exchange).await? {
            return Ok(Some(answer));
        }
        if let Some(answer) = run(&*self.budgets, exchange).await? {
            return Ok(Some(answer));
        }
        if let Some(answer) = run(&self.limits, exchange).await? {
            return Ok(Some(answer));
        }
        Ok(None)
    }

    /// Run each stage's `on_finish` in order.
    pub fn on_finish(&self, done: &mut Finished) {
        self.spend.on_finish(done);
        self.cache.on_finish(done);
        self.budgets.on_finish(done);
        self.limits.on_finish(done);
        self.metrics.on_finish(done);
    }
}

/// Run one stage's `on_request`, waiting when it asks to: each line of
/// [`Stages::on_request`] calls it, so that an early answer short-circuits the rest.
pub async fn run(
    stage: &impl Stage,
    exchange: &mut Exchange,
) -> Result<Option<Box<ChatResponse>>, GatewayError> {
    match stage.on_request(exchange)? {
        Flow::Continue => Ok(None),
        Flow::Respond(answer) => Ok(Some(answer)),
        Flow::Wait(wait) => {
            let apply = wait.await?;
            Ok(apply(exchange))
        }
    }
}
