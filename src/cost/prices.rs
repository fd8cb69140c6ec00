//! One model's prices and what a request costs at them.
//!
//! Canonical [`Usage`] counts every input token in `input_tokens`; the cache reads
//! (`cached_input_tokens`) and cache writes (`cache_write_input_tokens`) are parts of it.
//! [`ModelPrice::cost`] splits the input into uncached, read and written parts and prices
//! each part once, at its own rate. All arithmetic is in integer pico-dollars, rounded up to
//! the nano-dollar once at the end, so a cost never under-counts and
//! [`ModelPrice::worst_case`] bounds it exactly.

use super::money::{PricePerToken, Usd};
use crate::canonical::Usage;

/// The prices of one model, as LiteLLM lists them (base rates plus size tiers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// An uncached input token.
    pub input: PricePerToken,
    /// An output token (reasoning tokens included); zero for embedding models.
    pub output: PricePerToken,
    /// An input token read from the provider's prompt cache; `None` prices it as `input`.
    pub cache_read: Option<PricePerToken>,
    /// An input token written to the provider's prompt cache (Anthropic's 5-minute cache
    /// write); `None` prices it as `input`.
    pub cache_write: Option<PricePerToken>,
    /// Prices for large requests (LiteLLM's `*_above_200k_tokens`): the request's whole input
    /// size picks one tier for every token kind of the request.
    pub tiers: Vec<PriceTier>,
}

/// The prices of a request whose input is larger than `above_input_tokens`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTier {
    /// The tier applies when the request has more input tokens than this.
    pub above_input_tokens: u64,
    /// An uncached input token.
    pub input: PricePerToken,
    /// An output token.
    pub output: PricePerToken,
    /// A cache read; `None` takes the model's base `cache_read` (as LiteLLM does), else
    /// this tier's `input`.
    pub cache_read: Option<PricePerToken>,
    /// A cache write; `None` takes the model's base `cache_write`, else this tier's `input`.
    pub cache_write: Option<PricePerToken>,
}

/// The four rates that price one request, after the tier and fallbacks are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// An uncached input token.
    pub input: PricePerToken,
    /// An output token.
    pub output: PricePerToken,
    /// A cache read.
    pub cache_read: PricePerToken,
    /// A cache write.
    pub cache_write: PricePerToken,
}

impl ModelPrice {
    /// A price with one input and one output rate, no cache rates and no tiers.
    pub fn flat(input: PricePerToken, output: PricePerToken) -> ModelPrice {
        ModelPrice {
            input,
            output,
            cache_read: None,
            cache_write: None,
            tiers: Vec::new(),
        }
    }

    /// The tier that prices a request with `input_tokens` input tokens: the one with the
    /// highest threshold below the input size (`None`: the base rates).
    pub fn tier_for(&self, input_tokens: u64) -> Option<&PriceTier> {
        self.tiers
            .iter()
            .filter(|tier| input_tokens > tier.above_input_tokens)
            .max_by_key(|tier| tier.above_input_tokens)
    }

    /// The rates of a request with `input_tokens` input tokens.
    pub fn rates(&self, input_tokens: u64) -> Rates {
        match self.tier_for(input_tokens) {
            Some(tier) => Rates {
                input: tier.input,
                output: tier.output,
                cache_read: tier.cache_read.or(self.cache_read).unwrap_or(tier.input),
                cache_write: tier.cache_write.or(self.cache_write).unwrap_or(tier.input),
            },
            None => Rates {
                input: self.input,
                output: self.output,
                cache_read: self.cache_read.unwrap_or(self.input),
                cache_write: self.cache_write.unwrap_or(self.input),
            },
        }
    }

    /// What `usage` costs. Uncached input (`input − cache reads − cache writes`), cache
    /// reads, cache writes and output are each priced once at their own rate, at the tier
    /// the whole input size picks. Cache counts larger than the input (a provider's
    /// inconsistency) are capped at it, so cached tokens are never priced on top of the
    /// input. Never negative.
    pub fn cost(&self, usage: &Usage) -> Usd {
        let rates = self.rates(usage.input_tokens);
        let read = usage.cached_input_tokens.min(usage.input_tokens);
        let written = usage
            .cache_write_input_tokens
            .min(usage.input_tokens - read);
        let uncached = usage.input_tokens - read - written;
        round_up(
            pico(rates.input, uncached)
                + pico(rates.cache_read, read)
                + pico(rates.cache_write, written)
                + pico(rates.output, usage.output_tokens),
        )
    }

    /// The most a request with `input_tokens` input tokens and at most `max_output_tokens`
    /// output tokens can cost, for budget admission: every input token at the dearest input
    /// rate of its tier (a cache write costs more than a plain input token), every output
    /// token at the output rate. At least [`ModelPrice::cost`] of any usage with those counts.
    pub fn worst_case(&self, input_tokens: u64, max_output_tokens: u64) -> Usd {
        let rates = self.rates(input_tokens);
        let dearest_input = rates.input.max(rates.cache_read).max(rates.cache_write);
        round_up(pico(dearest_input, input_tokens) + pico(rates.output, max_output_tokens))
    }
}

/// `tokens` at `price` in pico-dollars (a negative price counts as zero).
fn pico(price: PricePerToken, tokens: u64) -> i128 {
    i128::from(price.0.max(0)) * i128::from(tokens)
}

/// Pico-dollars to nano-dollars, rounded up, saturating at the range of [`Usd`].
fn round_up(pico: i128) -> Usd {
    let nanos = (pico + 999) / 1000;
    Usd(i64::try_from(nanos.max(0)).unwrap_or(i64::MAX))
}

#[cfg(test)]
#[path = "prices_tests.rs"]
mod tests;
