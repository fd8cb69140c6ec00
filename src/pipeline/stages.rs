//! The stage list: the stages that run between the policy decision and dispatch, and whose
//! finish hooks run in the exchange's single tail.
//!
//! A stage is a type implementing [`Stage`], built once at start from the config, with a
//! typed per-request [`Stage::State`]. Adding one touches its own file and this list only:
//! a field in [`Stages`], a field in [`StageStates`], and one line in each of
//! [`Stages::on_request`] and [`Stages::on_finish`], in the documented order.
//!
//! Order before dispatch (`on_request`), each may answer early or refuse:
//! (none yet — cache, admit (limits, budgets) land here in that order)
//!
//! Order in the tail (`on_finish`), after usage is settled and before the log hand-off:
//! (none yet — settle the ledger, fill the cache, count the metrics)
//!
//! A disabled feature is a stage whose hooks return at once, never an `if` elsewhere.

use super::exchange::{Exchange, Finished};
use crate::canonical::ChatResponse;
use crate::config::Config;
use crate::error::GatewayError;
use futures_util::future::BoxFuture;

/// What a stage's `on_request` decides.
pub enum Flow {
    /// Go on to the next stage, then dispatch.
    Continue,
    /// Answer now with this response (rendered in the client's dialect, streamed if asked);
    /// later stages and dispatch are skipped, the finish step still runs.
    Respond(Box<ChatResponse>),
    /// Wait for this future (a queue slot), then go on; its error refuses the request.
    Wait(BoxFuture<'static, Result<(), GatewayError>>),
}

/// One stage of the request path. Its per-request state is its own typed field of
/// [`StageStates`], reached through the exchange (`exchange.stages.<name>`).
pub trait Stage: Send + Sync + 'static {
    /// Before dispatch, after the policy decided the chain. The default goes on.
    fn on_request(&self, _exchange: &mut Exchange) -> Result<Flow, GatewayError> {
        Ok(Flow::Continue)
    }

    /// Exactly once per request, whatever happened (success, error, stream end, client gone,
    /// shutdown), with real or estimated usage settled. Must be cheap and never fail.
    fn on_finish(&self, _done: &Finished) {}
}

/// Every stage, built once at start.
#[derive(Default)]
pub struct Stages {}

/// Every stage's per-request state.
#[derive(Default)]
pub struct StageStates {}

impl Stages {
    /// Build the stages from the config.
    pub fn from_config(_config: &Config) -> Stages {
        Stages {}
    }

    /// Run each stage's `on_request` in order; an early answer skips the rest and dispatch.
    pub async fn on_request(
        &self,
        _exchange: &mut Exchange,
    ) -> Result<Option<Box<ChatResponse>>, GatewayError> {
        Ok(None)
    }

    /// Run each stage's `on_finish` in order.
    pub fn on_finish(&self, _done: &Finished) {}
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
        Flow::Wait(wait) => wait.await.map(|()| None),
    }
}
