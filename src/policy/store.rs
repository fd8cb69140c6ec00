//! [`PolicyStore`]: the policy in force, swapped atomically on a successful reload.
//!
//! Policy files that vanish fail closed: a `.rhai` entry that is a dangling symlink, a
//! directory or a symlink to one is a load error naming its path, and a reload that would
//! remove a hook in force (a deleted `routing.rhai` whose `route` blocked requests) keeps
//! the old policy and reports the error, unless the directory holds a file named
//! [`ALLOW_HOOK_REMOVAL`], the operator's statement that hooks are removed on purpose.

use super::engine::{PolicyEngine, DEFAULT_MAX_OPERATIONS};
use super::host::HostInfo;
use super::set::{read_sources, PolicySet};
use super::PolicyError;
use crate::config::Config;
use arc_swap::ArcSwap;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The file whose presence in the policy directory lets a reload remove hooks in force
/// (delete `.rhai` files or empty the directory on purpose); without it such a reload keeps
/// the old policy and reports an error.
pub const ALLOW_HOOK_REMOVAL: &str = "ALLOW_HOOK_REMOVAL";

/// How policies are loaded and run.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Rhai operation limit per hook call (0 means the default, 200,000).
    pub max_operations: u64,
    /// When set, the self-check rejects a `route` decision naming any other model.
    pub known_models: Option<HashSet<String>>,
    /// A hook failing at request time serves the requested model (`true`) or fails the
    /// request (`false`). The store only reports it; the pipeline acts on it.
    pub on_error_open: bool,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            max_operations: DEFAULT_MAX_OPERATIONS,
            known_models: None,
            on_error_open: true,
        }
    }
}

impl PolicyOptions {
    /// Options from `[policy]`, with the `[[models]]` names as the known models.
    pub fn from_config(config: &Config) -> PolicyOptions {
        PolicyOptions {
            max_operations: config.policy.max_operations,
            known_models: Some(config.models.iter().map(|m| m.name.clone()).collect()),
            on_error_open: config.policy.on_error != crate::config::OnError::Closed,
        }
    }
}

/// The last failed (re)load, for `GET /admin/policy`.
#[derive(Debug, Clone)]
struct LastError {
    file: String,
    line: usize,
    column: usize,
    message: String,
    at: DateTime<Utc>,
}

impl LastError {
    fn from_error(err: &PolicyError) -> LastError {
        let (file, line, column, message) = match err {
            PolicyError::Compile {
                file,
                line,
                column,
                message,
            }
            | PolicyError::SelfCheck {
                file,
                line,
                column,
                message,
            } => (file.clone(), *line, *column, message.clone()),
            PolicyError::Io { path, source } => (path.clone(), 0, 0, source.to_string()),
            other => (String::new(), 0, 0, other.to_string()),
        };
        LastError {
            file,
            line,
            column,
            message,
            at: Utc::now(),
        }
    }

    fn to_json(&self) -> Value {
        let known = |n: usize| (n > 0).then_some(n);
        json!({
            "file": self.file,
            "line": known(self.line),
            "column": known(self.column),
            "message": self.message,
            "at": self.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        })
    }
}

/// The policy in force and its reload history. Requests call [`PolicyStore::snapshot`]
/// once and keep that set to the end; reloads swap in a new set only when it compiles and
/// passes its self-check.
pub struct PolicyStore {
    engine: PolicyEngine,
    dir: Option<PathBuf>,
    options: PolicyOptions,
    current: ArcSwap<PolicySet>,
    /// Serialises reloads (watcher and SIGHUP) so versions only grow.
    reload_lock: Mutex<()>,
    last_error: Mutex<Option<LastError>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    hook_errors: AtomicU64,
}

impl PolicyStore {
    /// Compile and self-check the policy of `dir` (version 1), or start with the empty set
    /// (version 0) when there is no directory. A failure here is a start-up error.
    pub fn load(
        dir: Option<&Path>,
        options: PolicyOptions,
        host: Arc<dyn HostInfo>,
    ) -> Result<Arc<PolicyStore>, PolicyError> {
        let engine = PolicyEngine::new(host, options.max_operations);
        let set = match dir {
            Some(dir) => {
                let set = PolicySet::compile_dir(&engine, dir, 1)?;
                set.self_check(options.known_models.as_ref())?;
                tracing::info!(
                    dir = %dir.display(),
                    files = set.files().len(),
                    hooks = ?set.hook_names(),
                    "policy loaded"
                );
                set
            }
            None => PolicySet::empty(&engine, 0),
        };
        Ok(Arc::new(PolicyStore {
            engine,
            dir: dir.map(Path::to_path_buf),
            options,
            current: ArcSwap::from_pointee(set),
            reload_lock: Mutex::new(()),
            last_error: Mutex::new(None),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            hook_errors: AtomicU64::new(0),
        }))
    }

    /// The set in force; take it once per request and keep it.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The policy directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Whether a hook failing at request time should serve the requested model.
    pub fn on_error_open(&self) -> bool {
        self.options.on_error_open
    }

    /// Count a hook that failed at request time (shown as `hook_errors`).
    pub fn record_hook_error(&self) {
        self.hook_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-read the directory; compile, self-check and swap in the new set. Unchanged files
    /// (same names and hashes) keep the set in force. On failure the old set stays, the
    /// error is logged and kept for [`PolicyStore::status_json`]; a later success clears it.
    /// Returns the version in force.
    pub fn reload(&self) -> Result<u64, PolicyError> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.snapshot();
        let Some(dir) = &self.dir else {
            return Ok(current.version());
        };
        match self.build(dir, &current) {
            Ok(next) => {
                let version = match next {
                    Some(set) => {
                        let version = set.version();
                        tracing::info!(
                            dir = %dir.display(),
                            version,
                            files = set.files().len(),
                            hooks = ?set.hook_names(),
                            "policy reloaded"
                        );
                        self.current.store(Arc::new(set));
                        version
                    }
                    None => {
                        tracing::debug!(dir = %dir.display(), "policy files unchanged");
                        current.version()
                    }
                };
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(version)
            }
            Err(err) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                let last = LastError::from_error(&err);
                tracing::error!(
                    dir = %dir.display(),
                    file = %last.file,
                    line = last.line,
                    column = last.column,
                    error = %err,
                    version_in_force = current.version(),
                    "policy reload failed; keeping the policy in force"
                );
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(last);
                Err(err)
            }
        }
    }

    /// The next set, or `None` when the files did not change. A set that lacks a hook of
    /// `current` is refused unless [`ALLOW_HOOK_REMOVAL`] is present.
    fn build(&self, dir: &Path, current: &PolicySet) -> Result<Option<PolicySet>, PolicyError> {
        let sources = read_sources(dir)?;
        let unchanged = current.version() > 0
            && sources.len() == current.files().len()
            && sources
                .iter()
                .zip(current.files())
                .all(|(s, f)| s.name == f.name && s.sha256 == f.sha256);
        if unchanged {
            return Ok(None);
        }
        let set = PolicySet::compile(&self.engine, sources, current.version() + 1)?;
        set.self_check(self.options.known_models.as_ref())?;
        let kept = set.hook_names();
        let lost: Vec<&str> = current
            .hook_names()
            .into_iter()
            .filter(|hook| !kept.contains(hook))
            .collect();
        if !lost.is_empty() && !hook_removal_allowed(dir) {
            let gone: Vec<&str> = current
                .files()
                .iter()
                .map(|f| f.name.as_str())
                .filter(|name| set.files().iter().all(|f| f.name != *name))
                .collect();
            return Err(PolicyError::SelfCheck {
                file: if gone.is_empty() {
                    dir.display().to_string()
                } else {
                    gone.join(", ")
                },
                line: 0,
                column: 0,
                message: format!(
                    "the new policy would remove hook(s) in force: {}; the old policy stays \
                     (to remove hooks on purpose, create a file named {ALLOW_HOOK_REMOVAL} in \
                     the policy directory)",
                    lost.join(", ")
                ),
            });
        }
        Ok(Some(set))
    }

    /// `GET /admin/policy`: version, dir, files, loaded_at, hooks, last_error and counters.
    pub fn status_json(&self) -> Value {
        let set = self.snapshot();
        let last_error = self
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(LastError::to_json);
        json!({
            "version": set.version(),
            "dir": self.dir.as_ref().map(|d| d.display().to_string()),
            "files": set.files(),
            "hooks": set.hook_names(),
            "loaded_at": set.loaded_at().to_rfc3339_opts(SecondsFormat::Millis, true),
            "last_error": last_error,
            "reloads_ok": self.reloads_ok.load(Ordering::Relaxed),
            "reloads_failed": self.reloads_failed.load(Ordering::Relaxed),
            "hook_errors": self.hook_errors.load(Ordering::Relaxed),
            "on_error": if self.options.on_error_open { "open" } else { "closed" },
            "hook_removal_allowed": self.dir.as_deref().is_some_and(hook_removal_allowed),
        })
    }
}

/// Whether the operator has allowed reloads to remove hooks ([`ALLOW_HOOK_REMOVAL`]).
fn hook_removal_allowed(dir: &Path) -> bool {
    dir.join(ALLOW_HOOK_REMOVAL).exists()
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
