//! The price of every configured model, resolved once when the catalogue is built so the
//! request path does one hash lookup ([`Catalogue::price`]).
//!
//! Where a model's price comes from, first match wins:
//! 1. `[[models]]` prices (`input_usd_per_mtok`, `output_usd_per_mtok`,
//!    `cached_input_usd_per_mtok`); a price the entry leaves out is filled from 2 or 3. When
//!    the entry sets its input or output price, the catalogue's size tiers are dropped: the
//!    configured flat price is what the operator declared.
//! 2. `[cost] pricing_file`, a LiteLLM price file.
//! 3. The built-in catalogue, `builtin_prices.json`: LiteLLM's entries for the OpenAI,
//!    Anthropic and Gemini APIs, trimmed from `BerriAI/litellm`
//!    `model_prices_and_context_window.json` at commit
//!    `00035b69f416be24e2e323c13198d9b7d2d1bdf9`, taken 2026-12-01 (its `_source` key says
//!    the same). Replace it by pointing `pricing_file` at a newer LiteLLM file.
//!
//! A model is looked up in a price list by its upstream id (`upstream`, else `name`):
//! the exact id; then `{prefix}/{id}` with the provider kind's LiteLLM prefix (`openai`,
//! `anthropic`, `gemini`); then, for an id ending in a date (`-20250929`, `-2024-08-06`),
//! the id without it; or, for an id without a date, the one dated key that extends it
//! (`claude-sonnet-4-5` → `claude-sonnet-4-5-20250929`) when exactly one price is found
//! among such keys. A Gemini id written as `models/…` is looked up without `models/`.

use super::litellm::{self, PriceEntry, PriceList};
use super::money::PricePerToken;
use super::prices::ModelPrice;
use super::CostError;
use crate::config::{Config, ModelConfig, ModelKind, ProviderConfig, ProviderKind};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::OnceLock;

/// The built-in catalogue (LiteLLM format).
const BUILTIN_PRICES: &str = include_str!("builtin_prices.json");

/// Where a model's price came from, for `/admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceSource {
    /// The model's `[[models]]` entry (possibly completed from a price list).
    Config,
    /// `[cost] pricing_file`.
    File,
    /// The built-in catalogue.
    Builtin,
}

/// A configured model's resolved price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedModel {
    /// The price requests are charged at.
    pub price: ModelPrice,
    /// Where it came from.
    pub source: PriceSource,
    /// The price-list key that matched (`None` when the config alone priced it).
    pub matched_key: Option<String>,
}

/// The prices of the configured models, built from config, pricing file and built-in list.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    priced: HashMap<String, PricedModel>,
    unpriced: Vec<String>,
    file_entries: usize,
}

/// The built-in price list, parsed once. It is checked by a test; should it ever fail to
/// parse, the gateway runs with an empty built-in list and logs why.
pub fn builtin() -> &'static PriceList {
    static BUILTIN: OnceLock<PriceList> = OnceLock::new();
    BUILTIN.get_or_init(
        || match litellm::parse(BUILTIN_PRICES, "builtin_prices.json") {
            Ok(list) => list,
            Err(err) => {
                tracing::error!(error = %err, "built-in price catalogue does not parse");
                PriceList::default()
            }
        },
    )
}

impl Catalogue {
    /// Build from a config: reads `[cost] pricing_file` (an error names the file) and uses
    /// the built-in list. No watcher: for tests and one-shot tools.
    pub fn from_config(config: &Config) -> Result<Catalogue, CostError> {
        let file = match &config.cost.pricing_file {
            Some(path) => Some(litellm::load_file(path)?),
            None => None,
        };
        Ok(Catalogue::build(
            &config.models,
            &config.providers,
            file.as_ref(),
            builtin(),
        ))
    }

    /// Resolve the price of every model in `models` (see the module doc for the order).
    pub fn build(
        models: &[ModelConfig],
        providers: &[ProviderConfig],
        file: Option<&PriceList>,
        builtin: &PriceList,
    ) -> Catalogue {
        let mut catalogue = Catalogue {
            file_entries: file.map_or(0, PriceList::len),
            ..Catalogue::default()
        };
        for model in models {
            let kind = providers
                .iter()
                .find(|p| p.name == model.provider)
                .map(|p| p.kind);
            let found = file
                .and_then(|list| lookup(list, model.upstream_id(), kind))
                .map(|(key, entry)| (key, entry, PriceSource::File))
                .or_else(|| {
                    lookup(builtin, model.upstream_id(), kind)
                        .map(|(key, entry)| (key, entry, PriceSource::Builtin))
                });
            match resolve(model, found) {
                Some(priced) => {
                    catalogue.priced.insert(model.name.clone(), priced);
                }
                None => catalogue.unpriced.push(model.name.clone()),
            }
        }
        catalogue
    }

    /// The price of the configured model `model` (its client-facing name); `None` when it
    /// has none (or is not configured). One hash lookup.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.priced.get(model).map(|priced| &priced.price)
    }

    /// The price, its source and the matched key of the configured model `model`.
    pub fn entry(&self, model: &str) -> Option<&PricedModel> {
        self.priced.get(model)
    }

    /// Where the price of `model` came from; `None` when it has no price.
    pub fn source_of(&self, model: &str) -> Option<PriceSource> {
        self.priced.get(model).map(|priced| priced.source)
    }

    /// The configured models with no price, in config order.
    pub fn unpriced_models(&self) -> Vec<String> {
        self.unpriced.clone()
    }

    /// Number of configured models with a price.
    pub fn priced_count(&self) -> usize {
        self.priced.len()
    }

    /// Number of priced entries the pricing file had (0 without one).
    pub fn file_entries(&self) -> usize {
        self.file_entries
    }
}

/// Combine a model's config prices with the price-list entry found for it.
fn resolve(
    model: &ModelConfig,
    found: Option<(String, &PriceEntry, PriceSource)>,
) -> Option<PricedModel> {
    let configured = |usd: Option<f64>| usd.and_then(PricePerToken::from_usd_per_mtok);
    let input = configured(model.input_usd_per_mtok);
    let output = configured(model.output_usd_per_mtok);
    let cached = configured(model.cached_input_usd_per_mtok);
    if input.is_none() && output.is_none() && cached.is_none() {
        let (key, entry, source) = found?;
        return Some(PricedModel {
            price: entry.price.clone(),
            source,
            matched_key: Some(key),
        });
    }
    let base = found.as_ref().map(|(_, entry, _)| &entry.price);
    let embedding_output = (model.kind == ModelKind::Embedding).then_some(PricePerToken(0));
    let price = ModelPrice {
        input: input.or(base.map(|b| b.input))?,
        output: output.or(base.map(|b| b.output)).or(embedding_output)?,
        cache_read: cached.or(base.and_then(|b| b.cache_read)),
        cache_write: base.and_then(|b| b.cache_write),
        tiers: match base {
            Some(base) if input.is_none() && output.is_none() => base.tiers.clone(),
            _ => Vec::new(),
        },
    };
    Some(PricedModel {
        price,
        source: PriceSource::Config,
        matched_key: found.map(|(key, _, _)| key),
    })
}

/// LiteLLM's key prefix for a provider kind's own API.
fn litellm_prefix(kind: Option<ProviderKind>) -> Option<&'static str> {
    match kind? {
        ProviderKind::OpenAi => Some("openai"),
        ProviderKind::Anthropic => Some("anthropic"),
        ProviderKind::Gemini => Some("gemini"),
        ProviderKind::OpenAiCompatible | ProviderKind::Mock => None,
    }
}

/// Find `id` in `list` (see the module doc); returns the matched key and its entry.
fn lookup<'a>(
    list: &'a PriceList,
    id: &str,
    kind: Option<ProviderKind>,
) -> Option<(String, &'a PriceEntry)> {
    let id = match kind {
        Some(ProviderKind::Gemini) => id.strip_prefix("models/").unwrap_or(id),
        _ => id,
    };
    let prefix = litellm_prefix(kind);
    let spellings = |id: &str| {
        let mut keys = vec![id.to_string()];
        if let Some(prefix) = prefix {
            keys.push(format!("{prefix}/{id}"));
        }
        keys
    };
    let exact = |keys: Vec<String>| {
        keys.into_iter()
            .find_map(|key| list.get(&key).map(|entry| (key, entry)))
    };
    if let Some(found) = exact(spellings(id)) {
        return Some(found);
    }
    match strip_date(id) {
        Some(undated) => exact(spellings(undated)),
        None => spellings(id)
            .into_iter()
            .find_map(|stem| only_dated_extension(list, &stem)),
    }
}

/// The one price among keys `{stem}-{date}`; `None` when there is none or they disagree.
fn only_dated_extension<'a>(list: &'a PriceList, stem: &str) -> Option<(String, &'a PriceEntry)> {
    let mut dated: Vec<(&String, &PriceEntry)> = list
        .entries
        .iter()
        .filter(|(key, _)| {
            key.strip_prefix(stem)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(is_date)
        })
        .collect();
    dated.sort_by(|a, b| a.0.cmp(b.0));
    let (first_key, first) = dated.first()?;
    dated
        .iter()
        .all(|(_, entry)| entry.price == first.price)
        .then(|| ((*first_key).clone(), *first))
}

/// `id` without a trailing `-YYYYMMDD` or `-YYYY-MM-DD`.
fn strip_date(id: &str) -> Option<&str> {
    [8, 10].into_iter().find_map(|len| {
        let split = id.len().checked_sub(len + 1)?;
        let (stem, date) = (id.get(..split)?, id.get(split..)?);
        let date = date.strip_prefix('-')?;
        (is_date(date) && !stem.is_empty()).then_some(stem)
    })
}

/// `YYYYMMDD` or `YYYY-MM-DD` with a plausible year, month and day.
fn is_date(text: &str) -> bool {
    let digits: String = match text.len() {
        8 => text.to_string(),
        10 if text.as_bytes().get(4) == Some(&b'-') && text.as_bytes().get(7) == Some(&b'-') => {
            text.replace('-', "")
        }
        _ => return false,
    };
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let number = |range: std::ops::Range<usize>| {
        digits
            .get(range)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    (2000..2100).contains(&number(0..4))
        && (1..=12).contains(&number(4..6))
        && (1..=31).contains(&number(6..8))
}

#[cfg(test)]
#[path = "catalogue_tests.rs"]
mod tests;
