//! What the `limits(req)` hook returns: the buckets a request counts against.
//!
//! The hook returns an array of maps (one map alone, or `()` for none, also do):
//! `#{ key, tokens_per_minute, requests_per_minute, tokens_per_day, requests_per_day,
//! concurrency, queue_ms, priority: "interactive" | "batch", owner }`. `key` is any string the
//! script builds; `owner` (default: the request's user) is whom the fair queue takes turns
//! between. Every other key is an error naming it, like `route`'s.

use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::config::Priority;
use crate::ledger::{BucketLimit, Limit};

/// One bucket a request counts against, with how it may wait there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    /// The bucket and its limits.
    pub bucket: BucketLimit,
    /// How long a request over this limit may wait (zero: 429 at once).
    pub queue: Duration,
    /// Its lane in the queue.
    pub priority: Priority,
    /// Whom the queue takes turns between (`None`: the request's user).
    pub owner: Option<String>,
}

/// Keys a `limits` map may hold.
const LIMIT_KEYS: &[&str] = &[
    "key",
    "tokens_per_minute",
    "requests_per_minute",
    "tokens_per_day",
    "requests_per_day",
    "concurrency",
    "queue_ms",
    "priority",
    "owner",
];

/// Limits one request may name at most.
pub const MAX_LIMITS_PER_REQUEST: usize = 32;
/// The longest bucket key a script may build.
pub const MAX_KEY_BYTES: usize = 256;
/// The longest `queue_ms` (10 minutes).
pub const MAX_QUEUE_MS: u64 = 600_000;

/// A shape error: the message, and the map key it is about (to place it in the file).
pub(crate) type ShapeError = (String, Option<String>);

/// Read what `limits` returned.
pub(crate) fn limits_from_dynamic(value: Dynamic) -> Result<Vec<LimitSpec>, ShapeError> {
    if value.is_unit() {
        return Ok(Vec::new());
    }
    let items = if value.is_map() {
        vec![value]
    } else if value.is_array() {
        value.into_array().map_err(|t| (type_error(t), None))?
    } else {
        return Err((
            format!(
                "limits must return an array of maps (or one map, or ()), not {}",
                value.type_name()
            ),
            None,
        ));
    };
    if items.len() > MAX_LIMITS_PER_REQUEST {
        return Err((
            format!(
                "limits returned {} entries; at most {MAX_LIMITS_PER_REQUEST}",
                items.len()
            ),
            None,
        ));
    }
    items
        .into_iter()
        .enumerate()
        .filter(|(_, item)| !item.is_unit())
        .map(|(i, item)| spec_from_dynamic(i, item))
        .collect()
}

fn type_error(type_name: &str) -> String {
    format!("limits must return an array of maps, not {type_name}")
}

fn spec_from_dynamic(index: usize, item: Dynamic) -> Result<LimitSpec, ShapeError> {
    let type_name = item.type_name();
    let Some(map) = item.try_cast::<Map>() else {
        return Err((
            format!("limits entry {index} must be a map, not {type_name}"),
            None,
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !LIMIT_KEYS.contains(&k.as_str())) {
        return Err((
            format!(
                "limits entry {index} has unknown key `{unknown}` (allowed: {})",
                LIMIT_KEYS.join(", ")
            ),
            Some(unknown.to_string()),
        ));
    }
    let key = match map.get("key") {
        Some(value) if value.is_string() => value.to_string(),
        Some(value) => {
            return Err((
                format!(
                    "limits entry {index}: `key` must be a string, not {}",
                    value.type_name()
                ),
                Some("key".into()),
            ))
        }
        None => return Err((format!("limits entry {index} has no `key`"), None)),
    };
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err((
            format!("limits entry {index}: `key` must be 1 to {MAX_KEY_BYTES} bytes"),
            Some("key".into()),
        ));
    }
    let count = |name: &str| -> Result<Option<u64>, ShapeError> {
        match map.get(name) {
            None => Ok(None),
            Some(value) if value.is_unit() => Ok(None),
            Some(value) => value
                .as_int()
                .ok()
                .and_then(|n| u64::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    (
                        format!(
                            "limits entry {index} (`{key}`): `{name}` must be a non-negative \
                             integer, not {}",
                            value.type_name()
                        ),
                        Some(name.to_string()),
                    )
                }),
        }
    };
    let limit = Limit {
        tokens_per_minute: count("tokens_per_minute")?,
        requests_per_minute: count("requests_per_minute")?,
        tokens_per_day: count("tokens_per_day")?,
        requests_per_day: count("requests_per_day")?,
        concurrency: count("concurrency")?,
    };
    if limit == Limit::default() {
        return Err((
            format!(
                "limits entry {index} (`{key}`) sets no limit (tokens_per_minute, \
                 requests_per_minute, tokens_per_day, requests_per_day or concurrency)"
            ),
            None,
        ));
    }
    let queue_ms = count("queue_ms")?.unwrap_or(0);
    if queue_ms > MAX_QUEUE_MS {
        return Err((
            format!("limits entry {index} (`{key}`): `queue_ms` must be at most {MAX_QUEUE_MS}"),
            Some("queue_ms".into()),
        ));
    }
    let priority = match map.get("priority") {
        None => Priority::Interactive,
        Some(value) if value.is_unit() => Priority::Interactive,
        Some(value) => match value.to_string().as_str() {
            "interactive" if value.is_string() => Priority::Interactive,
            "batch" if value.is_string() => Priority::Batch,
            other => {
                return Err((
                    format!(
                        "limits entry {index} (`{key}`): `priority` must be \"interactive\" or \
                         \"batch\", not `{other}`"
                    ),
                    Some("priority".into()),
                ))
            }
        },
    };
    let owner = match map.get("owner") {
        None => None,
        Some(value) if value.is_unit() => None,
        Some(value) if value.is_string() => Some(value.to_string()),
        Some(value) => {
            return Err((
                format!(
                    "limits entry {index} (`{key}`): `owner` must be a string, not {}",
                    value.type_name()
                ),
                Some("owner".into()),
            ))
        }
    };
    Ok(LimitSpec {
        bucket: BucketLimit::new(key, limit),
        queue: Duration::from_millis(queue_ms),
        priority,
        owner,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn eval(script: &str) -> Dynamic {
        rhai::Engine::new().eval::<Dynamic>(script).unwrap()
    }

    #[test]
    fn an_array_of_maps_becomes_limit_specs() {
        let specs = limits_from_dynamic(eval(
            r#"[ #{ key: "user:a", tokens_per_minute: 20000, queue_ms: 2000 },
                 #{ key: "feature:batch", requests_per_minute: 600, priority: "batch", owner: "t" } ]"#,
        ))
        .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].bucket.key.as_str(), "user:a");
        assert_eq!(specs[0].bucket.limit.tokens_per_minute, Some(20000));
        assert_eq!(specs[0].queue, Duration::from_millis(2000));
        assert_eq!(specs[0].priority, Priority::Interactive);
        assert_eq!(specs[1].priority, Priority::Batch);
        assert_eq!(specs[1].owner.as_deref(), Some("t"));
    }

    #[test]
    fn unit_and_a_single_map_are_accepted() {
        assert!(limits_from_dynamic(Dynamic::UNIT).unwrap().is_empty());
        let one = limits_from_dynamic(eval(r#"#{ key: "k", concurrency: 2 }"#)).unwrap();
        assert_eq!(one[0].bucket.limit.concurrency, Some(2));
    }

    #[test]
    fn bad_shapes_name_what_is_wrong() {
        for (script, needle, key) in [
            (
                r#"[#{ key: "k", tokens_per_mintue: 5 }]"#,
                "unknown key `tokens_per_mintue`",
                Some("tokens_per_mintue"),
            ),
            (r#"[#{ tokens_per_minute: 5 }]"#, "has no `key`", None),
            (r#"[#{ key: "k" }]"#, "sets no limit", None),
            (
                r#"[#{ key: "k", tokens_per_minute: -1 }]"#,
                "non-negative integer",
                Some("tokens_per_minute"),
            ),
            (
                r#"[#{ key: "k", tokens_per_minute: "5" }]"#,
                "non-negative integer",
                Some("tokens_per_minute"),
            ),
            (
                r#"[#{ key: "k", concurrency: 1, priority: "urgent" }]"#,
                "`priority`",
                Some("priority"),
            ),
            (
                r#"[#{ key: "k", concurrency: 1, queue_ms: 9999999 }]"#,
                "at most",
                Some("queue_ms"),
            ),
            (
                r#"[#{ key: "", concurrency: 1 }]"#,
                "1 to 256 bytes",
                Some("key"),
            ),
            (r#"[5]"#, "must be a map", None),
            (r#""user""#, "array of maps", None),
        ] {
            let (message, at) = limits_from_dynamic(eval(script)).unwrap_err();
            assert!(message.contains(needle), "{script}: {message}");
            assert_eq!(at.as_deref(), key, "{script}");
        }
    }

    #[test]
    fn too_many_entries_are_refused() {
        let script = format!(
            "[{}]",
            vec![r#"#{ key: "k", concurrency: 1 }"#; MAX_LIMITS_PER_REQUEST + 1].join(",")
        );
        let (message, _) = limits_from_dynamic(eval(&script)).unwrap_err();
        assert!(message.contains("at most"), "{message}");
    }
}
