//! The `openai` wire adapter (stub: being written).

use super::{StreamDecoder, Wire, WireRequest};
use crate::canonical::{ChatRequest, ChatResponse};
use crate::config::Secret;
use crate::error::GatewayError;

/// Translation between canonical types and the openai wire format.
pub struct OpenAiWire {
    key: Secret<String>,
}

impl OpenAiWire {
    /// An adapter sending `key`.
    pub fn new(key: Secret<String>) -> Self {
        OpenAiWire { key }
    }
}

impl Wire for OpenAiWire {
    fn kind(&self) -> &'static str {
        "openai"
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
