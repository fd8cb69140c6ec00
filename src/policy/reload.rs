//! Reload triggers: a `notify` watcher on the policy directory (debounced) and SIGHUP.
//!
//! The watcher watches the directory, not the files, so editors that save by writing a
//! temporary file and renaming it over the old one are seen (the rename names the `.rhai`
//! target). Events on other files are ignored, except Kubernetes' `..data` symlink swap of
//! mounted ConfigMaps and the [`ALLOW_HOOK_REMOVAL`] marker (creating it after a refused
//! removal applies the removal). A burst of events (one editor save is several) becomes one reload
//! once the directory has been quiet for the debounce interval.

use super::set::is_policy_file_name;
use super::store::{PolicyStore, ALLOW_HOOK_REMOVAL};
use super::PolicyError;
use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

enum Signal {
    Changed,
    Stop,
}

/// Keeps the directory watcher alive; dropping it stops watching (and joins the reload
/// thread).
pub struct WatchHandle {
    watcher: Option<RecommendedWatcher>,
    stop: Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.watcher.take();
        let _ = self.stop.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Watch the store's directory and call [`PolicyStore::reload`] after each burst of changes
/// to `.rhai` files, once no event arrived for `debounce` (at most ten debounce intervals,
/// and at least one second, after the first event of a burst).
pub fn watch(store: Arc<PolicyStore>, debounce: Duration) -> Result<WatchHandle, PolicyError> {
    let Some(dir) = store.dir().map(std::path::Path::to_path_buf) else {
        return Err(PolicyError::Io {
            path: "[policy] dir".into(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no policy directory to watch",
            ),
        });
    };
    let (tx, rx) = mpsc::channel::<Signal>();
    let events = tx.clone();
    let mut watcher =
        notify::recommended_watcher(move |result: notify::Result<Event>| match result {
            Ok(event) => {
                if is_relevant(&event) {
                    let _ = events.send(Signal::Changed);
                }
            }
            Err(err) => tracing::warn!(error = %err, "policy watcher error"),
        })
        .map_err(|e| watch_error(&dir, e))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| watch_error(&dir, e))?;
    let thread = std::thread::Builder::new()
        .name("policy-watch".into())
        .spawn(move || debounce_loop(&rx, &store, debounce))
        .map_err(|e| PolicyError::io(&dir, e))?;
    tracing::info!(dir = %dir.display(), debounce_ms = debounce.as_millis() as u64, "watching policy directory");
    Ok(WatchHandle {
        watcher: Some(watcher),
        stop: tx,
        thread: Some(thread),
    })
}

fn watch_error(dir: &std::path::Path, err: notify::Error) -> PolicyError {
    PolicyError::io(dir, std::io::Error::other(err.to_string()))
}

/// Whether an event may change the policy: a write, create, remove or rename of a `.rhai`
/// file (or of `..data` or [`ALLOW_HOOK_REMOVAL`]), or a rescan request.
fn is_relevant(event: &Event) -> bool {
    let kind_matters = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        _ => true,
    };
    if !kind_matters {
        return false;
    }
    if event.need_rescan() || event.paths.is_empty() {
        return true;
    }
    event.paths.iter().any(|path| {
        path.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|name| {
                is_policy_file_name(name) || name == "..data" || name == ALLOW_HOOK_REMOVAL
            })
    })
}

fn debounce_loop(rx: &mpsc::Receiver<Signal>, store: &PolicyStore, debounce: Duration) {
    let longest_wait = (debounce * 10).max(Duration::from_secs(1));
    loop {
        match rx.recv() {
            Ok(Signal::Changed) => {}
            Ok(Signal::Stop) | Err(_) => return,
        }
        let first = Instant::now();
        loop {
            if first.elapsed() >= longest_wait {
                break;
            }
            match rx.recv_timeout(debounce) {
                Ok(Signal::Changed) => continue,
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        // Failures are logged and kept in the store's status by `reload` itself.
        let _ = store.reload();
    }
}

/// Reload on every SIGHUP until the runtime shuts down. Call inside a Tokio runtime.
#[cfg(unix)]
pub fn spawn_sighup(store: Arc<PolicyStore>) -> Result<tokio::task::JoinHandle<()>, PolicyError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).map_err(|source| PolicyError::Io {
        path: "SIGHUP".into(),
        source,
    })?;
    Ok(tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("sighup: reloading policy");
            let store = store.clone();
            let _ = tokio::task::spawn_blocking(move || store.reload()).await;
        }
    }))
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
