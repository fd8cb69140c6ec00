//! Observability: Prometheus metrics and the built-in dashboard page. `observe/` knows
//! config; the pipeline feeds it, it never calls the pipeline.

mod dashboard;
mod metrics;

pub use dashboard::{is_dashboard_path, serve as dashboard, CONTENT_SECURITY_POLICY};

pub use metrics::{Metrics, RequestLabels, RequestSample, ScrapeInputs, OTHER};
