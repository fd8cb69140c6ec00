//! LiteLLM's `model_prices_and_context_window.json`: a top-level object of model name →
//! entry. The parser is defensive: the file is size-bounded, unknown fields are ignored,
//! an entry without token prices (images, audio seconds, search queries) is skipped and
//! counted, a malformed entry is skipped and reported, and only a file that is not JSON at
//! all is an error (naming the file, line and column).
//!
//! Fields read from an entry (USD per token): `input_cost_per_token`,
//! `output_cost_per_token`, `cache_read_input_token_cost`,
//! `cache_creation_input_token_cost`, their size tiers `…_above_{N}k_tokens` (N thousand
//! input tokens), `litellm_provider` and `mode`. Variants we do not price (`…_batches`,
//! `…_priority`, `…_flex`, the one-hour cache write `…_above_1hr`) are ignored. A missing
//! output price is zero for `mode: "embedding"` and makes any other entry unpriced.
//! The key `sample_spec` and keys starting with `_` (our `_source`) are not models.

use super::money::PricePerToken;
use super::prices::{ModelPrice, PriceTier};
use super::CostError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

/// Largest pricing file accepted (LiteLLM's own file is under 2 MiB).
pub const MAX_PRICING_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Names of bad entries kept for messages.
const BAD_NAMES_KEPT: usize = 5;

/// One priced entry of a LiteLLM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceEntry {
    /// Its prices.
    pub price: ModelPrice,
    /// `litellm_provider` (`openai`, `anthropic`, `gemini`, `vertex_ai-language-models`, …).
    pub provider: Option<String>,
    /// `mode` (`chat`, `embedding`, `responses`, …).
    pub mode: Option<String>,
}

/// The priced entries of a LiteLLM file and what was skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceList {
    /// Model name (the JSON key) → entry.
    pub entries: HashMap<String, PriceEntry>,
    /// Entries skipped because they have no token prices (image, audio, search models…).
    pub unpriced: usize,
    /// Entries skipped because a field has the wrong type or an impossible value.
    pub bad: usize,
    /// The first few bad entries, each as `name: reason`.
    pub bad_examples: Vec<String>,
}

impl PriceList {
    /// The entry under exactly this key.
    pub fn get(&self, key: &str) -> Option<&PriceEntry> {
        self.entries.get(key)
    }

    /// Number of priced entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no entry is priced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn note_bad(&mut self, name: &str, reason: &str) {
        self.bad += 1;
        if self.bad_examples.len() < BAD_NAMES_KEPT {
            self.bad_examples.push(format!("{name}: {reason}"));
        }
    }
}

/// Read and parse a pricing file, refusing one larger than [`MAX_PRICING_FILE_BYTES`].
pub fn load_file(path: &Path) -> Result<PriceList, CostError> {
    load_file_bounded(path, MAX_PRICING_FILE_BYTES)
}

/// [`load_file`] with a size limit of `limit` bytes.
pub fn load_file_bounded(path: &Path, limit: u64) -> Result<PriceList, CostError> {
    let read_error = |source| CostError::PricingFileRead {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let declared = file.metadata().map_err(read_error)?.len();
    let too_large = |size| CostError::PricingFileTooLarge {
        path: path.display().to_string(),
        size,
        limit,
    };
    if declared > limit {
        return Err(too_large(declared));
    }
    // The file may grow between `metadata` and `read`: read one byte past the limit.
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    let text = String::from_utf8(bytes).map_err(|err| CostError::PricingFileParse {
        path: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("not UTF-8 ({err})"),
    })?;
    parse(&text, &path.display().to_string())
}

/// Parse the text of a LiteLLM price file; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<PriceList, CostError> {
    let root: Map<String, Value> =
        serde_json::from_str(text).map_err(|err| CostError::PricingFileParse {
            path: origin.to_string(),
            line: err.line(),
            column: err.column(),
            message: err.to_string(),
        })?;
    let mut list = PriceList::default();
    for (name, value) in &root {
        if name == "sample_spec" || name.starts_with('_') {
            continue;
        }
        let Some(fields) = value.as_object() else {
            list.note_bad(name, "not an object");
            continue;
        };
        match entry(fields) {
            Ok(Some(entry)) => {
                list.entries.insert(name.clone(), entry);
            }
            Ok(None) => list.unpriced += 1,
            Err(reason) => list.note_bad(name, &reason),
        }
    }
    Ok(list)
}

/// One entry: `Ok(None)` when it has no token prices, `Err(reason)` when malformed.
fn entry(fields: &Map<String, Value>) -> Result<Option<PriceEntry>, String> {
    let mode = text_field(fields, "mode")?;
    let provider = text_field(fields, "litellm_provider")?;
    let Some(input) = price_field(fields, "input_cost_per_token")? else {
        return Ok(None);
    };
    let output = match price_field(fields, "output_cost_per_token")? {
        Some(output) => output,
        None if mode.as_deref() == Some("embedding") => PricePerToken(0),
        None => return Ok(None),
    };
    let mut price = ModelPrice {
        input,
        output,
        cache_read: price_field(fields, "cache_read_input_token_cost")?,
        cache_write: price_field(fields, "cache_creation_input_token_cost")?,
        tiers: Vec::new(),
    };
    price.tiers = tiers(fields, &price)?;
    Ok(Some(PriceEntry {
        price,
        provider,
        mode,
    }))
}

/// The tier fields of an entry, grouped by threshold and filled from the base prices.
fn tiers(fields: &Map<String, Value>, base: &ModelPrice) -> Result<Vec<PriceTier>, String> {
    #[derive(Default)]
    struct Parts {
        input: Option<PricePerToken>,
        output: Option<PricePerToken>,
        cache_read: Option<PricePerToken>,
        cache_write: Option<PricePerToken>,
    }
    const KINDS: [&str; 4] = [
        "input_cost_per_token_above_",
        "output_cost_per_token_above_",
        "cache_read_input_token_cost_above_",
        "cache_creation_input_token_cost_above_",
    ];
    let mut by_threshold: BTreeMap<u64, Parts> = BTreeMap::new();
    for key in fields.keys() {
        for (kind, prefix) in KINDS.iter().enumerate() {
            let Some(thousands) = key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix("k_tokens"))
                .filter(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|digits| digits.parse::<u64>().ok())
            else {
                continue;
            };
            let Some(price) = price_field(fields, key)? else {
                continue;
            };
            let parts = by_threshold
                .entry(thousands.saturating_mul(1000))
                .or_default();
            let slot = match kind {
                0 => &mut parts.input,
                1 => &mut parts.output,
                2 => &mut parts.cache_read,
                _ => &mut parts.cache_write,
            };
            *slot = Some(price);
        }
    }
    Ok(by_threshold
        .into_iter()
        .map(|(above_input_tokens, parts)| PriceTier {
            above_input_tokens,
            input: parts.input.unwrap_or(base.input),
            output: parts.output.unwrap_or(base.output),
            cache_read: parts.cache_read,
            cache_write: parts.cache_write,
        })
        .collect())
}

/// A USD-per-token field: `Ok(None)` when absent or null, `Err` when not a sane price.
fn price_field(fields: &Map<String, Value>, key: &str) -> Result<Option<PricePerToken>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_f64()
            .and_then(PricePerToken::from_usd_per_token)
            .map(Some)
            .ok_or_else(|| format!("`{key}` is not a price ({number})")),
        Some(other) => Err(format!("`{key}` is not a number ({})", kind_of(other))),
    }
}

/// A string field: `Ok(None)` when absent or null, `Err` when not a string.
fn text_field(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(other) => Err(format!("`{key}` is not a string ({})", kind_of(other))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "litellm_tests.rs"]
mod tests;
