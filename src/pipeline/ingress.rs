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

/// The whole body, or 413 past `server.max_body_bytes` (checked on Content-Length first).
pub async fn read_body(
    state: &AppState,
    parts: &Parts,
    body: Incoming,
) -> Result<Bytes, GatewayError> {
    let limit = state.config.server.max_body_bytes;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
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
    ctx.requested_model = parsed.request.model.clone();
    for (name, value) in &parts.headers {
        let name = name.as_str();
        if name.starts_with("x-") && name != "x-api-key" {
            if let Ok(value) = value.to_str() {
                ctx.headers.insert(name.to_string(), value.to_string());
            }
        }
    }
    ctx.feature = ctx
        .headers
        .get("x-switchyard-feature")
        .cloned()
        .or_else(|| parsed.request.metadata.get("feature").cloned())
        .filter(|f| !f.is_empty());
    Ok(parsed)
}
