//! Redacting a whole record before it reaches the disk: every string and every object key,
//! wherever it sits (tool descriptions and schemas, `stop`, metadata keys, tool-call ids,
//! `response_format`, the feature, errors, and any field added later), by walking the
//! record's JSON value. Only the top-level fields the gateway sets itself are left alone.
//!
//! The walk also bounds nesting: a value deeper than [`MAX_DEPTH`] (a deeply nested tool
//! schema) becomes the [`TOO_DEEP`] marker, so the stored JSON always reads back (serde_json
//! refuses to parse past 128 levels) and the record is kept in a reduced but valid form.

use super::record::LogRecord;
use super::redact::Redactor;
use super::LogError;
use crate::canonical::{ContentPart, ImageSource};
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Top-level record fields the gateway sets itself (ids, times, names from its own config):
/// not redacted, so ids and filters stay exact. Every other string is.
const GATEWAY_FIELDS: &[&str] = &[
    "id",
    "started_at",
    "finished_at",
    "dialect",
    "endpoint",
    "user",
    "team",
    "tier",
    "key_id",
    "served_model",
    "provider",
    "finish_reason",
    "replay_of",
];

/// Containers nested deeper than this below the record's root are replaced by [`TOO_DEEP`].
pub const MAX_DEPTH: usize = 64;
/// What replaces a value nested deeper than [`MAX_DEPTH`].
pub const TOO_DEEP: &str = "[TRUNCATED: nested too deep]";

impl Redactor {
    /// The record redacted (every string and key, images masked, nesting bounded) and
    /// serialised as the journal stores it. `use_hook: false` skips the policy's hook (only
    /// to finish a shutdown in time; the built-in detectors always run).
    pub fn record_json(&self, record: LogRecord, use_hook: bool) -> Result<Vec<u8>, LogError> {
        let value = self.redacted_value(record, use_hook)?;
        Ok(serde_json::to_vec(&value)?)
    }

    /// Redact a record in place, exactly as [`Redactor::record_json`] does before storage.
    pub fn redact_record(&self, record: &mut LogRecord) {
        let redacted = self
            .redacted_value(record.clone(), true)
            .and_then(|value| Ok(serde_json::from_value::<LogRecord>(value)?));
        match redacted {
            Ok(redacted) => *record = redacted,
            // The hook changed a value the record's shape depends on: fall back to the
            // free-text fields.
            Err(_) => self.redact_known_fields(record, true),
        }
    }

    fn redacted_value(&self, mut record: LogRecord, use_hook: bool) -> Result<Value, LogError> {
        mask_images(&mut record);
        let mut value = serde_json::to_value(&record)?;
        if let Value::Object(fields) = &mut value {
            for (key, field) in fields.iter_mut() {
                if !GATEWAY_FIELDS.contains(&key.as_str()) {
                    self.walk(field, 1, use_hook);
                }
            }
        }
        Ok(value)
    }

    fn walk(&self, value: &mut Value, depth: usize, use_hook: bool) {
        let container = match value {
            Value::Array(items) => !items.is_empty(),
            Value::Object(map) => !map.is_empty(),
            _ => false,
        };
        if container && depth >= MAX_DEPTH {
            *value = Value::String(TOO_DEEP.to_string());
            return;
        }
        match value {
            Value::String(text) => self.redact_string_with(text, use_hook),
            Value::Array(items) => {
                for item in items {
                    self.walk(item, depth + 1, use_hook);
                }
            }
            Value::Object(map) => {
                self.redact_keys(map, use_hook);
                for item in map.values_mut() {
                    self.walk(item, depth + 1, use_hook);
                }
            }
            _ => {}
        }
    }

    fn redact_keys(&self, map: &mut Map<String, Value>, use_hook: bool) {
        let renamed: Vec<(String, String)> = map
            .keys()
            .filter_map(|key| match self.redact_with(key, use_hook) {
                Cow::Borrowed(_) => None,
                Cow::Owned(new) => Some((key.clone(), new)),
            })
            .collect();
        for (old, new) in renamed {
            let Some(value) = map.remove(&old) else {
                continue;
            };
            // Two keys masked alike both stay.
            let mut key = new.clone();
            let mut n = 2;
            while map.contains_key(&key) {
                key = format!("{new}#{n}");
                n += 1;
            }
            let _ = map.insert(key, value);
        }
    }
}

/// Inline images (`data:` URLs, base64) become `[IMAGE]`.
fn mask_images(record: &mut LogRecord) {
    for message in &mut record.request.messages {
        for part in &mut message.content {
            if let ContentPart::Image { source, .. } = part {
                match source {
                    ImageSource::Url { url } => {
                        let is_data = url
                            .get(..5)
                            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"));
                        if is_data {
                            *url = "[IMAGE]".to_string();
                        }
                    }
                    ImageSource::Base64 { data, .. } => *data = "[IMAGE]".to_string(),
                }
            }
        }
    }
}
