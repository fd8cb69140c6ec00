//! Cost: money types, the price catalogue and the durable spend ledger.
//!
//! `cost/` knows canonical types and config; the pipeline calls it, it never calls the
//! pipeline or a provider.

mod money;
pub mod period;
mod spend;

pub use money::{PricePerToken, Usd, NANOS_PER_USD};
pub use spend::{
    Dimension, SpendError, SpendEvent, SpendInterval, SpendLedger, SpendLimits, SpendQuery,
    SpendReport, SpendRow, SpendStats, SpendUsage,
};
