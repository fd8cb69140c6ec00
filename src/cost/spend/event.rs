//! What the ledger records ([`SpendEvent`]), the dimensions it is counted by
//! ([`Dimension`]) and the sums it keeps ([`SpendUsage`]).

use serde::{Deserialize, Serialize};

use crate::cost::Usd;

/// Longest dimension value or request id kept, in bytes; a longer one is cut at a character
/// boundary when recorded. Bounds a frame and an aggregate key (user ids, key names and
/// model names are far shorter).
pub const MAX_VALUE_BYTES: usize = 1024;

/// The latest instant an event may carry (9999-12-31T23:59:59.999Z): later (and negative)
/// timestamps are clamped into `0..=MAX_EVENT_TS_MS` when recorded, so that every event has a
/// `YYYY-MM-DD` file.
pub const MAX_EVENT_TS_MS: i64 = 253_402_300_799_999;

/// One served request's spend: who, through what, how many tokens, and what it cost.
///
/// Stored as one JSON object per frame, `cost` as the integer `cost_nanos` (nano-dollars,
/// never a float; `null` when the model has no price, "cost_unknown"). Unknown fields are
/// ignored when read back, so a newer gateway's files stay readable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendEvent {
    /// When the request was served, Unix milliseconds (UTC); names the file it goes to.
    pub ts_ms: i64,
    /// The request's id, as in the request log.
    pub request_id: String,
    /// The principal's user.
    pub user: String,
    /// The principal's team, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// The principal's tier, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The feature the request declared, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature: Option<String>,
    /// The API key's name (never the secret).
    pub key: String,
    /// The configured model that served the request.
    pub model: String,
    /// The provider that served it.
    pub provider: String,
    /// Input tokens, cached ones included.
    #[serde(default)]
    pub input_tokens: u64,
    /// Input tokens read from the provider's prompt cache.
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Input tokens written to the provider's prompt cache.
    #[serde(default)]
    pub cache_write_input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// What it cost; `None` when the model has no price (never counted as $0 silently:
    /// it shows in `unpriced_requests` and `unpriced_models`).
    #[serde(default, rename = "cost_nanos", with = "cost_nanos")]
    pub cost: Option<Usd>,
}

impl SpendEvent {
    /// The event's value for `dim` (`None` for an absent team, tier or feature).
    pub fn value(&self, dim: Dimension) -> Option<&str> {
        match dim {
            Dimension::User => Some(&self.user),
            Dimension::Team => self.team.as_deref(),
            Dimension::Tier => self.tier.as_deref(),
            Dimension::Feature => self.feature.as_deref(),
            Dimension::Key => Some(&self.key),
            Dimension::Model => Some(&self.model),
            Dimension::Provider => Some(&self.provider),
        }
    }

    /// Clamps the timestamp and cuts overlong strings (see [`MAX_VALUE_BYTES`] and
    /// [`MAX_EVENT_TS_MS`]); done once when an event is recorded.
    pub(crate) fn normalize(&mut self) {
        self.ts_ms = self.ts_ms.clamp(0, MAX_EVENT_TS_MS);
        for text in [
            &mut self.request_id,
            &mut self.user,
            &mut self.key,
            &mut self.model,
            &mut self.provider,
        ] {
            cut(text);
        }
        for text in [&mut self.team, &mut self.tier, &mut self.feature]
            .into_iter()
            .flatten()
        {
            cut(text);
        }
    }
}

/// Cuts `text` to at most [`MAX_VALUE_BYTES`] at a character boundary.
fn cut(text: &mut String) {
    if text.len() > MAX_VALUE_BYTES {
        let mut end = MAX_VALUE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// `Option<Usd>` as an integer count of nano-dollars or `null`.
mod cost_nanos {
    use super::Usd;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(cost: &Option<Usd>, s: S) -> Result<S::Ok, S::Error> {
        match cost {
            Some(cost) => s.serialize_i64(cost.nanos()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Usd>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(Usd::from_nanos))
    }
}

/// A dimension spend is counted and grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// The principal's user.
    User,
    /// The principal's team.
    Team,
    /// The principal's tier.
    Tier,
    /// The declared feature.
    Feature,
    /// The API key's name.
    Key,
    /// The configured model served.
    Model,
    /// The provider that served.
    Provider,
}

impl Dimension {
    /// Every dimension, in column order.
    pub const ALL: [Dimension; 7] = [
        Dimension::User,
        Dimension::Team,
        Dimension::Tier,
        Dimension::Feature,
        Dimension::Key,
        Dimension::Model,
        Dimension::Provider,
    ];

    /// The name in queries, CSV headers and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Team => "team",
            Dimension::Tier => "tier",
            Dimension::Feature => "feature",
            Dimension::Key => "key",
            Dimension::Model => "model",
            Dimension::Provider => "provider",
        }
    }

    /// The position in [`Dimension::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dimension {
    type Err = String;

    /// Parses `user`, `team`, `tier`, `feature`, `key`, `model` or `provider`.
    fn from_str(text: &str) -> Result<Dimension, String> {
        Dimension::ALL
            .into_iter()
            .find(|dim| dim.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown dimension `{text}`; expected one of user, team, tier, feature, key, model, provider"
                )
            })
    }
}

/// Sums over a set of events: requests, tokens and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendUsage {
    /// Requests counted.
    pub requests: u64,
    /// Input tokens (cached ones included).
    pub input_tokens: u64,
    /// Input tokens read from a prompt cache.
    pub cached_input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// The cost of the priced requests.
    pub cost: Usd,
    /// Requests with no price (their cost is unknown, not zero).
    pub unpriced_requests: u64,
}

impl SpendUsage {
    /// Adds one event (saturating).
    pub fn add(&mut self, event: &SpendEvent) {
        self.requests = self.requests.saturating_add(1);
        self.input_tokens = self.input_tokens.saturating_add(event.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(event.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(event.output_tokens);
        match event.cost {
            Some(cost) => self.cost += cost,
            None => self.unpriced_requests = self.unpriced_requests.saturating_add(1),
        }
    }

    /// Adds another sum (saturating).
    pub fn merge(&mut self, other: &SpendUsage) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(other.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
        self.cost += other.cost;
        self.unpriced_requests = self
            .unpriced_requests
            .saturating_add(other.unpriced_requests);
    }

    /// Takes another sum back out (saturating at zero).
    pub fn subtract(&mut self, other: &SpendUsage) {
        self.requests = self.requests.saturating_sub(other.requests);
        self.input_tokens = self.input_tokens.saturating_sub(other.input_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_sub(other.cached_input_tokens);
        self.output_tokens = self.output_tokens.saturating_sub(other.output_tokens);
        self.cost -= other.cost;
        self.unpriced_requests = self
            .unpriced_requests
            .saturating_sub(other.unpriced_requests);
    }

    /// The sum as JSON fields: counts as integers, `cost_usd` as an exact decimal string
    /// and `cost_nanos` as an integer.
    pub(crate) fn json_fields(&self, object: &mut serde_json::Map<String, serde_json::Value>) {
        object.insert("requests".into(), self.requests.into());
        object.insert("input_tokens".into(), self.input_tokens.into());
        object.insert(
            "cached_input_tokens".into(),
            self.cached_input_tokens.into(),
        );
        object.insert("output_tokens".into(), self.output_tokens.into());
        object.insert("cost_usd".into(), self.cost.to_string().into());
        object.insert("cost_nanos".into(), self.cost.nanos().into());
        object.insert("unpriced_requests".into(), self.unpriced_requests.into());
    }
}
