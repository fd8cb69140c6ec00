//! `[cost]`: where prices come from, what an unpriced model does, when days start, and the
//! durable spend ledger.

use serde::Deserialize;
use std::path::PathBuf;

/// What a request to a model with no known price does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unpriced {
    /// Serve it; its record says `cost_unknown` (never $0).
    #[default]
    Allow,
    /// Refuse it before it reaches a provider.
    Block,
}

/// `[cost]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostConfig {
    /// A LiteLLM `model_prices_and_context_window.json` file, reloaded on change;
    /// `[[models]]` prices override it, and it overrides the built-in catalogue.
    pub pricing_file: Option<PathBuf>,
    /// What a model with no price does.
    pub unpriced: Unpriced,
    /// When days and months start: `UTC` or a fixed offset `+HH:MM` / `-HH:MM`.
    pub timezone: String,
    /// The spend ledger's directory (its own journal, independent of `[logs]`).
    pub ledger_dir: PathBuf,
    /// Days of ledger files kept; older files are deleted (0 = keep forever).
    pub retention_days: u32,
    /// Longest time a spend record waits before fsync.
    pub fsync_interval_ms: u64,
}

impl Default for CostConfig {
    fn default() -> Self {
        CostConfig {
            pricing_file: None,
            unpriced: Unpriced::Allow,
            timezone: "UTC".into(),
            ledger_dir: PathBuf::from("data/spend"),
            retention_days: 400,
            fsync_interval_ms: 100,
        }
    }
}

impl CostConfig {
    /// The longest allowed `fsync_interval_ms`.
    pub const MAX_FSYNC_INTERVAL_MS: u64 = 1_000;

    /// The timezone as an offset east of UTC in seconds; `None` when it is not `UTC`,
    /// `Z` or `±HH:MM`.
    pub fn utc_offset_s(&self) -> Option<i32> {
        parse_offset(&self.timezone)
    }

    /// Problems with the `[cost]` section, each as `(field, reason)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.utc_offset_s().is_none() {
            problems.push((
                "cost.timezone".into(),
                format!(
                    "`{}` is not `UTC` or a fixed offset like `+02:00`",
                    self.timezone
                ),
            ));
        }
        if self.fsync_interval_ms == 0 || self.fsync_interval_ms > Self::MAX_FSYNC_INTERVAL_MS {
            problems.push((
                "cost.fsync_interval_ms".into(),
                format!("must be 1..={}", Self::MAX_FSYNC_INTERVAL_MS),
            ));
        }
        problems
    }
}

fn parse_offset(zone: &str) -> Option<i32> {
    let zone = zone.trim();
    if zone.eq_ignore_ascii_case("utc") || zone == "Z" || zone == "+00:00" {
        return Some(0);
    }
    let (sign, rest) = match zone.as_bytes().first()? {
        b'+' => (1, &zone[1..]),
        b'-' => (-1, &zone[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezones_are_utc_or_fixed_offsets() {
        let zone = |z: &str| CostConfig {
            timezone: z.into(),
            ..CostConfig::default()
        };
        assert_eq!(zone("UTC").utc_offset_s(), Some(0));
        assert_eq!(zone("+02:00").utc_offset_s(), Some(7200));
        assert_eq!(zone("-05:30").utc_offset_s(), Some(-19800));
        assert_eq!(zone("Europe/Paris").utc_offset_s(), None);
        assert_eq!(zone("+2").utc_offset_s(), None);
        assert_eq!(zone("+15:00").utc_offset_s(), None);
        assert!(!zone("Mars").problems().is_empty());
    }
}
