//! Cost: money types, the price catalogue and the durable spend ledger.
//!
//! `cost/` knows canonical types and config; the pipeline calls it, it never calls the
//! pipeline or a provider.
//!
//! - [`money`]: integer money ([`Usd`] nano-dollars, [`PricePerToken`] pico-dollars).
//! - [`prices`]: one model's prices ([`ModelPrice`], size [`PriceTier`]s) and what a
//!   request costs at them.
//! - [`litellm`]: the parser of LiteLLM's `model_prices_and_context_window.json`.
//! - [`catalogue`]: every configured model's resolved price ([`Catalogue`]), from
//!   `[[models]]` prices, `[cost] pricing_file` and the built-in catalogue.
//! - [`book`]: the live catalogue ([`PriceBook`]), rebuilt on config change and reloaded
//!   when the pricing file changes.

pub mod book;
pub mod catalogue;
pub mod litellm;
mod money;
pub mod period;
pub mod prices;
mod spend;

pub use book::{PriceBook, PriceBookStatus, PriceWatchHandle};
pub use catalogue::{Catalogue, PriceSource, PricedModel};
pub use litellm::{PriceEntry, PriceList, MAX_PRICING_FILE_BYTES};
pub use money::{PricePerToken, Usd, NANOS_PER_USD};
pub use prices::{ModelPrice, PriceTier, Rates};
pub use spend::{
    Dimension, SpendError, SpendEvent, SpendInterval, SpendLedger, SpendLimits, SpendQuery,
    SpendReport, SpendRow, SpendStats, SpendUsage,
};

use crate::error::{ErrorCode, ErrorSource, GatewayError};

/// Why prices could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CostError {
    /// The pricing file could not be opened or read.
    #[error("{path}: cannot read pricing file: {source}")]
    PricingFileRead {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The pricing file is larger than the limit.
    #[error("{path}: pricing file is {size} bytes, over the {limit}-byte limit")]
    PricingFileTooLarge {
        /// The file.
        path: String,
        /// Its size in bytes (at least `limit + 1`).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The pricing file is not a JSON object of model entries.
    #[error("{path}:{line}:{column}: not a LiteLLM price file: {message}")]
    PricingFileParse {
        /// The file.
        path: String,
        /// 1-based line of the fault (0 when unknown).
        line: usize,
        /// 1-based column of the fault (0 when unknown).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The pricing file's directory could not be watched.
    #[error("{path}: cannot watch for pricing changes: {message}")]
    Watch {
        /// The directory.
        path: String,
        /// Why.
        message: String,
    },
}

impl From<CostError> for GatewayError {
    /// A price failure inside a request is a gateway fault; its details stay in the log
    /// (log the `CostError` before converting it).
    fn from(_: CostError) -> GatewayError {
        GatewayError::new(ErrorSource::Internal, ErrorCode::Internal, "pricing error")
    }
}
