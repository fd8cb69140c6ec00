//! Rhai policies: compiled, sandboxed, hot-reloaded.
//!
//! A policy is a directory of `.rhai` files holding `fn` definitions; every hook is
//! optional. [`PolicyStore`] holds the compiled [`PolicySet`] in an `ArcSwap`: a request
//! takes one [`PolicyStore::snapshot`] at its start and keeps it to the end, so a reload never
//! changes a request half-way. [`reload::watch`] and [`reload::spawn_sighup`] recompile on
//! change; a set that fails to compile or fails its self-check never replaces the one in
//! force.
//!
//! Hooks: `route(req)` → [`Decision`], `redact(text)` → string, `limits(req)` →
//! [`LimitSpec`]s, `budget(req, spend)` → [`BudgetAction`], `cache(req)` →
//! [`CacheDecision`]. `req` is [`PolicyRequest::to_dynamic`]. Helpers:
//! `model_info(name)`, `provider_healthy(provider)`, `latency_ms(model, pct)`,
//! `headroom(model)`, `limit_status(key)`, `log(msg)`.
//! A script refuses a request with `throw #{ status: 403, message: "…" }`.
//!
//! Top-level statements of a file never run at request time (hooks are called without
//! re-evaluating the file), so constants belong inside functions; a top-level `let`/`const`
//! is reported as an error.

pub mod budget;
pub mod cache;
pub mod check;
pub mod cli;
pub mod decision;
pub mod engine;
pub mod host;
pub mod limits;
pub mod reload;
pub mod set;
pub mod store;

pub use budget::{BudgetAction, BudgetView};
pub use cache::{CacheDecision, MAX_CACHE_SECONDS};
pub use decision::{Decision, PolicyRequest};
pub use engine::PolicyEngine;
pub use host::{ConfigHost, HostInfo, LatencyWindow, LimitStatus, LimitsView, ModelInfo};
pub use limits::LimitSpec;
pub use set::{PolicyFile, PolicySet};
pub use store::{PolicyOptions, PolicyStore};

use crate::error::{ErrorCode, ErrorSource, GatewayError};

/// Why a policy could not be loaded or a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file does not compile.
    #[error("{file}:{line}:{column}: {message}")]
    Compile {
        /// File name inside the policy directory.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The set compiled but failed its self-check (a hook errored on a sample request,
    /// returned a bad shape or an unknown model).
    #[error("{}: self-check failed: {message}", location(file, *line, *column))]
    SelfCheck {
        /// File of the failing hook.
        file: String,
        /// 1-based line of the failure (0 when unknown).
        line: usize,
        /// 1-based column of the failure (0 when unknown).
        column: usize,
        /// What went wrong, naming the sample request.
        message: String,
    },
    /// The script refused the request: `throw #{ status, message }`. `status` is the thrown
    /// one when in 400..=599, else 403; a thrown string is a 403 with that message.
    #[error("request refused by policy ({status}): {message}")]
    Refused {
        /// HTTP status for the client.
        status: u16,
        /// Message for the client.
        message: String,
    },
    /// A hook failed at run time (type error, operation limit, bad return shape). The
    /// message (with file:line:col) is for logs only, never for the client.
    #[error("policy script error: {message}")]
    Script {
        /// What failed and where.
        message: String,
    },
    /// A request given to `policy test` is not a chat body.
    #[error("invalid test request: {message}")]
    InvalidRequest {
        /// What is wrong with it.
        message: String,
    },
    /// The policy directory or a file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The path that failed.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

fn location(file: &str, line: usize, column: usize) -> String {
    if line == 0 {
        file.to_string()
    } else {
        format!("{file}:{line}:{column}")
    }
}

impl PolicyError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> PolicyError {
        PolicyError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<PolicyError> for GatewayError {
    /// A refusal keeps its status and message; every other policy failure is a 500 whose
    /// details stay in the log (log the `PolicyError` before converting it).
    fn from(err: PolicyError) -> GatewayError {
        match err {
            PolicyError::Refused { status, message } => {
                let code = ErrorCode::for_status(status);
                let mut gateway = GatewayError::new(ErrorSource::Policy, code, message);
                if code.status() != status {
                    gateway.status_override = Some(status);
                }
                gateway
            }
            _ => GatewayError::new(ErrorSource::Policy, ErrorCode::Internal, "policy error"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn compile_error_displays_file_line_column() {
        let err = PolicyError::Compile {
            file: "routing.rhai".into(),
            line: 3,
            column: 7,
            message: "expecting ')'".into(),
        };
        assert_eq!(err.to_string(), "routing.rhai:3:7: expecting ')'");
    }

    #[test]
    fn refusal_keeps_its_status_and_message_for_the_client() {
        let err: GatewayError = PolicyError::Refused {
            status: 429,
            message: "slow down".into(),
        }
        .into();
        assert_eq!(err.status(), 429);
        assert_eq!(err.client_message(), "slow down");
        assert_eq!(err.code, ErrorCode::RateLimited);
    }

    #[test]
    fn script_errors_do_not_reach_the_client() {
        let err: GatewayError = PolicyError::Script {
            message: "routing.rhai:9:1: secret detail".into(),
        }
        .into();
        assert_eq!(err.status(), 500);
        assert!(!err.client_message().contains("secret"));
    }
}
