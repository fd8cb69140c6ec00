//! Stage 2: read the body under the size limit and parse it in the client's dialect.

use super::AppState;
use crate::canonical::ChatRequest;
use crate::context::RequestContext;
use crate::error::{Dialect, ErrorCode, ErrorSource, GatewayError};
use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

/// A parsed chat request.
pub struct ParsedChat {
    pub request: ChatRequest,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
}

fn too_large(limit: usize) -> GatewayError {
    GatewayError::new(
        ErrorSource::Client,
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// The whole body, or 413 past `server.max_body_bytes` (checked on Content-Length first),
/// 408 when the client does not send it within `server.body_read_timeout_ms`, 400 for a
/// `Transfer-Encoding` other than `chunked`.
pub async fn read_body(
    state: &AppState,
    parts: &Parts,
    body: Incoming,
) -> Result<Bytes, GatewayError> {
    if let Some(encoding) = parts.headers.get(http::header::TRANSFER_ENCODING) {
        let plain_chunked = encoding
            .to_str()
            .is_ok_and(|e| e.trim().eq_ignore_ascii_case("chunked"));
        if !plain_chunked {
            return Err(GatewayError::bad_body(
                "unsupported Transfer-Encoding: only `chunked` is accepted",
            ));
        }
    }
    let limit = state.config.server.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    let timeout = std::time::Duration::from_millis(state.config.server.body_read_timeout_ms);
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| {
            GatewayError::new(
                ErrorSource::Client,
                ErrorCode::RequestTimeout,
                format!(
                    "the request body was not received within {} ms",
                    timeout.as_millis()
                ),
            )
        })?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => {
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large(limit))
            } else {
                Err(GatewayError::bad_body(format!(
                    "could not read the request body: {err}"
                )))
            }
        }
    }
}

/// Read and parse a chat body; fills the context's model, feature and headers.
pub async fn read_chat(
    state: &AppState,
    ctx: &mut RequestContext,
    parts: &Parts,
    body: Incoming,
) -> Result<ParsedChat, GatewayError> {
    let bytes = read_body(state, parts, body).await?;
    let parsed = match ctx.dialect {
        Dialect::OpenAi => {
            let chat = crate::dialect::openai::parse_chat(&bytes)?;
            ParsedChat {
                request: chat.request,
                include_usage: chat.include_usage,
            }
        }
        Dialect::Anthropic => ParsedChat {
            request: crate::dialect::anthropic::parse_messages(&bytes)?,
            include_usage: false,
        },
    };
    read_context(
        ctx,
        &parsed.request.model,
        parsed.request.metadata.get("feature"),
    );
    Ok(parsed)
}

/// Fill the context from the request's headers, before anything else runs (so even a
/// refused request's record names its feature): the client's `x-*` headers minus
/// credentials, and the feature from `x-switchyard-feature`.
pub fn read_headers(ctx: &mut RequestContext, headers: &http::HeaderMap) {
    for (name, value) in headers {
        let name = name.as_str();
        if name.starts_with("x-") && name != "x-api-key" {
            if let Ok(value) = value.to_str() {
                ctx.headers.insert(name.to_string(), value.to_string());
            }
        }
    }
    ctx.cache_control = headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    ctx.resolve_feature(None);
}

/// Fill the context from a parsed request: the model asked for, and the feature when only
/// the body's `metadata.feature` names it.
pub fn read_context(ctx: &mut RequestContext, model: &str, metadata_feature: Option<&String>) {
    ctx.requested_model = model.to_string();
    ctx.resolve_feature(metadata_feature);
}
