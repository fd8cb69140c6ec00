//! Client-facing dialects: parse what an SDK sends into canonical types and render canonical
//! answers and stream events back in that SDK's wire format.
//!
//! - [`openai`]: `POST /v1/chat/completions`, `POST /v1/embeddings`, `GET /v1/models`.
//! - [`anthropic`]: `POST /v1/messages`.
//!
//! Everything here is pure: bytes in, canonical out (or canonical in, bytes out); no sockets,
//! no clocks beyond the `created` timestamp. Parsers reject what they cannot carry faithfully
//! with a 400 naming the JSON path of the field (`messages[2].content[0].type`), so nothing
//! a client sends is silently dropped. Two rules hold for every parser:
//!
//! - a field whose value is JSON `null` is treated as absent (SDKs and hand-written clients
//!   send `"temperature": null` to mean "default");
//! - a field we do not know is a 400 naming it, unless it is `null` or on the dialect's
//!   small, documented ignore-list.

pub mod anthropic;
mod anthropic_stream;
pub mod openai;
mod openai_render;
mod openai_stream;
#[cfg(test)]
mod proptests;

use crate::canonical::Usage;
use crate::error::GatewayError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Append one complete SSE frame: an optional `event:` line, one `data:` line, a blank line.
///
/// `data` is serialized as compact JSON, which never contains a raw newline, so one `data:`
/// line always suffices.
pub fn write_sse<T: Serialize + ?Sized>(out: &mut Vec<u8>, event: Option<&str>, data: &T) {
    if let Some(name) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    write_json(out, data);
    out.extend_from_slice(b"\n\n");
}

/// Serialize `value` as compact JSON onto `out`.
///
/// Serializing our own types into a `Vec` cannot fail (no I/O, only string map keys); if it
/// ever did, the bytes written so far are rolled back and `null` is written instead, so
/// the output stays valid JSON.
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"null");
    }
}

/// `value` as compact JSON bytes.
pub(crate) fn to_json_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_json(&mut out, value);
    out
}

/// Seconds since the Unix epoch, for `created` fields.
pub(crate) fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `prefix` followed by a fresh random id (`chatcmpl-…`, `msg_…`, `call_…`).
pub(crate) fn fresh_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// An id in the client's expected form: `provider_id` kept when it already starts with
/// `prefix`, prefixed when it does not, freshly made when it is empty.
pub(crate) fn prefixed_id(prefix: &str, provider_id: &str) -> String {
    if provider_id.is_empty() {
        fresh_id(prefix)
    } else if provider_id.starts_with(prefix) {
        provider_id.to_string()
    } else {
        format!("{prefix}{provider_id}")
    }
}

/// Fold a later usage report into an earlier one: each non-zero count of `new` wins.
///
/// Some upstreams report input tokens at the start of a stream and output tokens at its end;
/// merging keeps both.
pub(crate) fn merge_usage(old: Option<Usage>, new: Usage) -> Usage {
    match old {
        None => new,
        Some(old) => Usage {
            input_tokens: pick(new.input_tokens, old.input_tokens),
            output_tokens: pick(new.output_tokens, old.output_tokens),
            cached_input_tokens: pick(new.cached_input_tokens, old.cached_input_tokens),
            cache_write_input_tokens: 0,
            estimated: new.estimated || old.estimated,
        },
    }
}

fn pick(new: u64, old: u64) -> u64 {
    if new != 0 {
        new
    } else {
        old
    }
}

// ---------------------------------------------------------------------------------------
// JSON walking helpers shared by the parsers. Paths use `a.b[2].c` notation.
// ---------------------------------------------------------------------------------------

/// Parse a request body that must be a JSON object.
pub(crate) fn parse_body(body: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        GatewayError::bad_body(format!("the request body is not valid json: {err}"))
    })?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(GatewayError::bad_body(
            "the request body must be a json object",
        )),
    }
}

/// `parent.key` (or `key` at the top level).
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn at(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The field `key`, with JSON `null` read as absent.
pub(crate) fn get<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

/// A 400 for `path` with message "`path` {what}".
pub(crate) fn invalid(path: &str, what: &str) -> GatewayError {
    GatewayError::invalid(path, format!("`{path}` {what}"))
}

/// Reject any non-null field of `obj` not named in `known`.
pub(crate) fn check_fields(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&str],
) -> Result<(), GatewayError> {
    for (key, value) in obj {
        if !value.is_null() && !known.contains(&key.as_str()) {
            let field = join(path, key);
            return Err(GatewayError::invalid(
                &field,
                format!("unknown field `{field}`"),
            ));
        }
    }
    Ok(())
}

/// `value` as an object, or a 400 for `path`.
pub(crate) fn as_object<'a>(
    value: &'a Value,
    path: &str,
) -> Result<&'a Map<String, Value>, GatewayError> {
    value
        .as_object()
        .ok_or_else(|| invalid(path, "must be an object"))
}

/// The optional object `key` of `obj`.
pub(crate) fn opt_object<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => as_object(v, &join(path, key)).map(Some),
    }
}

/// The optional array `key` of `obj`.
pub(crate) fn opt_array<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a Vec<Value>>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items)),
        Some(_) => Err(invalid(&join(path, key), "must be an array")),
    }
}

/// The optional string `key` of `obj`.
pub(crate) fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<&'a str>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(&join(path, key), "must be a string")),
    }
}

/// The required string `key` of `obj` (may be empty).
pub(crate) fn req_str<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a str, GatewayError> {
    opt_str(obj, path, key)?.ok_or_else(|| invalid(&join(path, key), "is required"))
}

/// The required, non-empty string `key` of `obj`.
pub(crate) fn req_nonempty_str<'a>(
    obj: &'a Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<&'a str, GatewayError> {
    let s = req_str(obj, path, key)?;
    if s.is_empty() {
        return Err(invalid(&join(path, key), "must not be empty"));
    }
    Ok(s)
}

/// The optional boolean `key` of `obj`.
pub(crate) fn opt_bool(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<bool>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(&join(path, key), "must be a boolean")),
    }
}

/// The optional number `key` of `obj`.
pub(crate) fn opt_f64(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<f64>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| invalid(&join(path, key), "must be a number")),
    }
}

/// The optional non-negative integer `key` of `obj` that fits in a `u32`.
pub(crate) fn opt_u32(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<u32>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| invalid(&join(path, key), "must be a non-negative integer")),
    }
}

/// The optional integer `key` of `obj`.
pub(crate) fn opt_i64(
    obj: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<i64>, GatewayError> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(&join(path, key), "must be an integer")),
    }
}

/// The optional object `key` (at the top level) whose values must all be strings.
pub(crate) fn string_map(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<BTreeMap<String, String>, GatewayError> {
    let mut out = BTreeMap::new();
    if let Some(map) = opt_object(obj, "", key)? {
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    out.insert(k.clone(), s.clone());
                }
                Value::Null => {}
                _ => return Err(invalid(&join(key, k), "must be a string")),
            }
        }
    }
    Ok(out)
}

/// `value` as compact JSON text.
pub(crate) fn to_json_string<T: Serialize + ?Sized>(value: &T) -> String {
    String::from_utf8(to_json_vec(value)).unwrap_or_default()
}

/// A 400 saying `path` is a feature the gateway does not carry.
pub(crate) fn unsupported(path: &str) -> GatewayError {
    GatewayError::invalid(path, format!("`{path}` is not supported by switchyard"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sse_frame_has_event_data_and_blank_line() {
        let mut out = Vec::new();
        write_sse(&mut out, Some("ping"), &json!({"type": "ping"}));
        write_sse(&mut out, None, &json!({"a": "x\ny"}));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "event: ping\ndata: {\"type\":\"ping\"}\n\ndata: {\"a\":\"x\\ny\"}\n\n"
        );
    }

    #[test]
    fn prefixed_id_keeps_fresh_or_prefixes() {
        assert_eq!(prefixed_id("msg_", "msg_01"), "msg_01");
        assert_eq!(prefixed_id("msg_", "chatcmpl-9"), "msg_chatcmpl-9");
        let fresh = prefixed_id("msg_", "");
        assert!(fresh.starts_with("msg_") && fresh.len() > 10);
    }

    #[test]
    fn merge_usage_keeps_nonzero_counts_of_both_reports() {
        let early = Usage {
            input_tokens: 10,
            cached_input_tokens: 4,
            ..Usage::default()
        };
        let late = Usage {
            output_tokens: 7,
            ..Usage::default()
        };
        let merged = merge_usage(Some(early), late);
        assert_eq!(
            (
                merged.input_tokens,
                merged.output_tokens,
                merged.cached_input_tokens
            ),
            (10, 7, 4)
        );
    }

    #[test]
    fn null_fields_count_as_absent_and_unknown_ones_are_named() {
        let obj = json!({"a": null, "b": 1, "zzz": true});
        let obj = obj.as_object().unwrap();
        assert!(get(obj, "a").is_none());
        let err = check_fields(obj, "messages[1]", &["a", "b"]).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages[1].zzz"));
        assert!(err.message.contains("unknown field"));
        let ok = json!({"b": 1, "ignored": null});
        assert!(check_fields(ok.as_object().unwrap(), "", &["b"]).is_ok());
    }

    #[test]
    fn number_helpers_reject_wrong_types() {
        let obj = json!({"t": "hot", "n": -1, "big": 5_000_000_000u64, "f": 0.5});
        let obj = obj.as_object().unwrap();
        assert_eq!(
            opt_f64(obj, "", "t").unwrap_err().param.as_deref(),
            Some("t")
        );
        assert!(opt_u32(obj, "", "n").is_err());
        assert!(opt_u32(obj, "", "big").is_err());
        assert_eq!(opt_f64(obj, "", "f").unwrap(), Some(0.5));
        assert!(opt_i64(obj, "", "f").is_err());
    }

    #[test]
    fn malformed_body_is_bad_body_with_serde_message() {
        let err = parse_body(b"{\"model\": ").unwrap_err();
        assert_eq!(err.status(), 400);
        assert!(err.message.contains("EOF"), "{}", err.message);
        assert!(parse_body(b"[1]").is_err());
    }
}
