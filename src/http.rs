//! The response body type and the JSON / error response helpers every handler uses.
//!
//! A leaf: it imports nothing from the request path, so `server`, `pipeline` and `admin` can
//! all use it without forming a cycle.

use crate::error::{Dialect, GatewayError};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;

/// The response body type of every handler.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// A complete body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

/// A JSON response with a status.
pub fn json_response(status: u16, body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A 200 JSON response from a value.
pub fn json_value(value: &serde_json::Value) -> Response<Body> {
    json_response(200, serde_json::to_vec(value).unwrap_or_default())
}

/// An error response in the dialect, with `Retry-After` when the error carries one.
pub fn error_response(err: &GatewayError, dialect: Dialect) -> Response<Body> {
    let body = serde_json::to_vec(&err.to_json(dialect)).unwrap_or_default();
    let mut response = json_response(err.status(), body);
    if let Some(after) = err.retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        if let Ok(value) = http::HeaderValue::from_str(&secs.to_string()) {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, value);
        }
    }
    response
}

/// Decode `%XX` escapes and `+`; `None` on a broken escape or invalid UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut input = text.bytes();
    while let Some(byte) = input.next() {
        match byte {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = [input.next()?, input.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                bytes.push(u8::from_str_radix(hex, 16).ok()?);
            }
            other => bytes.push(other),
        }
    }
    String::from_utf8(bytes).ok()
}

/// The `(name, value)` pairs of a query string, percent-decoded; a broken escape is an error
/// naming the parameter.
pub fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for pair in query.trim_start_matches('?').split('&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(raw_key)
            .ok_or_else(|| "query string: bad percent-encoding".to_string())?;
        let value = percent_decode(raw_value)
            .ok_or_else(|| format!("parameter `{key}`: bad percent-encoding"))?;
        pairs.push((key, value));
    }
    Ok(pairs)
}
