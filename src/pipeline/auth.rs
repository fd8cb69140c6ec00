//! Stage 1: gateway key → `Principal`.
//!
//! Keys are held only as SHA-256 digests; a presented key is hashed and compared with every
//! configured digest in constant time (no early exit), so neither timing nor logs reveal keys.

use crate::config::{Config, KeyConfig};
pub use crate::context::Principal;
use crate::error::GatewayError;
use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured keys, as digests.
#[derive(Debug, Default)]
pub struct KeyTable {
    entries: Vec<([u8; 32], Principal)>,
}

/// SHA-256 of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn decode_hex32(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

impl KeyTable {
    /// Digest every `[[keys]]` entry (env vars are read here, once).
    pub fn from_config(config: &Config) -> KeyTable {
        let entries = config.keys.iter().filter_map(entry).collect();
        KeyTable { entries }
    }

    /// The principal for a presented key, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, GatewayError> {
        let key = presented_key(headers).ok_or_else(|| {
            GatewayError::unauthenticated(
                "missing gateway key: send `Authorization: Bearer <key>` or `x-api-key: <key>`",
            )
        })?;
        let presented = digest(key);
        let mut found: Option<&Principal> = None;
        for (stored, principal) in &self.entries {
            if bool::from(stored.ct_eq(&presented)) && found.is_none() {
                found = Some(principal);
            }
        }
        found
            .cloned()
            .ok_or_else(|| GatewayError::unauthenticated("invalid gateway key"))
    }
}

fn entry(k: &KeyConfig) -> Option<([u8; 32], Principal)> {
    let hash = match (&k.key_env, &k.key_sha256) {
        (Some(var), _) => digest(&std::env::var(var).ok()?),
        (None, Some(hex_text)) => decode_hex32(hex_text)?,
        (None, None) => return None,
    };
    let key_id =
        k.id.clone()
            .unwrap_or_else(|| format!("key-{}", &hex::encode(hash)[..12]));
    Some((
        hash,
        Principal {
            key_id,
            user: k.user.clone(),
            team: k.team.clone(),
            tier: k.tier.clone(),
        },
    ))
}

/// The key from `Authorization: Bearer …` (scheme case-insensitive) or `x-api-key`.
///
/// An `Authorization` header that is empty, carries another scheme, or names no token does
/// not hide a valid `x-api-key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    bearer.or_else(|| {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

/// The token of a `Bearer` credential, or a bare token (some clients omit the scheme).
fn bearer_token(value: &str) -> Option<&str> {
    let value = value.trim();
    let token = match value.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        Some(_) => return None,
        None if value.eq_ignore_ascii_case("bearer") => return None,
        None => value,
    };
    (!token.is_empty()).then_some(token)
}

/// Digest of the admin key from config (env var or sha256), if one is configured.
pub fn admin_digest(config: &Config) -> Option<[u8; 32]> {
    if let Some(var) = &config.server.admin_key_env {
        if let Ok(key) = std::env::var(var) {
            if !key.is_empty() {
                return Some(digest(&key));
            }
        }
    }
    config
        .server
        .admin_key_sha256
        .as_deref()
        .and_then(decode_hex32)
}

/// Check the admin key in constant time; 401 when missing, wrong or not configured.
pub fn check_admin(expected: Option<&[u8; 32]>, headers: &HeaderMap) -> Result<(), GatewayError> {
    let Some(expected) = expected else {
        return Err(GatewayError::unauthenticated(
            "the admin API is disabled: set server.admin_key_env or server.admin_key_sha256",
        ));
    };
    let key =
        presented_key(headers).ok_or_else(|| GatewayError::unauthenticated("missing admin key"))?;
    if bool::from(digest(key).ct_eq(expected)) {
        Ok(())
    } else {
        Err(GatewayError::unauthenticated("invalid admin key"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn table() -> KeyTable {
        KeyTable {
            entries: vec![(
                digest("sk-good"),
                Principal {
                    key_id: "k1".into(),
                    user: "alice".into(),
                    team: None,
                    tier: Some("pro".into()),
                },
            )],
        }
    }

    #[test]
    fn accepts_bearer_and_x_api_key() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-good"));
        assert_eq!(table().authenticate(&headers).unwrap().user, "alice");
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static("sk-good"));
        assert_eq!(table().authenticate(&headers).unwrap().user, "alice");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for value in ["BEARER sk-good", "bearer  sk-good", "Bearer\tsk-good"] {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", HeaderValue::from_str(value).unwrap());
            assert_eq!(
                table().authenticate(&headers).unwrap().user,
                "alice",
                "{value}"
            );
        }
    }

    #[test]
    fn empty_or_foreign_authorization_does_not_hide_x_api_key() {
        for value in ["", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz"] {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", HeaderValue::from_str(value).unwrap());
            headers.insert("x-api-key", HeaderValue::from_static("sk-good"));
            assert_eq!(
                table().authenticate(&headers).unwrap().user,
                "alice",
                "authorization {value:?}"
            );
        }
    }

    #[test]
    fn rejects_missing_and_unknown_keys_with_401() {
        assert_eq!(
            table()
                .authenticate(&HeaderMap::new())
                .unwrap_err()
                .status(),
            401
        );
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-bad"));
        let err = table().authenticate(&headers).unwrap_err();
        assert_eq!(err.status(), 401);
        assert!(!err.message.contains("sk-bad"));
    }
}
