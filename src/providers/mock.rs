//! The `mock` provider (stub: being written).

use super::{EventStream, Provider};
use crate::canonical::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse};
use crate::config::MockSettings;
use crate::error::GatewayError;
use futures_util::future::BoxFuture;

/// Answers in-process with generated text.
pub struct MockProvider {
    settings: MockSettings,
}

impl MockProvider {
    /// A mock with these settings.
    pub fn new(settings: MockSettings) -> Self {
        MockProvider { settings }
    }
}

impl Provider for MockProvider {
    fn chat(
        &self,
        _req: &ChatRequest,
        _upstream_model: &str,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        let _ = &self.settings;
        Box::pin(async { Err(GatewayError::internal("not implemented")) })
    }

    fn chat_stream(
        &self,
        _req: &ChatRequest,
        _upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>> {
        Box::pin(async { Err(GatewayError::internal("not implemented")) })
    }

    fn embed(
        &self,
        _req: &EmbeddingsRequest,
        _upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>> {
        Box::pin(async { Err(GatewayError::internal("not implemented")) })
    }
}
