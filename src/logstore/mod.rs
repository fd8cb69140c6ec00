//! The request log: redaction, journal, Tantivy indexer, search.

pub mod record;
