//! `[cache]`: the response cache (identical requests answered without calling a provider).

use serde::Deserialize;

/// Whose requests may share a cache entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheScope {
    /// One gateway key's requests.
    Key,
    /// One user's requests.
    User,
    /// One team's requests (a user without a team is their own scope).
    #[default]
    Team,
    /// Everyone's: identical requests from any tenant share an entry.
    Global,
}

impl CacheScope {
    /// The name in config, scripts and `/admin/cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheScope::Key => "key",
            CacheScope::User => "user",
            CacheScope::Team => "team",
            CacheScope::Global => "global",
        }
    }

    /// The scope of this name, if it is one.
    pub fn parse(name: &str) -> Option<CacheScope> {
        match name {
            "key" => Some(CacheScope::Key),
            "user" => Some(CacheScope::User),
            "team" => Some(CacheScope::Team),
            "global" => Some(CacheScope::Global),
            _ => None,
        }
    }
}

/// `[cache]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Off by default: caching repeats answers, which a sampling temperature would vary.
    pub enabled: bool,
    /// How long an entry answers as fresh.
    pub ttl_s: u64,
    /// Memory for entries, in bytes (an entry weighs its size).
    pub max_bytes: u64,
    /// The largest single entry kept, in bytes.
    pub max_entry_bytes: u64,
    /// Whose requests share entries.
    pub scope: CacheScope,
    /// How long past its TTL an entry is kept to answer when every target of the chain
    /// fails (`x-switchyard-cache: stale`); 0 = never.
    pub max_stale_s: u64,
    /// Whether answers that end in tool calls are stored.
    pub tool_calls: bool,
    /// Longest time an identical request waits for the one in flight (single flight) before
    /// calling the provider itself.
    pub flight_wait_ms: u64,
    /// Cluster mode: Redis as a second level (issue: cluster).
    pub shared: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            enabled: false,
            ttl_s: 600,
            max_bytes: 256 * 1024 * 1024,
            max_entry_bytes: 4 * 1024 * 1024,
            scope: CacheScope::Team,
            max_stale_s: 86_400,
            tool_calls: false,
            flight_wait_ms: 60_000,
            shared: false,
        }
    }
}

impl CacheConfig {
    /// Problems with the `[cache]` section, each as `(field, reason)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.enabled && self.ttl_s == 0 {
            problems.push(("cache.ttl_s".into(), "must be at least 1".into()));
        }
        if self.enabled && self.max_bytes < 1024 {
            problems.push(("cache.max_bytes".into(), "must be at least 1024".into()));
        }
        if self.max_entry_bytes > self.max_bytes {
            problems.push((
                "cache.max_entry_bytes".into(),
                "must not exceed cache.max_bytes".into(),
            ));
        }
        problems
    }
}
