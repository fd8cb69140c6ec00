//! `[logs]`: the request log and its redaction.

use serde::Deserialize;
use std::path::PathBuf;

/// `[logs]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    pub enabled: bool,
    pub dir: PathBuf,
    pub retention_days: u32,
    /// Records buffered between the request path and the journal writer.
    pub channel_capacity: usize,
    /// Longest time a record waits in the journal before fsync.
    pub fsync_interval_ms: u64,
    /// Indexer commit triggers.
    pub commit_every_records: usize,
    pub commit_interval_ms: u64,
    #[serde(default)]
    pub redact: RedactConfig,
    /// A journal segment file is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// How often the retention pass runs (deletes expired records and old journal segments).
    pub retention_interval_s: u64,
    /// Records that may wait for channel room in background hand-offs; past this,
    /// `LogSender::hand_off` gives the record back and the request waits (backpressure).
    pub max_pending_hand_offs: usize,
    /// How long `LogStore::shutdown` may take; past half of it the policy's `redact` hook is
    /// skipped (built-in detectors only) so the queued records are still journaled in time.
    pub shutdown_timeout_ms: u64,
    /// Longest time one admin search may run before it stops (503).
    pub search_timeout_ms: u64,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            dir: PathBuf::from("data/logs"),
            retention_days: 30,
            channel_capacity: 8192,
            fsync_interval_ms: 100,
            commit_every_records: 10_000,
            commit_interval_ms: 1_000,
            redact: RedactConfig::default(),
            segment_bytes: 64 * 1024 * 1024,
            retention_interval_s: 3_600,
            max_pending_hand_offs: 1024,
            shutdown_timeout_ms: 10_000,
            search_timeout_ms: 5_000,
        }
    }
}

impl LogsConfig {
    /// The longest allowed `fsync_interval_ms`: a record is durable within this long.
    pub const MAX_FSYNC_INTERVAL_MS: u64 = 200;

    /// Problems with the `[logs]` section, each as `field: reason` (empty when valid).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.channel_capacity == 0 {
            problems.push("logs.channel_capacity: must be greater than 0".to_string());
        }
        if self.fsync_interval_ms == 0 || self.fsync_interval_ms > Self::MAX_FSYNC_INTERVAL_MS {
            problems.push(format!(
                "logs.fsync_interval_ms: must be between 1 and {}",
                Self::MAX_FSYNC_INTERVAL_MS
            ));
        }
        if self.commit_every_records == 0 {
            problems.push("logs.commit_every_records: must be greater than 0".to_string());
        }
        if self.commit_interval_ms == 0 {
            problems.push("logs.commit_interval_ms: must be greater than 0".to_string());
        }
        if self.segment_bytes < 4096 {
            problems.push("logs.segment_bytes: must be at least 4096".to_string());
        }
        if self.retention_days == 0 {
            problems.push("logs.retention_days: must be greater than 0".to_string());
        }
        if self.retention_interval_s == 0 {
            problems.push("logs.retention_interval_s: must be greater than 0".to_string());
        }
        problems
    }
}

/// `[logs.redact]`: built-in detectors on/off and extra patterns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    pub email: bool,
    pub phone: bool,
    pub card: bool,
    pub iban: bool,
    pub ssn: bool,
    pub ip: bool,
    pub secrets: bool,
    /// Extra regexes; matches become `[REDACTED:<name>]`.
    pub patterns: Vec<RedactPattern>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        RedactConfig {
            email: true,
            phone: true,
            card: true,
            iban: true,
            ssn: true,
            ip: true,
            secrets: true,
            patterns: Vec::new(),
        }
    }
}

/// One operator-defined redaction pattern.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactPattern {
    pub name: String,
    pub regex: String,
}
