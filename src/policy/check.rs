//! The self-check a set must pass before it is put in force: every defined hook is called
//! on built-in sample requests (short and long inputs; tiers free/pro/enterprise/none;
//! features chat/batch/none; streaming and not; temperature absent, 0 and 0.7; with and
//! without tools) and must not fail at run time or return a bad shape. `route` must return
//! a valid decision naming only known models; `throw` refusals are allowed.

use super::budget::{spend_to_dynamic, BudgetView};
use super::decision::PolicyRequest;
use super::set::{HookFailure, PolicySet};
use super::PolicyError;
use crate::canonical::{ChatRequest, Message, Role, Tool};
use crate::context::{Endpoint, Principal, RequestContext};
use crate::error::Dialect;
use std::collections::{BTreeMap, HashSet};

/// Estimated tokens of the long sample request.
const LONG_SAMPLE_TOKENS: u64 = 30_000;

/// The sample requests of the self-check, each with a label naming it in error messages.
/// `models` are the model names to ask for (cycled through); empty means `gpt-4o-mini`.
pub fn sample_requests(models: &[String]) -> Vec<(String, PolicyRequest)> {
    let short = "What is the capital of France?".to_string();
    // About 4 bytes per token.
    let sentence = "The quarterly report lists revenue, costs and risks by region. ";
    let long = sentence.repeat((LONG_SAMPLE_TOKENS as usize * 4) / sentence.len() + 1);
    let mut samples = Vec::new();
    let mut index = 0usize;
    for tier in ["free", "pro", "enterprise", ""] {
        for feature in ["chat", "batch", ""] {
            for (size, text) in [("short", &short), ("long", &long)] {
                for stream in [true, false] {
                    let model = models
                        .get(index % models.len().max(1))
                        .cloned()
                        .unwrap_or_else(|| "gpt-4o-mini".to_string());
                    index += 1;
                    let optional = |s: &str| (!s.is_empty()).then(|| s.to_string());
                    let mut metadata = BTreeMap::new();
                    let mut headers = BTreeMap::new();
                    if !feature.is_empty() {
                        metadata.insert("feature".to_string(), feature.to_string());
                        headers.insert("x-switchyard-feature".to_string(), feature.to_string());
                    }
                    let temperature = match index % 3 {
                        0 => None,
                        1 => Some(0.0),
                        _ => Some(0.7),
                    };
                    let tools = if index % 4 == 1 {
                        vec![sample_tool()]
                    } else {
                        Vec::new()
                    };
                    let label = format!(
                        "model={model} tier={} feature={} input={size} stream={stream} \
                         temperature={} tools={}",
                        if tier.is_empty() { "none" } else { tier },
                        if feature.is_empty() { "none" } else { feature },
                        temperature.map_or("none".to_string(), |t: f64| t.to_string()),
                        tools.len(),
                    );
                    let request = ChatRequest {
                        model,
                        messages: vec![
                            Message::text(Role::System, "You are a helpful assistant."),
                            Message::text(Role::User, text.clone()),
                        ],
                        stream,
                        max_tokens: (index % 2 == 0).then_some(512),
                        temperature,
                        tools,
                        metadata,
                        ..ChatRequest::default()
                    };
                    let mut ctx = RequestContext::new(Dialect::OpenAi, Endpoint::Chat);
                    ctx.id = format!("self-check-{index}");
                    ctx.headers = headers;
                    ctx.resolve_feature(request.metadata.get("feature"));
                    ctx.principal = Some(Principal {
                        key_id: "self-check".to_string(),
                        user: "self-check".to_string(),
                        team: optional(if index % 2 == 0 { "support" } else { "" }),
                        tier: optional(tier),
                    });
                    let req = PolicyRequest::build(&ctx, &request);
                    samples.push((label, req));
                }
            }
        }
    }
    samples
}

/// The tool some sample requests offer.
fn sample_tool() -> Tool {
    Tool {
        name: "get_weather".to_string(),
        description: Some("Current weather in a city.".to_string()),
        parameters: serde_json::json!({
            "type": "object",
            "properties": { "city": { "type": "string" } },
            "required": ["city"],
        }),
    }
}

/// Texts the `redact` hook is checked on.
const REDACT_SAMPLES: &[&str] = &[
    "",
    "contact jane.doe@example.com or +1 555 0100 about card 4111 1111 1111 1111",
    "plain text with nothing to hide",
];

/// `spend` samples for the `budget` hook: no budget, one under its soft limit, one team and
/// one user budget past it, one at 100 %.
fn sample_spends() -> Vec<(&'static str, rhai::Dynamic)> {
    let view = |name: &str, scope: &str, period, limit: f64, spent: f64| BudgetView {
        name: name.to_string(),
        scope: scope.to_string(),
        period,
        limit_usd: limit,
        spent_usd: spent,
        reserved_usd: 0.0,
        remaining_usd: limit - spent,
        pct: if limit > 0.0 {
            spent / limit * 100.0
        } else {
            100.0
        },
    };
    vec![
        ("no budget", spend_to_dynamic(&[], 0.01)),
        (
            "budget at 10%",
            spend_to_dynamic(&[view("daily", "user=sample", "day", 10.0, 1.0)], 0.01),
        ),
        (
            "budgets at 85% and 96%",
            spend_to_dynamic(
                &[
                    view("team-monthly", "team=sample", "month", 100.0, 96.0),
                    view("daily", "user=sample", "day", 10.0, 8.5),
                ],
                0.01,
            ),
        ),
        (
            "budget at 100%",
            spend_to_dynamic(&[view("total", "all", "total", 5.0, 5.0)], 0.01),
        ),
    ]
}

impl PolicySet {
    /// Call every defined hook on the sample requests. With `known_models`, every model a
    /// `route` decision names must be in it. Returns the number of hook calls made.
    pub fn self_check(&self, known_models: Option<&HashSet<String>>) -> Result<usize, PolicyError> {
        let mut asked: Vec<String> = known_models
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default();
        asked.sort();
        let mut calls = 0;
        let samples =
            if self.has_route() || self.has_limits() || self.has_budget() || self.has_cache() {
                sample_requests(&asked)
            } else {
                Vec::new()
            };
        for (label, req) in &samples {
            if self.has_route() {
                calls += 1;
                match self.route_hook(req) {
                    Ok(Some(decision)) => {
                        if let Some(known) = known_models {
                            if let Some(unknown) =
                                decision.chain.iter().find(|m| !known.contains(*m))
                            {
                                let mut names: Vec<&str> =
                                    known.iter().map(String::as_str).collect();
                                names.sort_unstable();
                                return Err(PolicyError::SelfCheck {
                                    file: self.hook_file("route"),
                                    line: 0,
                                    column: 0,
                                    message: format!(
                                        "route returned unknown model `{unknown}` for sample \
                                         request ({label}); known models: {}",
                                        names.join(", ")
                                    ),
                                });
                            }
                        }
                    }
                    Ok(None) | Err(HookFailure::Refused { .. }) => {}
                    Err(failure) => return Err(failed("route", label, failure)),
                }
            }
            if self.has_limits() {
                calls += 1;
                match self.limits_hook(req) {
                    Ok(_) | Err(HookFailure::Refused { .. }) => {}
                    Err(failure) => return Err(failed("limits", label, failure)),
                }
            }
            if self.has_cache() {
                calls += 1;
                match self.cache_hook(req) {
                    Ok(_) | Err(HookFailure::Refused { .. }) => {}
                    Err(failure) => return Err(failed("cache", label, failure)),
                }
            }
            if self.has_budget() {
                for (spend_label, spend) in sample_spends() {
                    calls += 1;
                    match self.budget_hook(req, spend) {
                        Ok(_) | Err(HookFailure::Refused { .. }) => {}
                        Err(failure) => {
                            let label = format!("{label}, {spend_label}");
                            return Err(failed("budget", &label, failure));
                        }
                    }
                }
            }
        }
        if self.has_redact() {
            for text in REDACT_SAMPLES {
                calls += 1;
                match self.redact_hook(text) {
                    Ok(_) | Err(HookFailure::Refused { .. }) => {}
                    Err(failure) => {
                        let label = format!("{} bytes of text", text.len());
                        return Err(failed("redact", &label, failure));
                    }
                }
            }
        }
        Ok(calls)
    }
}

fn failed(hook: &str, label: &str, failure: HookFailure) -> PolicyError {
    match failure {
        HookFailure::Runtime {
            file,
            line,
            column,
            message,
        } => PolicyError::SelfCheck {
            file,
            line,
            column,
            message: format!("{hook} failed on sample request ({label}): {message}"),
        },
        HookFailure::Refused { status, message } => PolicyError::SelfCheck {
            file: String::new(),
            line: 0,
            column: 0,
            message: format!("{hook} refused ({status}) on sample ({label}): {message}"),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn samples_cover_tiers_features_sizes_streaming_temperatures_and_tools() {
        let samples = sample_requests(&["a".to_string(), "b".to_string()]);
        assert_eq!(samples.len(), 48);
        for tier in ["free", "pro", "enterprise"] {
            assert!(samples.iter().any(|(_, r)| r.tier.as_deref() == Some(tier)));
        }
        assert!(samples.iter().any(|(_, r)| r.tier.is_none()));
        assert!(samples
            .iter()
            .any(|(_, r)| r.feature.as_deref() == Some("batch")));
        assert!(samples
            .iter()
            .any(|(_, r)| r.est_input_tokens >= LONG_SAMPLE_TOKENS));
        assert!(samples.iter().any(|(_, r)| r.est_input_tokens < 100));
        assert!(samples.iter().any(|(_, r)| r.stream) && samples.iter().any(|(_, r)| !r.stream));
        assert!(samples.iter().any(|(_, r)| r.model == "b"));
        for temperature in [None, Some(0.0), Some(0.7)] {
            assert!(samples.iter().any(|(_, r)| r.temperature == temperature));
        }
        assert!(samples.iter().any(|(_, r)| r.tools.is_empty()));
        assert!(samples.iter().any(|(_, r)| r.tools == ["get_weather"]));
        let long = samples
            .iter()
            .map(|(_, r)| r.prompt_text.len())
            .max()
            .unwrap();
        assert!(long > 100_000 && long < 1024 * 1024, "{long}");
    }
}
