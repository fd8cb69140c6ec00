//! `[server]`: the listener, connection hygiene and shutdown.

use serde::Deserialize;

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free port (printed at start).
    pub listen: String,
    /// Env var holding the admin key that guards `/admin/*`.
    pub admin_key_env: Option<String>,
    /// Or the admin key's SHA-256 in hex.
    pub admin_key_sha256: Option<String>,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace_ms: u64,
    /// `text` or `json` log lines.
    pub log_format: String,
    /// Request threads, each with its own single-threaded runtime, listener (SO_REUSEPORT)
    /// and upstream connection pool; default: one per core.
    pub worker_threads: Option<usize>,
    /// Time a client has to send a request's headers (nginx `client_header_timeout`).
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request's body (nginx `client_body_timeout`).
    pub body_read_timeout_ms: u64,
    /// A connection with no request in flight and no bytes moving for this long is closed
    /// (nginx `keepalive_timeout`).
    pub idle_timeout_ms: u64,
    /// Open client connections at most, across request threads; at the cap, accepting waits.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            admin_key_env: None,
            admin_key_sha256: None,
            max_body_bytes: 10 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
            log_format: "text".into(),
            worker_threads: None,
            header_read_timeout_ms: 60_000,
            body_read_timeout_ms: 60_000,
            idle_timeout_ms: 75_000,
            max_connections: 10_000,
        }
    }
}
