//! Rhai policies: compiled, sandboxed, hot-reloaded.
