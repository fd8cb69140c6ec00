//! Observability: Prometheus metrics. `observe/` knows config; the pipeline feeds it, it never
//! calls the pipeline.

mod metrics;

pub use metrics::{Metrics, RequestLabels, RequestSample, ScrapeInputs, OTHER};
