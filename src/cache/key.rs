//! The cache key: SHA-256 over a canonical encoding of everything in a chat request that can
//! change the answer, plus the tenant scope.
//!
//! The encoding is written straight into the hasher (no intermediate string of the whole
//! request). It is unambiguous: it starts with a version label, every field is written in a
//! fixed order behind its own tag byte, every string and list is prefixed by its length,
//! every optional value by a presence byte (so an absent field and an empty one differ),
//! every float by its bit pattern after `-0.0` is folded into `0.0` (and every NaN into one
//! NaN), and JSON values (tool parameters, response schemas) by a canonical form with object
//! keys sorted. Two requests share a key only when the encodings are equal byte for byte.
//!
//! Not keyed: `stream` (a cached answer can be sent either way), `metadata` and `end_user`
//! (bookkeeping, not instructions to the model); the tenant is keyed through the scope.

use std::fmt;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical::{
    ChatRequest, ContentPart, ImageSource, Message, ResponseFormat, Role, Tool, ToolCall,
    ToolChoice,
};
use crate::config::CacheScope;
use crate::context::Principal;

/// The label every encoding starts with; bump it when the encoding changes so old entries
/// (in a shared second level) can never be read as new ones.
const ENCODING_VERSION: &[u8] = b"switchyard.cache.key.v1";

/// The identity of a cached answer: the SHA-256 of the canonical encoding of a request and
/// its scope. Shown as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `request` as seen by tenant `scope` (see [`scope_value`]).
    pub fn of(request: &ChatRequest, scope: &str) -> CacheKey {
        let mut encoder = Encoder::new();
        encoder.request(request, scope);
        CacheKey(encoder.hasher.finalize().into())
    }

    /// A key from its 32 raw bytes (a key read back from a log or a second level).
    pub const fn from_bytes(bytes: [u8; 32]) -> CacheKey {
        CacheKey(bytes)
    }

    /// The 32 raw bytes of the digest.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({self})")
    }
}

/// The tenant part of a cache key for `principal` under `scope`: `key:<key_id>`,
/// `user:<user>`, `team:<team>` (a user without a team is `user:<user>`, their own scope),
/// or `global`. Stored with each entry, so `/admin/cache` can purge one tenant.
pub fn scope_value(scope: CacheScope, principal: &Principal) -> String {
    match scope {
        CacheScope::Key => format!("key:{}", principal.key_id),
        CacheScope::User => format!("user:{}", principal.user),
        CacheScope::Team => match principal.team.as_deref().filter(|team| !team.is_empty()) {
            Some(team) => format!("team:{team}"),
            None => format!("user:{}", principal.user),
        },
        CacheScope::Global => "global".to_string(),
    }
}

/// Field tags: one byte before each field, in the order they are written.
mod tag {
    pub const SCOPE: u8 = 0x01;
    pub const MODEL: u8 = 0x02;
    pub const MESSAGES: u8 = 0x03;
    pub const TOOLS: u8 = 0x04;
    pub const TOOL_CHOICE: u8 = 0x05;
    pub const PARALLEL_TOOL_CALLS: u8 = 0x06;
    pub const RESPONSE_FORMAT: u8 = 0x07;
    pub const TEMPERATURE: u8 = 0x08;
    pub const TOP_P: u8 = 0x09;
    pub const TOP_K: u8 = 0x0a;
    pub const STOP: u8 = 0x0b;
    pub const MAX_TOKENS: u8 = 0x0c;
    pub const SEED: u8 = 0x0d;
    pub const PRESENCE_PENALTY: u8 = 0x0e;
    pub const FREQUENCY_PENALTY: u8 = 0x0f;
    pub const END: u8 = 0xff;

    // Inside a message.
    pub const ROLE: u8 = 0x20;
    pub const CONTENT: u8 = 0x21;
    pub const TOOL_CALLS: u8 = 0x22;
    pub const TOOL_CALL_ID: u8 = 0x23;
    pub const IS_ERROR: u8 = 0x24;
    pub const NAME: u8 = 0x25;

    // Content parts and image sources.
    pub const PART_TEXT: u8 = 0x30;
    pub const PART_IMAGE: u8 = 0x31;
    pub const IMAGE_URL: u8 = 0x32;
    pub const IMAGE_BASE64: u8 = 0x33;

    // JSON values.
    pub const JSON_NULL: u8 = 0x40;
    pub const JSON_FALSE: u8 = 0x41;
    pub const JSON_TRUE: u8 = 0x42;
    pub const JSON_UINT: u8 = 0x43;
    pub const JSON_INT: u8 = 0x44;
    pub const JSON_FLOAT: u8 = 0x45;
    pub const JSON_STRING: u8 = 0x46;
    pub const JSON_ARRAY: u8 = 0x47;
    pub const JSON_OBJECT: u8 = 0x48;
}

/// Writes the canonical encoding into a SHA-256 hasher.
struct Encoder {
    hasher: Sha256,
}

impl Encoder {
    fn new() -> Encoder {
        let mut encoder = Encoder {
            hasher: Sha256::new(),
        };
        encoder.bytes(ENCODING_VERSION);
        encoder
    }

    fn request(&mut self, request: &ChatRequest, scope: &str) {
        self.tag(tag::SCOPE);
        self.str(scope);
        self.tag(tag::MODEL);
        self.str(&request.model);
        self.tag(tag::MESSAGES);
        self.len(request.messages.len());
        for message in &request.messages {
            self.message(message);
        }
        self.tag(tag::TOOLS);
        self.len(request.tools.len());
        for tool in &request.tools {
            self.tool(tool);
        }
        self.tag(tag::TOOL_CHOICE);
        self.option(request.tool_choice.as_ref(), Encoder::tool_choice);
        self.tag(tag::PARALLEL_TOOL_CALLS);
        self.option(request.parallel_tool_calls, Encoder::bool);
        self.tag(tag::RESPONSE_FORMAT);
        self.option(request.response_format.as_ref(), Encoder::response_format);
        self.tag(tag::TEMPERATURE);
        self.option(request.temperature, Encoder::f64);
        self.tag(tag::TOP_P);
        self.option(request.top_p, Encoder::f64);
        self.tag(tag::TOP_K);
        self.option(request.top_k, |e, k| e.u64(u64::from(k)));
        self.tag(tag::STOP);
        self.len(request.stop.len());
        for stop in &request.stop {
            self.str(stop);
        }
        self.tag(tag::MAX_TOKENS);
        self.option(request.max_tokens, |e, n| e.u64(u64::from(n)));
        self.tag(tag::SEED);
        self.option(request.seed, |e, seed| e.bytes(&seed.to_le_bytes()));
        self.tag(tag::PRESENCE_PENALTY);
        self.option(request.presence_penalty, Encoder::f64);
        self.tag(tag::FREQUENCY_PENALTY);
        self.option(request.frequency_penalty, Encoder::f64);
        self.tag(tag::END);
    }

    fn message(&mut self, message: &Message) {
        self.tag(tag::ROLE);
        self.tag(match message.role {
            Role::System => 1,
            Role::User => 2,
            Role::Assistant => 3,
            Role::Tool => 4,
        });
        self.tag(tag::CONTENT);
        self.len(message.content.len());
        for part in &message.content {
            self.content_part(part);
        }
        self.tag(tag::TOOL_CALLS);
        self.len(message.tool_calls.len());
        for call in &message.tool_calls {
            self.tool_call(call);
        }
        self.tag(tag::TOOL_CALL_ID);
        self.option(message.tool_call_id.as_deref(), Encoder::str);
        self.tag(tag::IS_ERROR);
        self.bool(message.is_error);
        self.tag(tag::NAME);
        self.option(message.name.as_deref(), Encoder::str);
    }

    fn content_part(&mut self, part: &ContentPart) {
        match part {
            ContentPart::Text { text } => {
                self.tag(tag::PART_TEXT);
                self.str(text);
            }
            ContentPart::Image { source, detail } => {
                self.tag(tag::PART_IMAGE);
                match source {
                    ImageSource::Url { url } => {
                        self.tag(tag::IMAGE_URL);
                        self.str(url);
                    }
                    ImageSource::Base64 { media_type, data } => {
                        self.tag(tag::IMAGE_BASE64);
                        self.str(media_type);
                        self.str(data);
                    }
                }
                self.option(detail.as_deref(), Encoder::str);
            }
        }
    }

    fn tool_call(&mut self, call: &ToolCall) {
        self.str(&call.id);
        self.str(&call.name);
        self.str(&call.arguments);
    }

    fn tool(&mut self, tool: &Tool) {
        self.str(&tool.name);
        self.option(tool.description.as_deref(), Encoder::str);
        self.json(&tool.parameters);
    }

    fn tool_choice(&mut self, choice: &ToolChoice) {
        match choice {
            ToolChoice::Auto => self.tag(1),
            ToolChoice::None => self.tag(2),
            ToolChoice::Required => self.tag(3),
            ToolChoice::Tool(name) => {
                self.tag(4);
                self.str(name);
            }
        }
    }

    fn response_format(&mut self, format: &ResponseFormat) {
        match format {
            ResponseFormat::Text => self.tag(1),
            ResponseFormat::JsonObject => self.tag(2),
            ResponseFormat::JsonSchema {
                name,
                schema,
                strict,
            } => {
                self.tag(3);
                self.str(name);
                self.json(schema);
                self.option(*strict, Encoder::bool);
            }
        }
    }

    /// A JSON value in canonical form: object keys in sorted order, numbers by kind and bits.
    /// The depth is bounded by the parser (serde_json refuses nesting beyond 128 levels).
    fn json(&mut self, value: &Value) {
        match value {
            Value::Null => self.tag(tag::JSON_NULL),
            Value::Bool(false) => self.tag(tag::JSON_FALSE),
            Value::Bool(true) => self.tag(tag::JSON_TRUE),
            Value::Number(number) => {
                if let Some(n) = number.as_u64() {
                    self.tag(tag::JSON_UINT);
                    self.u64(n);
                } else if let Some(n) = number.as_i64() {
                    self.tag(tag::JSON_INT);
                    self.bytes(&n.to_le_bytes());
                } else {
                    self.tag(tag::JSON_FLOAT);
                    self.f64(number.as_f64().unwrap_or(f64::NAN));
                }
            }
            Value::String(text) => {
                self.tag(tag::JSON_STRING);
                self.str(text);
            }
            Value::Array(items) => {
                self.tag(tag::JSON_ARRAY);
                self.len(items.len());
                for item in items {
                    self.json(item);
                }
            }
            Value::Object(map) => {
                self.tag(tag::JSON_OBJECT);
                self.len(map.len());
                let sorted = map
                    .keys()
                    .zip(map.keys().skip(1))
                    .all(|(before, after)| before < after);
                if sorted {
                    // serde_json's default map is a BTreeMap: already in key order.
                    for (key, item) in map {
                        self.str(key);
                        self.json(item);
                    }
                } else {
                    // `preserve_order` keeps insertion order: sort for a canonical form.
                    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    for (key, item) in entries {
                        self.str(key);
                        self.json(item);
                    }
                }
            }
        }
    }

    fn option<T>(&mut self, value: Option<T>, write: impl FnOnce(&mut Encoder, T)) {
        match value {
            None => self.tag(0),
            Some(value) => {
                self.tag(1);
                write(self, value);
            }
        }
    }

    fn tag(&mut self, tag: u8) {
        self.hasher.update([tag]);
    }

    fn bool(&mut self, value: bool) {
        self.tag(u8::from(value));
    }

    fn len(&mut self, len: usize) {
        self.u64(len as u64);
    }

    fn u64(&mut self, value: u64) {
        self.hasher.update(value.to_le_bytes());
    }

    /// A float by its bits, with `-0.0` folded into `0.0` and every NaN into one.
    fn f64(&mut self, value: f64) {
        let value = if value == 0.0 {
            0.0
        } else if value.is_nan() {
            f64::NAN
        } else {
            value
        };
        self.u64(value.to_bits());
    }

    fn str(&mut self, text: &str) {
        self.bytes(text.as_bytes());
    }

    /// Length-prefixed bytes.
    fn bytes(&mut self, bytes: &[u8]) {
        self.len(bytes.len());
        self.hasher.update(bytes);
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
