//! What the `budget(req, spend)` hook sees (`spend`) and returns (a [`BudgetAction`]).
//!
//! `spend` is `#{ budgets: [ #{ name, scope, period, limit_usd, spent_usd, reserved_usd,
//! remaining_usd, pct } ], estimated_cost_usd }`: every budget the request matches, tightest
//! first. The hook answers one action map:
//! `#{ action: "allow" }`, `#{ action: "downgrade", model: "…" }` (or `chain: [...]`),
//! `#{ action: "cap", max_tokens: N }`, `#{ action: "queue", lane: "batch" }`, or
//! `#{ action: "block", status: 402, message: "…" }`. `()` means allow. Every other shape is
//! an error naming what is wrong, placed at the hook's file and line.

use rhai::{Array, Dynamic, Map, FLOAT};

/// One budget as the hook sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetView {
    /// The budget's name.
    pub name: String,
    /// Whose budget: `team=support`, `user=alice`, or `all`.
    pub scope: String,
    /// `day`, `month` or `total`.
    pub period: &'static str,
    /// The hard limit.
    pub limit_usd: f64,
    /// Settled spend in the period.
    pub spent_usd: f64,
    /// Reserved by requests in flight.
    pub reserved_usd: f64,
    /// What is left (limit − spent − reserved; may be negative).
    pub remaining_usd: f64,
    /// (spent + reserved) / limit × 100.
    pub pct: f64,
}

/// What a budget hook decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BudgetAction {
    /// Serve as asked.
    Allow,
    /// Serve with these models instead (never empty).
    Downgrade(Vec<String>),
    /// Serve with `max_tokens` at most this.
    Cap(u32),
    /// Wait in the batch lane of the rate-limit queue.
    Queue,
    /// Refuse with this status (400..=599, default 402) and message.
    Block {
        /// The HTTP status.
        status: u16,
        /// The message the client sees.
        message: String,
    },
}

impl BudgetAction {
    /// The action's name, for headers and the log.
    pub fn as_str(&self) -> &'static str {
        match self {
            BudgetAction::Allow => "allow",
            BudgetAction::Downgrade(_) => "downgrade",
            BudgetAction::Cap(_) => "cap",
            BudgetAction::Queue => "queue",
            BudgetAction::Block { .. } => "block",
        }
    }
}

/// The `spend` argument of the hook.
pub fn spend_to_dynamic(budgets: &[BudgetView], estimated_cost_usd: f64) -> Dynamic {
    let list: Array = budgets
        .iter()
        .map(|b| {
            let mut map = Map::new();
            map.insert("name".into(), Dynamic::from(b.name.clone()));
            map.insert("scope".into(), Dynamic::from(b.scope.clone()));
            map.insert("period".into(), Dynamic::from(b.period.to_string()));
            for (key, value) in [
                ("limit_usd", b.limit_usd),
                ("spent_usd", b.spent_usd),
                ("reserved_usd", b.reserved_usd),
                ("remaining_usd", b.remaining_usd),
                ("pct", b.pct),
            ] {
                map.insert(key.into(), Dynamic::from_float(value as FLOAT));
            }
            Dynamic::from_map(map)
        })
        .collect();
    let mut spend = Map::new();
    spend.insert("budgets".into(), Dynamic::from_array(list));
    spend.insert(
        "estimated_cost_usd".into(),
        Dynamic::from_float(estimated_cost_usd as FLOAT),
    );
    Dynamic::from_map(spend)
}

/// A shape error: the message, and the map key it is about (to place it in the file).
pub(crate) type ShapeError = (String, Option<String>);

const ACTION_KEYS: &[&str] = &[
    "action",
    "model",
    "chain",
    "max_tokens",
    "lane",
    "status",
    "message",
];

/// Read what `budget` returned.
pub(crate) fn action_from_dynamic(value: Dynamic) -> Result<BudgetAction, ShapeError> {
    if value.is_unit() {
        return Ok(BudgetAction::Allow);
    }
    let type_name = value.type_name();
    let Some(map) = value.try_cast::<Map>() else {
        return Err((
            format!("budget must return a map like #{{ action: \"allow\" }}, not {type_name}"),
            None,
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !ACTION_KEYS.contains(&k.as_str())) {
        return Err((
            format!(
                "budget returned unknown key `{unknown}` (allowed: {})",
                ACTION_KEYS.join(", ")
            ),
            Some(unknown.to_string()),
        ));
    }
    let text = |key: &str| -> Option<String> {
        map.get(key)
            .filter(|v| v.is_string())
            .map(|v| v.to_string())
    };
    let action = text("action").ok_or_else(|| {
        (
            "budget must return `action`: allow, downgrade, cap, queue or block".to_string(),
            Some("action".to_string()),
        )
    })?;
    let allowed_for = |keys: &[&str]| -> Result<(), ShapeError> {
        match map
            .keys()
            .find(|k| k.as_str() != "action" && !keys.contains(&k.as_str()))
        {
            Some(extra) => Err((
                format!("budget action `{action}` does not take `{extra}`"),
                Some(extra.to_string()),
            )),
            None => Ok(()),
        }
    };
    match action.as_str() {
        "allow" => {
            allowed_for(&[])?;
            Ok(BudgetAction::Allow)
        }
        "downgrade" => {
            allowed_for(&["model", "chain"])?;
            let mut chain = Vec::new();
            if let Some(model) = text("model") {
                chain.push(model);
            }
            if let Some(list) = map.get("chain") {
                let items = list.clone().into_array().map_err(|t| {
                    (
                        format!(
                            "budget downgrade `chain` must be an array of model names, not {t}"
                        ),
                        Some("chain".to_string()),
                    )
                })?;
                for item in items {
                    if !item.is_string() {
                        return Err((
                            "budget downgrade `chain` must hold model names".to_string(),
                            Some("chain".to_string()),
                        ));
                    }
                    chain.push(item.to_string());
                }
            }
            if chain.is_empty() {
                return Err((
                    "budget downgrade needs `model` (a name) or `chain` (names)".to_string(),
                    None,
                ));
            }
            Ok(BudgetAction::Downgrade(chain))
        }
        "cap" => {
            allowed_for(&["max_tokens"])?;
            let cap = map
                .get("max_tokens")
                .and_then(|v| v.as_int().ok())
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    (
                        "budget cap needs `max_tokens`, a positive integer".to_string(),
                        Some("max_tokens".to_string()),
                    )
                })?;
            Ok(BudgetAction::Cap(cap))
        }
        "queue" => {
            allowed_for(&["lane"])?;
            match text("lane").as_deref() {
                None | Some("batch") => Ok(BudgetAction::Queue),
                Some(other) => Err((
                    format!("budget queue `lane` must be \"batch\", not `{other}`"),
                    Some("lane".to_string()),
                )),
            }
        }
        "block" => {
            allowed_for(&["status", "message"])?;
            let status = match map.get("status") {
                None => 402,
                Some(v) => v
                    .as_int()
                    .ok()
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| (400..=599).contains(n))
                    .ok_or_else(|| {
                        (
                            "budget block `status` must be an HTTP status from 400 to 599"
                                .to_string(),
                            Some("status".to_string()),
                        )
                    })?,
            };
            let message = text("message").unwrap_or_else(|| "budget exceeded".to_string());
            Ok(BudgetAction::Block { status, message })
        }
        other => Err((
            format!("budget `action` must be allow, downgrade, cap, queue or block, not `{other}`"),
            Some("action".to_string()),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn eval(script: &str) -> Dynamic {
        rhai::Engine::new().eval::<Dynamic>(script).unwrap()
    }

    #[test]
    fn every_action_is_read() {
        assert_eq!(
            action_from_dynamic(Dynamic::UNIT).unwrap(),
            BudgetAction::Allow
        );
        assert_eq!(
            action_from_dynamic(eval(r#"#{ action: "allow" }"#)).unwrap(),
            BudgetAction::Allow
        );
        assert_eq!(
            action_from_dynamic(eval(r#"#{ action: "downgrade", model: "haiku" }"#)).unwrap(),
            BudgetAction::Downgrade(vec!["haiku".into()])
        );
        assert_eq!(
            action_from_dynamic(eval(r#"#{ action: "downgrade", chain: ["a", "b"] }"#)).unwrap(),
            BudgetAction::Downgrade(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            action_from_dynamic(eval(r#"#{ action: "cap", max_tokens: 256 }"#)).unwrap(),
            BudgetAction::Cap(256)
        );
        assert_eq!(
            action_from_dynamic(eval(r#"#{ action: "queue", lane: "batch" }"#)).unwrap(),
            BudgetAction::Queue
        );
        assert_eq!(
            action_from_dynamic(eval(
                r#"#{ action: "block", status: 429, message: "later" }"#
            ))
            .unwrap(),
            BudgetAction::Block {
                status: 429,
                message: "later".into()
            }
        );
        assert_eq!(
            action_from_dynamic(eval(r#"#{ action: "block" }"#)).unwrap(),
            BudgetAction::Block {
                status: 402,
                message: "budget exceeded".into()
            }
        );
    }

    #[test]
    fn bad_shapes_name_what_is_wrong() {
        for (script, needle, key) in [
            (
                r#"#{ action: "allow", modle: "x" }"#,
                "unknown key `modle`",
                Some("modle"),
            ),
            (r#"#{ model: "x" }"#, "must return `action`", Some("action")),
            (r#"#{ action: "pause" }"#, "not `pause`", Some("action")),
            (r#"#{ action: "downgrade" }"#, "needs `model`", None),
            (
                r#"#{ action: "cap", max_tokens: 0 }"#,
                "positive integer",
                Some("max_tokens"),
            ),
            (
                r#"#{ action: "cap", max_tokens: 10, model: "x" }"#,
                "does not take `model`",
                Some("model"),
            ),
            (
                r#"#{ action: "block", status: 200 }"#,
                "400 to 599",
                Some("status"),
            ),
            (
                r#"#{ action: "queue", lane: "fast" }"#,
                "\"batch\"",
                Some("lane"),
            ),
            (r#""allow""#, "must return a map", None),
        ] {
            let (message, at) = action_from_dynamic(eval(script)).unwrap_err();
            assert!(message.contains(needle), "{script}: {message}");
            assert_eq!(at.as_deref(), key, "{script}");
        }
    }

    #[test]
    fn spend_holds_every_budget_field() {
        let spend = spend_to_dynamic(
            &[BudgetView {
                name: "team-daily".into(),
                scope: "team=support".into(),
                period: "day",
                limit_usd: 50.0,
                spent_usd: 40.0,
                reserved_usd: 1.0,
                remaining_usd: 9.0,
                pct: 82.0,
            }],
            0.25,
        );
        let map = spend.try_cast::<Map>().unwrap();
        let budgets = map["budgets"].clone().into_array().unwrap();
        let first = budgets[0].clone().try_cast::<Map>().unwrap();
        assert_eq!(first["pct"].as_float().unwrap(), 82.0);
        assert_eq!(
            first["scope"].clone().into_string().unwrap(),
            "team=support"
        );
        assert_eq!(map["estimated_cost_usd"].as_float().unwrap(), 0.25);
    }
}
