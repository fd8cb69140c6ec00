//! The `match` of `[[limits]]` and `[[budgets]]` rules: which requests a rule counts, and the
//! bucket key it counts them under (`{name}:{field}={value}…`, one bucket per value for
//! `"*"`). The same matcher reads a live request and a spend-ledger event, so a restart
//! rebuilds a budget from the ledger under exactly the keys the requests used.

use crate::config::LimitMatch;
use crate::context::RequestContext;

/// A field a rule can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    User,
    Team,
    Tier,
    Feature,
    Model,
    Key,
}

impl Field {
    /// The field's name in config and keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::User => "user",
            Field::Team => "team",
            Field::Tier => "tier",
            Field::Feature => "feature",
            Field::Model => "model",
            Field::Key => "key",
        }
    }
}

/// What a rule is matched against: a request, or a recorded spend event.
pub trait Facts {
    /// The value of `field`, if the subject has one.
    fn get(&self, field: Field) -> Option<&str>;
}

/// A live request: its principal, feature and requested model.
pub struct RequestFacts<'a> {
    pub ctx: &'a RequestContext,
    pub model: &'a str,
}

impl Facts for RequestFacts<'_> {
    fn get(&self, field: Field) -> Option<&str> {
        let principal = self.ctx.principal.as_ref();
        match field {
            Field::User => principal.map(|p| p.user.as_str()),
            Field::Team => principal.and_then(|p| p.team.as_deref()),
            Field::Tier => principal.and_then(|p| p.tier.as_deref()),
            Field::Feature => self.ctx.feature.as_deref(),
            Field::Model => Some(self.model),
            Field::Key => principal.map(|p| p.key_id.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
enum MatchValue {
    /// `"*"`: any value, one bucket per value.
    Each,
    /// Exactly this value.
    Is(String),
}

/// A rule's `match`, prepared once.
#[derive(Debug, Clone, Default)]
pub struct Matcher {
    fields: Vec<(Field, MatchValue)>,
}

impl Matcher {
    /// The matcher of a `match = { … }` table (an omitted field matches everything).
    pub fn new(m: &LimitMatch) -> Matcher {
        let fields = [
            (Field::User, &m.user),
            (Field::Team, &m.team),
            (Field::Tier, &m.tier),
            (Field::Feature, &m.feature),
            (Field::Model, &m.model),
            (Field::Key, &m.key),
        ]
        .into_iter()
        .filter_map(|(field, value)| {
            let value = value.as_deref()?;
            Some((
                field,
                if value == "*" {
                    MatchValue::Each
                } else {
                    MatchValue::Is(value.to_string())
                },
            ))
        })
        .collect();
        Matcher { fields }
    }

    /// The bucket key `name:field=value…` of `facts` under this rule, if it matches.
    pub fn key(&self, name: &str, facts: &impl Facts) -> Option<String> {
        let mut key = String::with_capacity(name.len() + 24 * self.fields.len());
        key.push_str(name);
        for (field, wanted) in &self.fields {
            let value = facts.get(*field)?;
            if let MatchValue::Is(wanted) = wanted {
                if wanted != value {
                    return None;
                }
            }
            key.push(':');
            key.push_str(field.as_str());
            key.push('=');
            key.push_str(value);
        }
        Some(key)
    }

    /// Whose bucket a key is: the `field=value` parts of `key`, or `all` for a rule that
    /// matches every request.
    pub fn scope_of(key: &str) -> &str {
        match key.split_once(':') {
            Some((_, scope)) => scope,
            None => "all",
        }
    }

    /// Whether every match value is fixed (no `"*"`): the rule has exactly one bucket.
    pub fn is_single(&self) -> bool {
        self.fields
            .iter()
            .all(|(_, v)| matches!(v, MatchValue::Is(_)))
    }

    /// The one bucket key of a rule without `"*"`.
    pub fn single_key(&self, name: &str) -> Option<String> {
        let mut key = name.to_string();
        for (field, value) in &self.fields {
            let MatchValue::Is(value) = value else {
                return None;
            };
            key.push(':');
            key.push_str(field.as_str());
            key.push('=');
            key.push_str(value);
        }
        Some(key)
    }
}
