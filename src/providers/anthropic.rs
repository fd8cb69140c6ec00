//! The `anthropic` wire adapter (stub: being written).

use super::{StreamDecoder, Wire, WireRequest};
use crate::canonical::{ChatRequest, ChatResponse};
use crate::config::Secret;
use crate::error::GatewayError;

/// Translation between canonical types and the anthropic wire format.
pub struct AnthropicWire {
    key: Secret<String>,
}

impl AnthropicWire {
    /// An adapter sending `key`.
    pub fn new(key: Secret<String>, _version: Option<String>) -> Self {
        AnthropicWire { key }
    }
}

impl Wire for AnthropicWire {
    fn kind(&self) -> &'static str {
        "anthropic"
    }

    fn chat_request(&self, _req: &ChatRequest, _upstream_model: &str, _stream: bool) -> Result<WireRequest, GatewayError> {
        let _ = &self.key;
        Err(GatewayError::internal("not implemented"))
    }

    fn parse_chat(&self, _body: &[u8]) -> Result<ChatResponse, GatewayError> {
        Err(GatewayError::internal("not implemented"))
    }

    fn stream_decoder(&self, _upstream_model: &str) -> Box<dyn StreamDecoder> {
        unimplemented!()
    }
}
