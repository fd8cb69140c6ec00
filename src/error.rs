//! `GatewayError`: the one error the request path returns.
//!
//! Each error knows where it came from (`ErrorSource`), what it is (`ErrorCode`, a small
//! closed set mapped to an HTTP status in exactly one function, [`ErrorCode::status`]),
//! whether another attempt could succeed, and how to render itself in the client's dialect.

use serde_json::json;
use std::time::Duration;

/// Which side caused the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client sent something we refuse.
    Client,
    /// The provider failed or answered something we refuse.
    Upstream,
    /// A policy script refused the request or failed.
    Policy,
    /// A bug or resource problem inside the gateway.
    Internal,
}

/// What went wrong, as a small closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed or invalid body, or a field a provider cannot honour (400).
    InvalidRequest,
    /// Missing or unknown gateway key (401).
    Unauthenticated,
    /// A budget is spent, or the model has no price and `[cost] unpriced = "block"` (402).
    BudgetExceeded,
    /// A policy refused the request (403 unless the script named another status).
    Forbidden,
    /// Unknown model or path (404).
    NotFound,
    /// Wrong method on a known path (405).
    MethodNotAllowed,
    /// The client did not send its body in time (408).
    RequestTimeout,
    /// Body over the configured limit (413).
    PayloadTooLarge,
    /// Rate limited, by us or by the provider (429).
    RateLimited,
    /// The provider failed: 5xx, connection error, unparseable body (502).
    BadGateway,
    /// No target could take the request: all breakers open (503).
    Unavailable,
    /// The provider did not answer in time (504).
    Timeout,
    /// A gateway fault (500).
    Internal,
}

impl ErrorCode {
    /// The HTTP status for this code. The only place statuses are decided.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::BudgetExceeded => 402,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Internal => 500,
            ErrorCode::BadGateway => 502,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
        }
    }

    /// The code whose status is `status`, for a refusal that names a status (a policy's
    /// `throw #{ status }`): the inverse of [`ErrorCode::status`], so a refusal answers with
    /// the same error type and code as the gateway's own errors of that status. A status
    /// outside the set takes the nearest kind (4xx: forbidden, 5xx: internal) and keeps its
    /// number through `status_override`.
    pub fn for_status(status: u16) -> ErrorCode {
        const ALL: [ErrorCode; 13] = [
            ErrorCode::InvalidRequest,
            ErrorCode::Unauthenticated,
            ErrorCode::BudgetExceeded,
            ErrorCode::Forbidden,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::RequestTimeout,
            ErrorCode::PayloadTooLarge,
            ErrorCode::RateLimited,
            ErrorCode::BadGateway,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Internal,
        ];
        ALL.into_iter()
            .find(|code| code.status() == status)
            .unwrap_or(if status >= 500 {
                ErrorCode::Internal
            } else {
                ErrorCode::Forbidden
            })
    }

    /// OpenAI's `error.type` for this code.
    fn openai_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::NotFound | ErrorCode::MethodNotAllowed => {
                "invalid_request_error"
            }
            ErrorCode::PayloadTooLarge | ErrorCode::RequestTimeout => "invalid_request_error",
            ErrorCode::Unauthenticated => "authentication_error",
            ErrorCode::BudgetExceeded => "insufficient_quota",
            ErrorCode::Forbidden => "permission_error",
            ErrorCode::RateLimited => "rate_limit_error",
            ErrorCode::Timeout => "timeout_error",
            ErrorCode::BadGateway | ErrorCode::Unavailable | ErrorCode::Internal => "api_error",
        }
    }

    /// Anthropic's `error.type` for this code.
    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::MethodNotAllowed | ErrorCode::RequestTimeout => {
                "invalid_request_error"
            }
            ErrorCode::Unauthenticated => "authentication_error",
            ErrorCode::BudgetExceeded => "billing_error",
            ErrorCode::Forbidden => "permission_error",
            ErrorCode::NotFound => "not_found_error",
            ErrorCode::PayloadTooLarge => "request_too_large",
            ErrorCode::RateLimited => "rate_limit_error",
            ErrorCode::Timeout => "timeout_error",
            ErrorCode::Unavailable => "overloaded_error",
            ErrorCode::BadGateway | ErrorCode::Internal => "api_error",
        }
    }

    /// A short machine-readable code for OpenAI's `error.code` and our logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthenticated => "invalid_api_key",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BadGateway => "upstream_error",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "upstream_timeout",
            ErrorCode::Internal => "internal_error",
        }
    }
}

/// The client dialect an error is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
}

/// The gateway's error.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub source: ErrorSource,
    pub code: ErrorCode,
    /// Safe to show the client: never a secret, never script internals.
    pub message: String,
    /// The request field at fault, when known (OpenAI `error.param`).
    pub param: Option<String>,
    /// How long the client should wait (429/503), passed on as `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The provider's HTTP status, when the error came from one.
    pub upstream_status: Option<u16>,
    /// A status a policy `throw #{status}` asked for, overriding `code.status()`.
    pub status_override: Option<u16>,
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:?}): {}",
            self.code.as_str(),
            self.source,
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

impl GatewayError {
    /// An error with no optional parts.
    pub fn new(source: ErrorSource, code: ErrorCode, message: impl Into<String>) -> Self {
        GatewayError {
            source,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
            upstream_status: None,
            status_override: None,
        }
    }

    /// 400 from the client, naming the offending field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        let mut err = Self::new(ErrorSource::Client, ErrorCode::InvalidRequest, message);
        err.param = Some(param.into());
        err
    }

    /// 400 because the body is not valid JSON of the expected shape.
    pub fn bad_body(message: impl Into<String>) -> Self {
        Self::new(ErrorSource::Client, ErrorCode::InvalidRequest, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorSource::Client, ErrorCode::Unauthenticated, message)
    }

    /// 404 for a model nobody configured.
    pub fn unknown_model(model: &str) -> Self {
        let mut err = Self::new(
            ErrorSource::Client,
            ErrorCode::NotFound,
            format!("the model `{model}` does not exist or is not configured"),
        );
        err.param = Some("model".into());
        err
    }

    /// 500 for a gateway fault; the detail is for the log, the client sees a generic message.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorSource::Internal, ErrorCode::Internal, message)
    }

    /// An upstream failure with the given code.
    pub fn upstream(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(ErrorSource::Upstream, code, message)
    }

    /// Builder: remember the provider's status.
    pub fn with_upstream_status(mut self, status: u16) -> Self {
        self.upstream_status = Some(status);
        self
    }

    /// Builder: ask the client to wait.
    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The HTTP status the client receives.
    pub fn status(&self) -> u16 {
        self.status_override.unwrap_or_else(|| self.code.status())
    }

    /// Whether another attempt (the same target later, or the next target) could succeed.
    pub fn retryable(&self) -> bool {
        self.source == ErrorSource::Upstream
            && matches!(
                self.code,
                ErrorCode::RateLimited
                    | ErrorCode::BadGateway
                    | ErrorCode::Timeout
                    | ErrorCode::Unavailable
            )
    }

    /// The message the client may see: internal faults are redacted.
    pub fn client_message(&self) -> &str {
        if self.source == ErrorSource::Internal {
            "internal gateway error"
        } else {
            &self.message
        }
    }

    /// The message for the gateway's own log: cut short, so an upstream error body that
    /// echoes the prompt, or a client's made-up model name, doesn't copy them to stderr.
    pub fn message_for_log(&self) -> &str {
        const MAX: usize = 160;
        if self.message.len() <= MAX {
            return &self.message;
        }
        let mut cut = MAX;
        while !self.message.is_char_boundary(cut) {
            cut -= 1;
        }
        &self.message[..cut]
    }

    /// The error body in the client's dialect.
    pub fn to_json(&self, dialect: Dialect) -> serde_json::Value {
        match dialect {
            Dialect::OpenAi => json!({
                "error": {
                    "message": self.client_message(),
                    "type": self.code.openai_type(),
                    "param": self.param,
                    "code": self.code.as_str(),
                }
            }),
            Dialect::Anthropic => json!({
                "type": "error",
                "error": {
                    "type": self.code.anthropic_type(),
                    "message": self.client_message(),
                }
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_are_redacted_for_the_client() {
        let err = GatewayError::internal("index writer poisoned at /var/secret");
        let body = err.to_json(Dialect::OpenAi);
        assert_eq!(body["error"]["message"], "internal gateway error");
        assert_eq!(err.status(), 500);
    }

    #[test]
    fn anthropic_error_shape_has_type_error() {
        let err = GatewayError::unknown_model("nope");
        let body = err.to_json(Dialect::Anthropic);
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
        assert_eq!(err.status(), 404);
    }

    #[test]
    fn every_code_maps_back_from_its_status() {
        for status in [
            400, 401, 402, 403, 404, 405, 408, 413, 429, 500, 502, 503, 504,
        ] {
            assert_eq!(ErrorCode::for_status(status).status(), status);
        }
        assert_eq!(ErrorCode::for_status(402), ErrorCode::BudgetExceeded);
        assert_eq!(ErrorCode::for_status(418), ErrorCode::Forbidden);
        assert_eq!(ErrorCode::for_status(599), ErrorCode::Internal);
    }

    #[test]
    fn only_upstream_failures_are_retryable() {
        assert!(GatewayError::upstream(ErrorCode::BadGateway, "x").retryable());
        assert!(GatewayError::upstream(ErrorCode::RateLimited, "x").retryable());
        assert!(!GatewayError::upstream(ErrorCode::InvalidRequest, "x").retryable());
        assert!(!GatewayError::new(ErrorSource::Client, ErrorCode::RateLimited, "x").retryable());
    }
}
