//! What a hook sees ([`PolicyRequest`], as a Rhai map) and what `route` answers ([`Decision`]).

use crate::canonical::ChatRequest;
use crate::context::RequestContext;
use rhai::{Array, Dynamic, Map, FLOAT, INT};
use serde::Serialize;
use std::collections::BTreeMap;

/// The request as policies see it. [`PolicyRequest::to_dynamic`] turns it into the Rhai map
/// `req` with exactly these field names. Absent optional strings (`team`, `tier`, `feature`)
/// become `""` so scripts can compare them without a type check; an absent `max_tokens` or
/// `temperature` becomes `()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyRequest {
    /// The gateway's request id.
    pub id: String,
    /// `chat` or `embeddings`.
    pub endpoint: &'static str,
    /// The principal's user name.
    pub user: String,
    /// The principal's team.
    pub team: Option<String>,
    /// The principal's tier (e.g. `free`, `pro`, `enterprise`).
    pub tier: Option<String>,
    /// The product feature: `x-switchyard-feature` header, else `metadata.feature`.
    pub feature: Option<String>,
    /// The model the client asked for.
    pub model: String,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// The client's `max_tokens`.
    pub max_tokens: Option<u32>,
    /// The client's sampling `temperature`.
    pub temperature: Option<f64>,
    /// Names of the tools the client offers the model (empty: none).
    pub tools: Vec<String>,
    /// `(role, text)` of every message, text parts joined with newlines.
    pub messages: Vec<(String, String)>,
    /// All message text joined with newlines.
    pub prompt_text: String,
    /// Estimated input tokens.
    pub est_input_tokens: u64,
    /// The body's `metadata`.
    pub metadata: BTreeMap<String, String>,
    /// The request's `x-*` headers, names lower case. Credentials never reach scripts:
    /// [`PolicyRequest::to_dynamic`] drops any header whose name mentions a key, token,
    /// secret, auth or cookie (e.g. `x-api-key`, which carries Anthropic SDKs' gateway key).
    pub headers: BTreeMap<String, String>,
}

impl PolicyRequest {
    /// The request as scripts see it: the one builder used by the live path, the self-check
    /// and `switchyard policy test`, so all three decide alike. `est_input_tokens` is the
    /// cheap byte-based estimate ([`crate::tokens::quick_estimate_input`]) everywhere.
    pub fn build(ctx: &RequestContext, req: &ChatRequest) -> PolicyRequest {
        Self::build_with_estimate(ctx, req, crate::tokens::quick_estimate_input(req))
    }

    /// [`PolicyRequest::build`] with the input estimate already computed (the live path
    /// computes it once per request and shares it).
    pub fn build_with_estimate(
        ctx: &RequestContext,
        req: &ChatRequest,
        est_input_tokens: u64,
    ) -> PolicyRequest {
        let principal = ctx.principal.as_ref();
        PolicyRequest {
            id: ctx.id.clone(),
            endpoint: ctx.endpoint.as_str(),
            user: principal.map(|p| p.user.clone()).unwrap_or_default(),
            team: principal.and_then(|p| p.team.clone()),
            tier: principal.and_then(|p| p.tier.clone()),
            feature: ctx.feature.clone(),
            model: req.model.clone(),
            stream: req.stream,
            max_tokens: req.max_tokens,
            temperature: req.temperature,
            tools: req.tools.iter().map(|t| t.name.clone()).collect(),
            messages: req
                .messages
                .iter()
                .map(|m| (m.role.as_str().to_string(), m.joined_text()))
                .collect(),
            prompt_text: req.prompt_text(),
            est_input_tokens,
            metadata: req.metadata.clone(),
            headers: ctx.headers.clone(),
        }
    }

    /// The Rhai map scripts receive as `req`.
    pub fn to_dynamic(&self) -> Dynamic {
        let mut map = Map::new();
        let text = |s: &str| Dynamic::from(s.to_string());
        let optional = |s: &Option<String>| text(s.as_deref().unwrap_or(""));
        map.insert("id".into(), text(&self.id));
        map.insert("endpoint".into(), text(self.endpoint));
        map.insert("user".into(), text(&self.user));
        map.insert("team".into(), optional(&self.team));
        map.insert("tier".into(), optional(&self.tier));
        map.insert("feature".into(), optional(&self.feature));
        map.insert("model".into(), text(&self.model));
        map.insert("stream".into(), Dynamic::from_bool(self.stream));
        map.insert(
            "max_tokens".into(),
            self.max_tokens
                .map_or(Dynamic::UNIT, |n| Dynamic::from_int(INT::from(n))),
        );
        map.insert(
            "temperature".into(),
            self.temperature
                .map_or(Dynamic::UNIT, |t| Dynamic::from_float(t as FLOAT)),
        );
        let tools: Array = self.tools.iter().map(|name| text(name)).collect();
        map.insert("tools".into(), Dynamic::from_array(tools));
        let messages: Array = self
            .messages
            .iter()
            .map(|(role, content)| {
                let mut message = Map::new();
                message.insert("role".into(), text(role));
                message.insert("content".into(), text(content));
                Dynamic::from_map(message)
            })
            .collect();
        map.insert("messages".into(), Dynamic::from_array(messages));
        map.insert("prompt_text".into(), text(&self.prompt_text));
        map.insert(
            "est_input_tokens".into(),
            Dynamic::from_int(INT::try_from(self.est_input_tokens).unwrap_or(INT::MAX)),
        );
        map.insert("metadata".into(), string_map(&self.metadata));
        let headers: Map = self
            .headers
            .iter()
            .filter(|(name, _)| !is_credential_header(name))
            .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
            .collect();
        map.insert("headers".into(), Dynamic::from_map(headers));
        Dynamic::from_map(map)
    }
}

/// Whether a header may carry a credential and must be hidden from scripts.
fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["key", "token", "secret", "auth", "cookie", "password"]
        .iter()
        .any(|word| name.contains(word))
}

fn string_map(values: &BTreeMap<String, String>) -> Dynamic {
    let map: Map = values
        .iter()
        .map(|(k, v)| (k.as_str().into(), Dynamic::from(v.clone())))
        .collect();
    Dynamic::from_map(map)
}

/// Where and how to send a request, as `route` decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Model names to try in order; never empty.
    pub chain: Vec<String>,
    /// Deadline of one attempt (non-streaming) in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Deadline of a stream's first token in milliseconds.
    pub first_token_ms: Option<u64>,
    /// `max_tokens` to send instead of the client's.
    pub max_tokens: Option<u32>,
    /// Retries per target on retryable errors (at most 10).
    pub retries: Option<u32>,
    /// The policy version that decided.
    pub policy_version: u64,
}

/// Keys a `route` map may hold.
const DECISION_KEYS: &[&str] = &[
    "chain",
    "model",
    "timeout_ms",
    "first_token_ms",
    "max_tokens",
    "retries",
];

/// Read what `route` returned: a model name, an array of model names, or a map
/// `#{ chain | model, timeout_ms, first_token_ms, max_tokens, retries }` (a key set to `()`
/// counts as absent). `()` means "no decision" (`Ok(None)`). Anything else is an error
/// whose message says what was wrong.
pub(crate) fn decision_from_dynamic(
    value: Dynamic,
    policy_version: u64,
) -> Result<Option<Decision>, String> {
    if value.is_unit() {
        return Ok(None);
    }
    let mut decision = Decision {
        chain: Vec::new(),
        timeout_ms: None,
        first_token_ms: None,
        max_tokens: None,
        retries: None,
        policy_version,
    };
    if value.is_string() || value.is_array() {
        decision.chain = chain_from_dynamic(value, "route")?;
        return Ok(Some(decision));
    }
    let Some(map) = value.try_cast::<Map>() else {
        return Err("route must return a model name, an array of model names or a map".to_string());
    };
    let unknown: Vec<&str> = map
        .keys()
        .map(|k| k.as_str())
        .filter(|k| !DECISION_KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "route returned unknown keys: {} (allowed: {})",
            unknown.join(", "),
            DECISION_KEYS.join(", ")
        ));
    }
    let present = |key: &str| map.get(key).filter(|v| !v.is_unit()).cloned();
    decision.chain = match (present("chain"), present("model")) {
        (Some(chain), None) => chain_from_dynamic(chain, "chain")?,
        (None, Some(model)) => {
            let name = model
                .into_immutable_string()
                .map_err(|t| format!("route `model` must be a string, not {t}"))?;
            vec![model_name(name.as_str(), "model")?]
        }
        (Some(_), Some(_)) => return Err("route returned both `chain` and `model`".into()),
        (None, None) => return Err("route map needs `chain` or `model`".into()),
    };
    decision.timeout_ms = present("timeout_ms")
        .map(|v| number(v, "timeout_ms", 1, u64::MAX))
        .transpose()?;
    decision.first_token_ms = present("first_token_ms")
        .map(|v| number(v, "first_token_ms", 1, u64::MAX))
        .transpose()?;
    decision.max_tokens = present("max_tokens")
        .map(|v| number(v, "max_tokens", 1, u64::from(u32::MAX)).map(|n| n as u32))
        .transpose()?;
    decision.retries = present("retries")
        .map(|v| number(v, "retries", 0, MAX_RETRIES).map(|n| n as u32))
        .transpose()?;
    Ok(Some(decision))
}

fn chain_from_dynamic(value: Dynamic, what: &str) -> Result<Vec<String>, String> {
    if value.is_string() {
        let name = value.into_immutable_string().unwrap_or_default();
        return Ok(vec![model_name(name.as_str(), what)?]);
    }
    let Some(items) = value.try_cast::<Array>() else {
        return Err(format!(
            "route `{what}` must be a model name or an array of model names"
        ));
    };
    if items.is_empty() {
        return Err(format!("route `{what}` is an empty array"));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let name = item
                .into_immutable_string()
                .map_err(|t| format!("route `{what}[{i}]` must be a string, not {t}"))?;
            model_name(name.as_str(), what)
        })
        .collect()
}

fn model_name(name: &str, what: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("route `{what}` holds an empty model name"));
    }
    Ok(name.to_string())
}

/// The most retries per target a policy may ask for.
const MAX_RETRIES: u64 = 10;

fn number(value: Dynamic, key: &str, min: u64, max: u64) -> Result<u64, String> {
    let type_name = value.type_name();
    let n = value
        .as_int()
        .map_err(|_| format!("route `{key}` must be an integer, not {type_name}"))?;
    u64::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("route `{key}` must be between {min} and {max}, not {n}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::canonical::{Message, Role};

    fn eval(script: &str) -> Dynamic {
        rhai::Engine::new().eval::<Dynamic>(script).unwrap()
    }

    #[test]
    fn request_map_has_the_contract_field_names() {
        let req = PolicyRequest {
            user: "alice".into(),
            max_tokens: Some(64),
            messages: vec![("user".into(), "hi".into())],
            ..PolicyRequest::default()
        };
        let map = req.to_dynamic().cast::<Map>();
        let mut keys: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "endpoint",
                "est_input_tokens",
                "feature",
                "headers",
                "id",
                "max_tokens",
                "messages",
                "metadata",
                "model",
                "prompt_text",
                "stream",
                "team",
                "temperature",
                "tier",
                "tools",
                "user"
            ]
        );
        assert_eq!(map["team"].clone().into_string().unwrap(), "");
        assert_eq!(map["max_tokens"].as_int().unwrap(), 64);
        let messages = map["messages"].clone().cast::<Array>();
        let first = messages[0].clone().cast::<Map>();
        assert_eq!(first["content"].clone().into_string().unwrap(), "hi");
    }

    #[test]
    fn credential_headers_never_reach_scripts() {
        let mut req = PolicyRequest::default();
        for name in [
            "x-api-key",
            "X-Goog-Api-Key",
            "x-auth-token",
            "x-switchyard-feature",
        ] {
            req.headers.insert(name.to_string(), "v".to_string());
        }
        let map = req.to_dynamic().cast::<Map>();
        let headers = map["headers"].clone().cast::<Map>();
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-switchyard-feature"]);
    }

    #[test]
    fn absent_max_tokens_and_temperature_are_unit_and_no_tools_an_empty_array() {
        let map = PolicyRequest::default().to_dynamic().cast::<Map>();
        assert!(map["max_tokens"].is_unit());
        assert!(map["temperature"].is_unit());
        assert!(map["tools"].clone().cast::<Array>().is_empty());
    }

    #[test]
    fn temperature_and_tool_names_reach_scripts() {
        let chat = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![Message::text(Role::User, "weather?")],
            temperature: Some(0.0),
            tools: vec![crate::canonical::Tool {
                name: "get_weather".into(),
                description: None,
                parameters: serde_json::json!({ "type": "object" }),
            }],
            ..ChatRequest::default()
        };
        let ctx = RequestContext::new(
            crate::error::Dialect::OpenAi,
            crate::context::Endpoint::Chat,
        );
        let req = PolicyRequest::build(&ctx, &chat);
        assert_eq!(req.temperature, Some(0.0));
        assert_eq!(req.tools, ["get_weather"]);
        let map = req.to_dynamic().cast::<Map>();
        assert_eq!(map["temperature"].as_float().unwrap(), 0.0);
        let tools = map["tools"].clone().cast::<Array>();
        assert_eq!(tools[0].clone().into_string().unwrap(), "get_weather");
    }

    #[test]
    fn build_takes_the_context_and_the_request() {
        let mut chat = ChatRequest {
            model: "gpt-4o".into(),
            messages: vec![Message::text(Role::User, "hello")],
            ..ChatRequest::default()
        };
        chat.metadata.insert("feature".into(), "search".into());
        let mut ctx = RequestContext::new(
            crate::error::Dialect::OpenAi,
            crate::context::Endpoint::Embeddings,
        );
        ctx.resolve_feature(chat.metadata.get("feature"));
        let req = PolicyRequest::build(&ctx, &chat);
        assert_eq!(req.feature.as_deref(), Some("search"));
        assert_eq!(req.endpoint, "embeddings");
        assert_eq!(
            req.messages,
            vec![("user".to_string(), "hello".to_string())]
        );
        assert_eq!(req.prompt_text, "hello");
        assert_eq!(
            req.est_input_tokens,
            crate::tokens::quick_estimate_input(&chat)
        );
        let map = req.to_dynamic().cast::<Map>();
        assert_eq!(map["endpoint"].clone().into_string().unwrap(), "embeddings");
    }

    #[test]
    fn string_array_and_map_become_decisions() {
        let d = decision_from_dynamic(eval(r#""gpt-4o""#), 3)
            .unwrap()
            .unwrap();
        assert_eq!(d.chain, ["gpt-4o"]);
        assert_eq!(d.policy_version, 3);
        let d = decision_from_dynamic(eval(r#"["a", "b"]"#), 1)
            .unwrap()
            .unwrap();
        assert_eq!(d.chain, ["a", "b"]);
        let d = decision_from_dynamic(
            eval(r#"#{ chain: ["a"], timeout_ms: 100, first_token_ms: 50, max_tokens: 9, retries: 2 }"#),
            1,
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.timeout_ms, Some(100));
        assert_eq!(d.first_token_ms, Some(50));
        assert_eq!(d.max_tokens, Some(9));
        assert_eq!(d.retries, Some(2));
        let d = decision_from_dynamic(eval(r#"#{ model: "a", timeout_ms: () }"#), 1)
            .unwrap()
            .unwrap();
        assert_eq!(d.chain, ["a"]);
        assert_eq!(d.timeout_ms, None);
    }

    #[test]
    fn unit_means_no_decision() {
        assert_eq!(decision_from_dynamic(Dynamic::UNIT, 1).unwrap(), None);
    }

    #[test]
    fn bad_shapes_are_errors_that_say_why() {
        let err = decision_from_dynamic(eval(r#"#{ chain: "a", timout_ms: 5 }"#), 1).unwrap_err();
        assert!(err.contains("timout_ms"), "{err}");
        let err = decision_from_dynamic(eval("42"), 1).unwrap_err();
        assert!(err.contains("model name"), "{err}");
        let err = decision_from_dynamic(eval("[]"), 1).unwrap_err();
        assert!(err.contains("empty"), "{err}");
        let err = decision_from_dynamic(eval(r#"["a", 1]"#), 1).unwrap_err();
        assert!(err.contains("[1]"), "{err}");
        let err = decision_from_dynamic(eval(r#"#{ chain: "a", timeout_ms: -1 }"#), 1).unwrap_err();
        assert!(err.contains("timeout_ms"), "{err}");
        let err =
            decision_from_dynamic(eval(r#"#{ chain: "a", first_token_ms: 0 }"#), 1).unwrap_err();
        assert!(err.contains("between 1"), "{err}");
        let err = decision_from_dynamic(eval(r#"#{ chain: "a", retries: 11 }"#), 1).unwrap_err();
        assert!(err.contains("retries"), "{err}");
        let err = decision_from_dynamic(eval(r#"#{ chain: "a", retries: 1.5 }"#), 1).unwrap_err();
        assert!(err.contains("integer"), "{err}");
        let err = decision_from_dynamic(eval(r#"#{ chain: "a", model: "b" }"#), 1).unwrap_err();
        assert!(err.contains("both"), "{err}");
        let err = decision_from_dynamic(eval(r#"#{ timeout_ms: 5 }"#), 1).unwrap_err();
        assert!(err.contains("needs"), "{err}");
    }
}
