//! What the `cache(req)` hook returns: whether and how a request uses the response cache.
//!
//! The hook answers `false` (neither look this request up nor store its answer), `true` or
//! `()` (the `[cache]` section's defaults), or a map `#{ ttl_s, scope, stale_s }` whose keys
//! are all optional (a key set to `()` counts as absent, and an empty map means the
//! defaults): `ttl_s` how long the answer is fresh (1 s to 30 days), `scope` whose requests
//! share it (`"key"`, `"user"`, `"team"` or `"global"`), `stale_s` how long past its TTL it
//! may still answer when every target fails (0 to 30 days). Every other shape is an error
//! naming the key, placed at the hook's file and line like `limits`'.

use rhai::{Dynamic, Map};
use serde::Serialize;

use crate::config::CacheScope;

use super::limits::ShapeError;

/// What a `cache` hook decided for one request (the default when there is no hook).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum CacheDecision {
    /// Do not cache this request: no lookup, no store.
    Skip,
    /// Cache with the `[cache]` section's settings.
    #[default]
    Default,
    /// Cache with these settings; `None` fields take the `[cache]` section's value. At least
    /// one field is set (a map without any reads as [`CacheDecision::Default`]).
    Custom {
        /// Seconds the answer is fresh (1 to [`MAX_CACHE_SECONDS`]); else `cache.ttl_s`.
        ttl_s: Option<u64>,
        /// Whose requests share the entry; else `cache.scope`.
        scope: Option<CacheScope>,
        /// Seconds past the TTL the entry may answer when every target fails (0 to
        /// [`MAX_CACHE_SECONDS`]); else `cache.max_stale_s`.
        stale_s: Option<u64>,
    },
}

impl CacheDecision {
    /// The decision's name, for the log and `policy test`: `skip`, `default` or `custom`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheDecision::Skip => "skip",
            CacheDecision::Default => "default",
            CacheDecision::Custom { .. } => "custom",
        }
    }

    /// Whether the request must bypass the cache entirely.
    pub fn is_skip(&self) -> bool {
        matches!(self, CacheDecision::Skip)
    }
}

/// The longest `ttl_s` or `stale_s` a hook may ask for: 30 days, in seconds.
pub const MAX_CACHE_SECONDS: u64 = 30 * 24 * 3600;

/// Keys a `cache` map may hold.
const CACHE_KEYS: &[&str] = &["ttl_s", "scope", "stale_s"];

/// Read what `cache` returned.
pub(crate) fn cache_from_dynamic(value: Dynamic) -> Result<CacheDecision, ShapeError> {
    if value.is_unit() {
        return Ok(CacheDecision::Default);
    }
    if let Ok(enabled) = value.as_bool() {
        return Ok(if enabled {
            CacheDecision::Default
        } else {
            CacheDecision::Skip
        });
    }
    let type_name = value.type_name();
    let Some(map) = value.try_cast::<Map>() else {
        return Err((
            format!(
                "cache must return true, false, () or a map like #{{ ttl_s: 3600, scope: \
                 \"team\" }}, not {type_name}"
            ),
            None,
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !CACHE_KEYS.contains(&k.as_str())) {
        return Err((
            format!(
                "cache returned unknown key `{unknown}` (allowed: {})",
                CACHE_KEYS.join(", ")
            ),
            Some(unknown.to_string()),
        ));
    }
    let ttl_s = seconds(&map, "ttl_s", 1)?;
    let stale_s = seconds(&map, "stale_s", 0)?;
    let scope = match map.get("scope").filter(|v| !v.is_unit()) {
        None => None,
        Some(value) => {
            let name = value.clone().into_string().map_err(|type_name| {
                (
                    format!("cache `scope` must be a string, not {type_name}"),
                    Some("scope".to_string()),
                )
            })?;
            let scope = CacheScope::parse(&name).ok_or_else(|| {
                (
                    format!("cache `scope` must be \"key\", \"user\", \"team\" or \"global\", not `{name}`"),
                    Some("scope".to_string()),
                )
            })?;
            Some(scope)
        }
    };
    if ttl_s.is_none() && scope.is_none() && stale_s.is_none() {
        return Ok(CacheDecision::Default);
    }
    Ok(CacheDecision::Custom {
        ttl_s,
        scope,
        stale_s,
    })
}

/// The whole seconds under `key` (absent or `()`: `None`), from `min` to
/// [`MAX_CACHE_SECONDS`].
fn seconds(map: &Map, key: &str, min: u64) -> Result<Option<u64>, ShapeError> {
    let Some(value) = map.get(key).filter(|v| !v.is_unit()) else {
        return Ok(None);
    };
    let at = Some(key.to_string());
    let Ok(number) = value.as_int() else {
        return Err((
            format!(
                "cache `{key}` must be a whole number of seconds, not {}",
                value.type_name()
            ),
            at,
        ));
    };
    match u64::try_from(number) {
        Ok(n) if (min..=MAX_CACHE_SECONDS).contains(&n) => Ok(Some(n)),
        _ if min > 0 && number == 0 => Err((
            format!("cache `{key}` must be at least {min} (return false not to cache)"),
            at,
        )),
        _ => Err((
            format!("cache `{key}` must be from {min} to {MAX_CACHE_SECONDS} seconds (30 days), not {number}"),
            at,
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

    fn read(script: &str) -> CacheDecision {
        cache_from_dynamic(eval(script)).unwrap_or_else(|(m, _)| panic!("{script}: {m}"))
    }

    #[test]
    fn false_skips_the_cache() {
        assert_eq!(read("false"), CacheDecision::Skip);
        assert!(read("false").is_skip());
    }

    #[test]
    fn true_unit_and_an_empty_map_mean_the_config_defaults() {
        for script in [
            "true",
            "()",
            "#{}",
            "#{ ttl_s: (), scope: (), stale_s: () }",
        ] {
            assert_eq!(read(script), CacheDecision::Default, "{script}");
        }
    }

    #[test]
    fn every_key_of_the_map_is_read() {
        assert_eq!(
            read(r#"#{ ttl_s: 3600, scope: "global", stale_s: 600 }"#),
            CacheDecision::Custom {
                ttl_s: Some(3600),
                scope: Some(CacheScope::Global),
                stale_s: Some(600),
            }
        );
    }

    #[test]
    fn each_key_alone_leaves_the_others_to_the_config() {
        assert_eq!(
            read("#{ ttl_s: 60 }"),
            CacheDecision::Custom {
                ttl_s: Some(60),
                scope: None,
                stale_s: None
            }
        );
        assert_eq!(
            read("#{ stale_s: 0 }"),
            CacheDecision::Custom {
                ttl_s: None,
                scope: None,
                stale_s: Some(0)
            }
        );
        for (name, scope) in [
            ("key", CacheScope::Key),
            ("user", CacheScope::User),
            ("team", CacheScope::Team),
            ("global", CacheScope::Global),
        ] {
            assert_eq!(
                read(&format!("#{{ scope: \"{name}\" }}")),
                CacheDecision::Custom {
                    ttl_s: None,
                    scope: Some(scope),
                    stale_s: None
                }
            );
        }
    }

    #[test]
    fn thirty_days_is_the_longest_ttl_and_stale_time() {
        let decision = read("#{ ttl_s: 2592000, stale_s: 2592000 }");
        assert_eq!(
            decision,
            CacheDecision::Custom {
                ttl_s: Some(MAX_CACHE_SECONDS),
                scope: None,
                stale_s: Some(MAX_CACHE_SECONDS)
            }
        );
    }

    #[test]
    fn bad_shapes_name_the_key_that_is_wrong() {
        for (script, needle, key) in [
            (
                "#{ ttl: 60 }",
                "unknown key `ttl` (allowed: ttl_s, scope, stale_s)",
                Some("ttl"),
            ),
            (
                "#{ ttl_s: 60, max_stale_s: 5 }",
                "unknown key `max_stale_s`",
                Some("max_stale_s"),
            ),
            ("#{ ttl_s: -1 }", "not -1", Some("ttl_s")),
            ("#{ ttl_s: 0 }", "at least 1", Some("ttl_s")),
            ("#{ ttl_s: 2592001 }", "30 days", Some("ttl_s")),
            (r#"#{ ttl_s: "3600" }"#, "whole number", Some("ttl_s")),
            ("#{ ttl_s: 60.0 }", "whole number", Some("ttl_s")),
            ("#{ stale_s: -5 }", "not -5", Some("stale_s")),
            ("#{ stale_s: 99999999999 }", "30 days", Some("stale_s")),
            ("#{ stale_s: true }", "whole number", Some("stale_s")),
            (
                r#"#{ scope: "tenant" }"#,
                "\"global\", not `tenant`",
                Some("scope"),
            ),
            ("#{ scope: 1 }", "must be a string", Some("scope")),
            (r#""global""#, "must return true, false, () or a map", None),
            ("3600", "must return true, false, () or a map", None),
            ("[false]", "not array", None),
        ] {
            let (message, at) = cache_from_dynamic(eval(script)).unwrap_err();
            assert!(message.contains(needle), "{script}: {message}");
            assert_eq!(at.as_deref(), key, "{script}");
        }
    }

    #[test]
    fn decisions_serialize_with_their_name() {
        let custom = CacheDecision::Custom {
            ttl_s: Some(3600),
            scope: Some(CacheScope::Global),
            stale_s: None,
        };
        assert_eq!(
            serde_json::to_value(custom).unwrap(),
            serde_json::json!({ "decision": "custom", "ttl_s": 3600, "scope": "global", "stale_s": null })
        );
        assert_eq!(
            serde_json::to_value(CacheDecision::Skip).unwrap(),
            serde_json::json!({ "decision": "skip" })
        );
        assert_eq!(CacheDecision::Default.as_str(), "default");
        assert_eq!(custom.as_str(), "custom");
    }
}
