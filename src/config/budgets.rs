//! `[[budgets]]`: spending limits per user, team, tier, feature, key or model and period.

use serde::Deserialize;

use super::LimitMatch;

/// The period a budget counts over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    /// The calendar day (in `[cost] timezone`).
    #[default]
    Day,
    /// The calendar month.
    Month,
    /// Everything in the retained spend ledger.
    Total,
}

impl BudgetPeriod {
    /// The name in config, scripts and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
            BudgetPeriod::Total => "total",
        }
    }
}

/// One `[[budgets]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRule {
    /// Its name, shown in headers, the log and `/admin/budgets`.
    pub name: String,
    /// Which requests it counts (like `[[limits]]`: `"*"` = one budget per value).
    #[serde(default, rename = "match")]
    pub matcher: LimitMatch,
    /// The period it counts over.
    #[serde(default)]
    pub period: BudgetPeriod,
    /// The hard limit in USD.
    pub limit_usd: f64,
    /// From this percentage of the limit on, a warning header (and the hook sees `pct`).
    #[serde(default = "default_soft_pct")]
    pub soft_pct: f64,
}

fn default_soft_pct() -> f64 {
    80.0
}

/// Every problem of the `[[budgets]]` entries, as `(field, reason)`.
pub fn budget_problems(
    rules: &[BudgetRule],
    model_names: &std::collections::HashSet<&str>,
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = format!("budgets[{i}] ({})", rule.name);
        if rule.name.is_empty() || rule.name.contains(char::is_whitespace) {
            problems.push((format!("{at}.name"), "must be a word without spaces".into()));
        }
        if !names.insert(rule.name.as_str()) {
            problems.push((format!("{at}.name"), "duplicate budget name".into()));
        }
        if !rule.limit_usd.is_finite() || rule.limit_usd < 0.0 {
            problems.push((
                format!("{at}.limit_usd"),
                "must be a non-negative number".into(),
            ));
        }
        if !(0.0..=100.0).contains(&rule.soft_pct) {
            problems.push((format!("{at}.soft_pct"), "must be between 0 and 100".into()));
        }
        if let Some(model) = rule.matcher.model.as_deref() {
            if model != "*" && !model_names.contains(model) {
                problems.push((
                    format!("{at}.match.model"),
                    format!("no [[models]] entry named `{model}`"),
                ));
            }
        }
    }
    problems
}
