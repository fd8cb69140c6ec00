//! The budgets stage: prices the request's worst case, reads every `[[budgets]]` entry it
//! matches, lets the policy's `budget(req, spend)` hook choose an action (allow, downgrade,
//! cap, queue, block), applies it, and reserves the worst-case cost on every matching budget,
//! all or none. The tail settles the reservation to the real cost.
//!
//! Without a hook: allow below the hard limit (with a warning past `soft_pct`), block when the
//! worst case would pass it. With a hook, its action is final (a policy may serve a `pro`
//! user past a budget), and the reservation is still counted so that every later request sees
//! it. It runs before the limits stage, so that a downgraded model or a capped `max_tokens` is
//! what the rate limits reserve, and a `queue` action puts the request in the batch lane.
//!
//! Cost on the request path: nothing when no budget is configured, no hook is defined and
//! unpriced models are allowed; otherwise one key per matching rule, one price lookup per
//! target and one ledger reservation (see `benches/budgets.rs`).

use std::sync::Arc;

use super::matcher::{Facts, Matcher, RequestFacts};
use super::{Flow, Stage};
use crate::canonical::Usage;
use crate::config::{BudgetPeriod, BudgetRule, Config, Unpriced};
use crate::context::Endpoint;
use crate::cost::{PriceBook, Usd};
use crate::error::{ErrorCode, ErrorSource, GatewayError};
use crate::ledger::{
    BucketKey, MoneyLedger, MoneyLimit, MoneyRefusal, MoneyReservation, MoneyStatus,
};
use crate::pipeline::exchange::{Exchange, Finished};
use crate::policy::{BudgetAction, BudgetView};

/// What the budgets stage knows about one request.
#[derive(Debug, Default)]
pub struct BudgetsState {
    /// The worst-case reservation, settled in the tail.
    pub reservation: Option<MoneyReservation>,
    /// The budget keys the request counted against, tightest first.
    pub applied: Vec<String>,
    /// The action taken when it was not a plain allow, and the budget behind it.
    pub acted: Option<(String, String)>,
    /// A budget past its soft limit (`key`, percent used, limit, period), for the warning.
    pub warning: Option<String>,
    /// The worst-case cost reserved.
    pub reserved: Usd,
    /// The request joins the batch lane of the rate-limit queue.
    pub batch_lane: bool,
}

impl BudgetsState {
    /// The `x-switchyard-budget` header value: `downgrade; budget=team-daily:team=support`.
    pub fn header(&self) -> Option<String> {
        self.acted
            .as_ref()
            .map(|(action, budget)| format!("{action}; budget={budget}"))
    }
}

/// One `[[budgets]]` rule, prepared once.
struct Rule {
    name: String,
    matcher: Matcher,
    limit: Usd,
    period: BudgetPeriod,
    soft_pct: f64,
}

impl Rule {
    fn new(rule: &BudgetRule) -> Rule {
        Rule {
            name: rule.name.clone(),
            matcher: Matcher::new(&rule.matcher),
            limit: Usd::from_dollars(rule.limit_usd).unwrap_or(Usd::ZERO),
            period: rule.period,
            soft_pct: rule.soft_pct,
        }
    }

    fn limit(&self, key: String) -> MoneyLimit {
        MoneyLimit {
            key: BucketKey::from(key),
            limit: self.limit,
            period: self.period,
        }
    }
}

/// The budgets stage.
pub struct Budgets {
    rules: Vec<Rule>,
    ledger: Arc<MoneyLedger>,
    prices: Arc<PriceBook>,
    unpriced: Unpriced,
    default_output_tokens: u32,
}

/// One matching budget: its ledger limit and its rule.
struct Matched<'a> {
    limit: MoneyLimit,
    rule: &'a Rule,
}

impl Budgets {
    /// The stage for `config`'s budgets, on `ledger`, priced by `prices`.
    pub fn new(config: &Config, ledger: Arc<MoneyLedger>, prices: Arc<PriceBook>) -> Budgets {
        Budgets {
            rules: config.budgets.iter().map(Rule::new).collect(),
            ledger,
            prices,
            unpriced: config.cost.unpriced,
            default_output_tokens: config.admission.reserve_output_tokens,
        }
    }

    /// Every budget `facts` count against, in config order.
    fn matching(&self, facts: &impl Facts) -> Vec<Matched<'_>> {
        self.rules
            .iter()
            .filter_map(|rule| {
                let key = rule.matcher.key(&rule.name, facts)?;
                Some(Matched {
                    limit: rule.limit(key),
                    rule,
                })
            })
            .collect()
    }

    /// The ledger limits of every budget `facts` count against (for restoring spend).
    pub fn limits_for(&self, facts: &impl Facts) -> Vec<MoneyLimit> {
        self.matching(facts).into_iter().map(|m| m.limit).collect()
    }

    /// The most this request can cost on its plan: the dearest priced target's worst case
    /// (input estimate + output allowance). A target without a price adds nothing (its cost
    /// cannot be known; `[cost] unpriced = "block"` removes it from the plan first).
    fn worst_case(&self, exchange: &Exchange) -> Usd {
        let Some(decided) = exchange.decided.as_ref() else {
            return Usd::ZERO;
        };
        let plan = &decided.plan;
        let catalogue = self.prices.catalogue();
        let mut worst = Usd::ZERO;
        for route in &plan.targets {
            let Some(price) = catalogue.price(&route.model.name) else {
                continue;
            };
            let output = match exchange.ctx.endpoint {
                Endpoint::Embeddings => 0,
                Endpoint::Chat => output_allowance(
                    exchange.request.max_tokens,
                    route.model.max_output_tokens,
                    self.default_output_tokens,
                ),
            };
            worst = worst.max(price.worst_case(plan.input_estimate, output));
        }
        worst
    }

    /// `[cost] unpriced = "block"`: take the targets without a price out of the plan; refuse
    /// the request when none is left.
    fn drop_unpriced(&self, exchange: &mut Exchange) -> Result<(), GatewayError> {
        let catalogue = self.prices.catalogue();
        let Some(decided) = exchange.decided.as_mut() else {
            return Ok(());
        };
        let targets = &mut decided.plan.targets;
        let first_unpriced = targets
            .iter()
            .find(|r| catalogue.price(&r.model.name).is_none())
            .map(|r| r.model.name.clone());
        targets.retain(|r| catalogue.price(&r.model.name).is_some());
        match first_unpriced {
            Some(model) if targets.is_empty() => Err(GatewayError::new(
                ErrorSource::Policy,
                ErrorCode::BudgetExceeded,
                format!(
                    "model `{model}` has no price and unpriced models are blocked ([cost] unpriced = \"block\")"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The action without a hook: block when the worst case passes a hard limit, else allow.
    fn default_action(statuses: &[(MoneyStatus, &Rule)], worst: Usd) -> BudgetAction {
        match statuses
            .iter()
            .find(|(s, _)| s.spent + s.reserved + worst > s.limit)
        {
            Some((status, _)) => BudgetAction::Block {
                status: 402,
                message: exceeded_message(status, worst),
            },
            None => BudgetAction::Allow,
        }
    }
}

/// The output tokens a request may produce: its `max_tokens` (within the model's limit), else
/// the model's limit, else the configured reservation.
fn output_allowance(asked: Option<u32>, model_limit: Option<u32>, default: u32) -> u64 {
    let allowance = match (asked, model_limit) {
        (Some(asked), Some(limit)) => asked.min(limit),
        (Some(asked), None) => asked,
        (None, Some(limit)) => limit,
        (None, None) => default,
    };
    u64::from(allowance)
}

fn exceeded_message(status: &MoneyStatus, worst: Usd) -> String {
    format!(
        "budget `{}` exceeded: ${} spent and ${} reserved of ${} this {}; this request may cost up to ${}",
        status.key,
        status.spent,
        status.reserved,
        status.limit,
        status.period.as_str(),
        worst
    )
}

fn view(status: &MoneyStatus) -> BudgetView {
    let name = status
        .key
        .as_str()
        .split_once(':')
        .map_or(status.key.as_str(), |(name, _)| name);
    BudgetView {
        name: name.to_string(),
        scope: Matcher::scope_of(status.key.as_str()).to_string(),
        period: status.period.as_str(),
        limit_usd: status.limit.dollars(),
        spent_usd: status.spent.dollars(),
        reserved_usd: status.reserved.dollars(),
        remaining_usd: status.remaining().dollars(),
        pct: status.pct(),
    }
}

fn blocked(status: u16, message: String) -> GatewayError {
    let code = ErrorCode::for_status(status);
    let mut err = GatewayError::new(ErrorSource::Policy, code, message);
    if code.status() != status {
        err.status_override = Some(status);
    }
    err
}

impl Budgets {
    /// Without a hook: reserve the worst case on every matching budget in one pass over the
    /// buckets, refusing with 402 when it would take one past its limit.
    fn enforce(
        &self,
        exchange: &mut Exchange,
        matched: &[Matched<'_>],
        limits: &[MoneyLimit],
        worst: Usd,
        now_ms: i64,
    ) -> Result<Flow, GatewayError> {
        let state = &mut exchange.stages.budgets;
        let (reservation, before) = self
            .ledger
            .reserve_and_read(limits, worst, true, now_ms)
            .map_err(|refusal| refused(state, refusal, worst))?;
        state.reserved = worst;
        state.reservation = Some(reservation);
        let mut statuses: Vec<(&MoneyStatus, &Rule)> =
            before.iter().zip(matched.iter().map(|m| m.rule)).collect();
        // Tightest first, as the hook would see them.
        statuses.sort_by_key(|(s, _)| s.remaining());
        state.warning = warning(statuses.iter().copied());
        state.applied = statuses.iter().map(|(s, _)| s.key.to_string()).collect();
        Ok(Flow::Continue)
    }
}

/// A refused reservation as the client's error, noting the budget that acted.
fn refused(state: &mut BudgetsState, refusal: MoneyRefusal, worst: Usd) -> GatewayError {
    match refusal {
        MoneyRefusal::Exceeded(status) => {
            state.acted = Some(("block".into(), status.key.to_string()));
            blocked(402, exceeded_message(&status, worst))
        }
        MoneyRefusal::BucketCap { cap } => GatewayError::new(
            ErrorSource::Internal,
            ErrorCode::Unavailable,
            format!("too many live budget buckets (cap {cap}); try again shortly"),
        )
        .with_retry_after(Some(std::time::Duration::from_secs(1))),
    }
}

/// The warning for the first budget (tightest first) at or past its soft limit.
fn warning<'a>(mut statuses: impl Iterator<Item = (&'a MoneyStatus, &'a Rule)>) -> Option<String> {
    statuses
        .find(|(s, rule)| s.pct() >= rule.soft_pct)
        .map(|(s, _)| {
            format!(
                "{} at {:.1}% of ${} this {}",
                s.key,
                s.pct(),
                s.limit,
                s.period.as_str()
            )
        })
}

impl Stage for Budgets {
    fn on_request(&self, exchange: &mut Exchange) -> Result<Flow, GatewayError> {
        let has_hook = exchange
            .decided
            .as_ref()
            .is_some_and(|d| d.policy.has_budget());
        if self.rules.is_empty() && !has_hook && self.unpriced == Unpriced::Allow {
            return Ok(Flow::Continue);
        }
        let now_ms = exchange.ctx.started_at.timestamp_millis();
        if self.unpriced == Unpriced::Block {
            self.drop_unpriced(exchange)?;
        }
        let mut worst = self.worst_case(exchange);
        let matched = self.matching(&RequestFacts {
            ctx: &exchange.ctx,
            model: &exchange.request.model,
        });
        if matched.is_empty() && !has_hook {
            return Ok(Flow::Continue);
        }
        let limits: Vec<MoneyLimit> = matched.iter().map(|m| m.limit.clone()).collect();
        if !has_hook {
            return self.enforce(exchange, &matched, &limits, worst, now_ms);
        }
        let mut statuses: Vec<(MoneyStatus, &Rule)> = self
            .ledger
            .status(&limits, now_ms)
            .into_iter()
            .zip(matched.iter().map(|m| m.rule))
            .collect();
        // Tightest first: the least money left decides and is named.
        statuses.sort_by_key(|(s, _)| s.remaining());
        let action = match exchange.decided.as_ref() {
            Some(decided) => {
                let views: Vec<BudgetView> = statuses.iter().map(|(s, _)| view(s)).collect();
                let spend = crate::policy::budget::spend_to_dynamic(&views, worst.dollars());
                let result = match &decided.request {
                    Some(req) => decided.policy.budget(req, spend),
                    None => Ok(BudgetAction::Allow),
                };
                let state = exchange.state.clone();
                crate::pipeline::policy::hook_result(&state, &exchange.ctx, "budget", result)?
                    .unwrap_or_else(|| Self::default_action(&statuses, worst))
            }
            None => Self::default_action(&statuses, worst),
        };
        let tightest = statuses.first().map(|(s, _)| s.key.to_string());
        let acted_on = tightest.clone().unwrap_or_else(|| "(hook)".to_string());
        match &action {
            BudgetAction::Allow => {}
            BudgetAction::Downgrade(chain) => {
                crate::pipeline::policy::downgrade(exchange, chain)?;
                if self.unpriced == Unpriced::Block {
                    self.drop_unpriced(exchange)?;
                }
                worst = self.worst_case(exchange);
            }
            BudgetAction::Cap(cap) => {
                let request = &mut exchange.request;
                request.max_tokens = Some(request.max_tokens.map_or(*cap, |m| m.min(*cap)));
                worst = self.worst_case(exchange);
            }
            BudgetAction::Queue => exchange.stages.budgets.batch_lane = true,
            BudgetAction::Block { status, message } => {
                exchange.stages.budgets.acted = Some(("block".into(), acted_on));
                return Err(blocked(*status, message.clone()));
            }
        }
        let state = &mut exchange.stages.budgets;
        if !matches!(action, BudgetAction::Allow) {
            state.acted = Some((action.as_str().to_string(), acted_on));
        }
        state.warning = warning(statuses.iter().map(|(s, rule)| (s, *rule)));
        state.applied = statuses.iter().map(|(s, _)| s.key.to_string()).collect();
        if limits.is_empty() {
            return Ok(Flow::Continue);
        }
        // The hook decided to serve: the reservation is counted, never refused.
        match self.ledger.reserve(&limits, worst, false, now_ms) {
            Ok(reservation) => {
                state.reserved = worst;
                state.reservation = Some(reservation);
                Ok(Flow::Continue)
            }
            Err(refusal) => Err(refused(state, refusal, worst)),
        }
    }

    fn on_finish(&self, done: &mut Finished) {
        let Some(reservation) = done.stages.budgets.reservation.take() else {
            return;
        };
        let cost = done.outcome.cost.unwrap_or_default();
        self.ledger
            .settle(reservation, cost, chrono::Utc::now().timestamp_millis());
    }
}

/// The usage to charge: the provider's, and for a response cut short (no finish reason: the
/// client left or the upstream failed mid-stream), never less output than was observed (4
/// bytes a token).
pub fn charged_usage(done: &Finished) -> Usage {
    let mut usage = done.outcome.usage;
    if done.outcome.route.is_some() && done.outcome.finish.is_none() {
        let observed = (done.outcome.text.len()
            + done
                .outcome
                .tool_calls
                .iter()
                .map(|c| c.name.len() + c.arguments.len())
                .sum::<usize>())
        .div_ceil(4) as u64;
        usage.output_tokens = usage.output_tokens.max(observed);
    }
    usage
}
