//! Model capacity: whether a target has headroom for a request before dispatch calls it.
//!
//! Two sources, both checked per target: the model's own `tpm` / `rpm` from `[[models]]` (a
//! bucket `capacity:<model>` on the rate-limit ledger, reserved per attempt and settled to the
//! real usage in the tail), and what the provider said in its rate-limit headers or a 429
//! `Retry-After` ([`RateHints`], lowered by every reservation sent since). A target without
//! headroom is skipped with no upstream call (an attempt with reason `capacity`).
//!
//! Cost on the request path: one hash lookup for a model with neither `tpm`/`rpm` nor hints;
//! otherwise one ledger reservation on one bucket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use crate::config::{Config, ModelConfig};
use crate::ledger::{
    Admission, BucketKey, BucketLimit, Demand, LedgerError, Limit, LimitWindow, Reservation,
};
use crate::policy::{LimitStatus, LimitsView};
use crate::providers::{RateHints, Route};

/// Whether a target can take a request now.
#[derive(Debug)]
pub enum Room {
    /// It can; settle the reservation (if the model has `tpm`/`rpm`) after the response.
    Yes(Option<Reservation>),
    /// It cannot: why, and when it may (`None`: not within any known time).
    No {
        /// What is exhausted, for the attempt's record.
        why: String,
        /// When room is expected back.
        free_in: Option<Duration>,
    },
}

/// Capacity of every model: its `tpm`/`rpm` bucket and its provider's hints.
pub struct Capacity {
    admission: Arc<Admission>,
    hints: Arc<RateHints>,
    /// Model name → its capacity bucket (only models with `tpm` or `rpm`).
    buckets: HashMap<String, BucketLimit>,
    /// Model name → (provider, upstream id), for `headroom(model)`.
    models: HashMap<String, (String, String)>,
    default_output_tokens: u32,
}

impl Capacity {
    /// Capacity for `config`'s models, on `admission`'s ledger and the registry's `hints`.
    pub fn new(config: &Config, admission: Arc<Admission>, hints: Arc<RateHints>) -> Capacity {
        let buckets = config
            .models
            .iter()
            .filter(|m| m.tpm.is_some() || m.rpm.is_some())
            .map(|m| {
                let limit = Limit {
                    tokens_per_minute: m.tpm,
                    requests_per_minute: m.rpm,
                    ..Limit::default()
                };
                (m.name.clone(), BucketLimit::new(bucket_key(&m.name), limit))
            })
            .collect();
        let models = config
            .models
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    (m.provider.clone(), m.upstream_id().to_string()),
                )
            })
            .collect();
        Capacity {
            admission,
            hints,
            buckets,
            models,
            default_output_tokens: config.admission.reserve_output_tokens,
        }
    }

    /// The tokens a chat request reserves on `model`: its input estimate (`input`) plus its output
    /// allowance (`max_tokens` capped by the model's limit, else the model's
    /// `reserve_output_tokens`, else its `max_output_tokens`, else `[admission]`'s default).
    pub fn reservation_tokens(
        &self,
        input: u64,
        max_tokens: Option<u32>,
        model: Option<&ModelConfig>,
    ) -> u64 {
        reservation_tokens(input, max_tokens, model, self.default_output_tokens)
    }

    /// Take room for one attempt at `route` with `tokens`.
    pub async fn take(&self, route: &Route, tokens: u64) -> Room {
        let (provider, upstream) = (&*route.provider_name, route.model.upstream_id());
        let said = self.hints.headroom(provider, upstream);
        if let Some(wait) = said.blocked_for {
            return Room::No {
                why: format!("provider `{provider}` asked to wait (429 Retry-After)"),
                free_in: Some(wait),
            };
        }
        if let Some(left) = said.tokens_remaining.filter(|left| *left < tokens) {
            return Room::No {
                why: format!(
                    "provider `{provider}` reports {left} tokens left for `{upstream}`; the request needs {tokens}"
                ),
                free_in: said.tokens_reset_in,
            };
        }
        if said.requests_remaining == Some(0) {
            return Room::No {
                why: format!("provider `{provider}` reports no requests left for `{upstream}`"),
                free_in: said.requests_reset_in,
            };
        }
        let reservation = match self.buckets.get(&route.model.name) {
            None => None,
            Some(bucket) => {
                match self
                    .admission
                    .ledger()
                    .reserve(std::slice::from_ref(bucket), Demand { tokens })
                    .await
                {
                    Ok(reservation) => Some(reservation),
                    Err(LedgerError::Denied(denied)) => {
                        return Room::No {
                            why: format!(
                                "model `{}` is at its {} ({})",
                                route.model.name,
                                match denied.window {
                                    LimitWindow::TokensPerMinute => "tpm",
                                    _ => "rpm",
                                },
                                bucket
                                    .limit
                                    .get(denied.window)
                                    .map_or_else(String::new, |n| n.to_string())
                            ),
                            free_in: denied.retry_after,
                        }
                    }
                    Err(err @ LedgerError::BucketCap { .. }) => {
                        return Room::No {
                            why: err.to_string(),
                            free_in: Some(Duration::from_secs(1)),
                        }
                    }
                }
            }
        };
        self.hints.spend(provider, upstream, tokens);
        Room::Yes(reservation)
    }

    /// Give back an attempt's room that was not used (the attempt failed before an answer).
    pub fn release(&self, reservation: Option<Reservation>) {
        if let Some(reservation) = reservation {
            self.admission
                .settle_detached(reservation, Demand::default(), None);
        }
    }

    /// Tokens left this minute for `model`: the tighter of its `tpm` bucket and its
    /// provider's word; `None` when neither limits it.
    pub fn headroom(&self, model: &str) -> Option<u64> {
        let from_bucket = self.buckets.get(model).and_then(|bucket| {
            bucket.limit.tokens_per_minute?;
            let status = self
                .admission
                .ledger()
                .status(&bucket.key)
                .now_or_never()?
                .ok()?;
            Some(match status {
                // Not live: full.
                None => bucket.limit.tokens_per_minute.unwrap_or(0),
                Some(status) => status
                    .windows
                    .iter()
                    .find(|w| w.window == LimitWindow::TokensPerMinute)
                    .map_or(0, |w| u64::try_from(w.remaining.max(0)).unwrap_or(0)),
            })
        });
        let said = self
            .models
            .get(model)
            .map(|(provider, upstream)| self.hints.headroom(provider, upstream));
        let from_provider = said.and_then(|s| {
            if s.blocked_for.is_some() {
                Some(0)
            } else {
                s.tokens_remaining
            }
        });
        match (from_bucket, from_provider) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One bucket for `limit_status(key)`.
    pub fn limit_status(&self, key: &str) -> Option<LimitStatus> {
        let key = BucketKey::from(key);
        let status = self
            .admission
            .ledger()
            .status(&key)
            .now_or_never()?
            .ok()??;
        let window = status.windows.first()?;
        Some(LimitStatus {
            window: window.window.as_str(),
            used: i64::try_from(window.limit)
                .unwrap_or(i64::MAX)
                .saturating_sub(window.remaining),
            limit: window.limit,
            resets_in_ms: u64::try_from(window.resets_in.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// The policy helpers `headroom(model)` and `limit_status(key)` read the live capacity.
pub struct LiveLimits(pub Arc<Capacity>);

impl LimitsView for LiveLimits {
    fn headroom(&self, model: &str) -> Option<u64> {
        self.0.headroom(model)
    }

    fn limit_status(&self, key: &str) -> Option<LimitStatus> {
        self.0.limit_status(key)
    }
}

/// The name of a model's capacity bucket.
pub fn bucket_key(model: &str) -> String {
    format!("capacity:{model}")
}

/// See [`Capacity::reservation_tokens`]; `input` is the request's quick input estimate.
pub fn reservation_tokens(
    input: u64,
    max_tokens: Option<u32>,
    model: Option<&ModelConfig>,
    default: u32,
) -> u64 {
    let limit = model.and_then(|m| m.max_output_tokens);
    let allowance = match (max_tokens, limit) {
        (Some(asked), Some(limit)) => asked.min(limit),
        (Some(asked), None) => asked,
        (None, _) => model
            .and_then(|m| m.reserve_output_tokens.or(m.max_output_tokens))
            .unwrap_or(default),
    };
    input.saturating_add(u64::from(allowance))
}
