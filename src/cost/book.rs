//! [`PriceBook`]: the live catalogue. Requests read it lock-free ([`PriceBook::catalogue`]);
//! a config change rebuilds it ([`PriceBook::rebuild`]); a watcher reloads the pricing file
//! when it changes ([`PriceBook::watch`]). A file that fails to load never replaces good
//! prices: the previous catalogue stays and the error is kept for `/admin`.
//!
//! The watcher watches the file's directory, not the file, so editors that save by writing
//! a temporary file and renaming it over the old one are seen, as are Kubernetes' `..data`
//! symlink swaps of mounted ConfigMaps; a burst of events becomes one reload once the
//! directory has been quiet for the debounce interval (as `policy::reload` does). The file
//! is parsed on the watcher's own thread, never on a request thread.

use super::catalogue::{builtin, Catalogue};
use super::litellm::{self, PriceList};
use super::CostError;
use crate::config::{Config, ModelConfig, ProviderConfig};
use arc_swap::{ArcSwap, Guard};
use chrono::{DateTime, Utc};
use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What `/admin` shows about the prices in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PriceBookStatus {
    /// `[cost] pricing_file`, if any.
    pub file: Option<PathBuf>,
    /// When the pricing file in force was read.
    pub loaded_at: Option<DateTime<Utc>>,
    /// Priced entries of the pricing file in force.
    pub entries: usize,
    /// Entries of that file skipped as malformed, and the first few of them.
    pub bad_entries: usize,
    /// The first few malformed entries, each as `name: reason`.
    pub bad_examples: Vec<String>,
    /// Priced entries of the built-in catalogue.
    pub builtin_entries: usize,
    /// Configured models with no price.
    pub unpriced_models: Vec<String>,
    /// Why the last load of the pricing file failed (cleared by a good load).
    pub last_error: Option<String>,
    /// Successful reloads of the pricing file after startup.
    pub reloads: u64,
    /// Failed reloads of the pricing file after startup.
    pub failed_reloads: u64,
}

/// What the catalogue is built from; kept so a file change can rebuild it.
struct Inputs {
    models: Vec<ModelConfig>,
    providers: Vec<ProviderConfig>,
    file_path: Option<PathBuf>,
    /// The last good parse of `file_path`.
    file: Option<Arc<PriceList>>,
}

struct State {
    inputs: Inputs,
    status: PriceBookStatus,
}

/// The live price catalogue: lock-free reads, rebuilt on config change and file change.
pub struct PriceBook {
    catalogue: ArcSwap<Catalogue>,
    state: Mutex<State>,
}

impl PriceBook {
    /// Build from the startup config. A pricing file that cannot be read or parsed is an
    /// error naming the file (startup must not run on prices it cannot read).
    pub fn new(config: &Config) -> Result<PriceBook, CostError> {
        let file = match &config.cost.pricing_file {
            Some(path) => Some(Arc::new(litellm::load_file(path)?)),
            None => None,
        };
        let inputs = Inputs {
            models: config.models.clone(),
            providers: config.providers.clone(),
            file_path: config.cost.pricing_file.clone(),
            file,
        };
        let catalogue = build(&inputs);
        let mut status = PriceBookStatus {
            file: inputs.file_path.clone(),
            builtin_entries: builtin().len(),
            ..PriceBookStatus::default()
        };
        note_file(&mut status, inputs.file.as_deref());
        status.unpriced_models = catalogue.unpriced_models();
        Ok(PriceBook {
            catalogue: ArcSwap::from_pointee(catalogue),
            state: Mutex::new(State { inputs, status }),
        })
    }

    /// The catalogue in force. Lock-free; hold the guard only briefly (for the length of a
    /// lookup), or use [`PriceBook::snapshot`] to keep it.
    pub fn catalogue(&self) -> Guard<Arc<Catalogue>> {
        self.catalogue.load()
    }

    /// The catalogue in force, to keep across awaits.
    pub fn snapshot(&self) -> Arc<Catalogue> {
        self.catalogue.load_full()
    }

    /// Rebuild for a changed config (models, providers or `pricing_file`), re-reading the
    /// pricing file. Reads the disk: call it off the request path (`spawn_blocking`).
    ///
    /// If the file fails to load the error is returned and kept in the status, and the
    /// prices are not lost: when the file path is unchanged the catalogue is rebuilt for
    /// the new models with the last good parse of the file; when the path changed the
    /// previous catalogue stays in force.
    pub fn rebuild(&self, config: &Config) -> Result<(), CostError> {
        let loaded = config
            .cost
            .pricing_file
            .as_deref()
            .map(litellm::load_file)
            .transpose();
        let mut state = self.lock();
        let same_path = state.inputs.file_path == config.cost.pricing_file;
        let (file, outcome) = match loaded {
            Ok(file) => (file.map(Arc::new), Ok(())),
            Err(err) if same_path => (state.inputs.file.clone(), Err(err)),
            Err(err) => {
                state.status.last_error = Some(err.to_string());
                return Err(err);
            }
        };
        state.inputs = Inputs {
            models: config.models.clone(),
            providers: config.providers.clone(),
            file_path: config.cost.pricing_file.clone(),
            file,
        };
        let catalogue = build(&state.inputs);
        state.status.file = state.inputs.file_path.clone();
        state.status.unpriced_models = catalogue.unpriced_models();
        match &outcome {
            Ok(()) => {
                let file = state.inputs.file.clone();
                note_file(&mut state.status, file.as_deref());
                state.status.last_error = None;
            }
            Err(err) => state.status.last_error = Some(err.to_string()),
        }
        self.catalogue.store(Arc::new(catalogue));
        outcome
    }

    /// Re-read the pricing file and rebuild the catalogue with it; on failure keep the
    /// previous catalogue and record the error. What the watcher calls on a change; also
    /// usable from a SIGHUP handler. Reads the disk: call it off the request path.
    pub fn reload_file(&self) -> Result<(), CostError> {
        let Some(path) = self.lock().inputs.file_path.clone() else {
            return Ok(());
        };
        let loaded = litellm::load_file(&path);
        let mut state = self.lock();
        if state.inputs.file_path.as_deref() != Some(path.as_path()) {
            // The config moved to another file while this one was being read.
            return Ok(());
        }
        match loaded {
            Ok(list) => {
                state.inputs.file = Some(Arc::new(list));
                let catalogue = build(&state.inputs);
                state.status.unpriced_models = catalogue.unpriced_models();
                let file = state.inputs.file.clone();
                note_file(&mut state.status, file.as_deref());
                state.status.last_error = None;
                state.status.reloads += 1;
                self.catalogue.store(Arc::new(catalogue));
                tracing::info!(file = %path.display(), entries = state.status.entries, "pricing file reloaded");
                Ok(())
            }
            Err(err) => {
                state.status.failed_reloads += 1;
                state.status.last_error = Some(err.to_string());
                tracing::warn!(error = %err, "pricing file reload failed; keeping the previous prices");
                Err(err)
            }
        }
    }

    /// What `/admin` shows about the prices in force.
    pub fn status(&self) -> PriceBookStatus {
        self.lock().status.clone()
    }

    /// Watch the pricing file's directory and call [`PriceBook::reload_file`] after each
    /// burst of changes to the file, once no event arrived for `debounce` (at most ten
    /// debounce intervals, and at least one second, after the first event of a burst).
    /// `Ok(None)` when no pricing file is configured. Dropping the handle stops watching and
    /// joins the watcher thread. A rebuild that moves `pricing_file` to another directory
    /// needs a new watch.
    pub fn watch(
        self: &Arc<Self>,
        debounce: Duration,
    ) -> Result<Option<PriceWatchHandle>, CostError> {
        let Some(path) = self.lock().inputs.file_path.clone() else {
            return Ok(None);
        };
        let name = path.file_name().map(OsString::from).unwrap_or_default();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tx, rx) = mpsc::channel::<Signal>();
        let events = tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |result: notify::Result<Event>| match result {
                Ok(event) => {
                    if is_relevant(&event, &name) {
                        let _ = events.send(Signal::Changed);
                    }
                }
                Err(err) => tracing::warn!(error = %err, "pricing file watcher error"),
            })
            .map_err(|err| watch_error(&dir, &err))?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|err| watch_error(&dir, &err))?;
        let book = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("pricing-watch".into())
            .spawn(move || debounce_loop(&rx, &book, debounce))
            .map_err(|err| CostError::Watch {
                path: dir.display().to_string(),
                message: err.to_string(),
            })?;
        tracing::info!(file = %path.display(), debounce_ms = debounce.as_millis() as u64, "watching pricing file");
        Ok(Some(PriceWatchHandle {
            path,
            watcher: Some(watcher),
            stop: tx,
            thread: Some(thread),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent data (every update is a plain
        // assignment), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn build(inputs: &Inputs) -> Catalogue {
    Catalogue::build(
        &inputs.models,
        &inputs.providers,
        inputs.file.as_deref(),
        builtin(),
    )
}

fn note_file(status: &mut PriceBookStatus, file: Option<&PriceList>) {
    status.loaded_at = file.map(|_| Utc::now());
    status.entries = file.map_or(0, PriceList::len);
    status.bad_entries = file.map_or(0, |list| list.bad);
    status.bad_examples = file
        .map(|list| list.bad_examples.clone())
        .unwrap_or_default();
}

enum Signal {
    Changed,
    Stop,
}

/// Keeps the pricing-file watcher alive; dropping it stops watching and joins its thread.
pub struct PriceWatchHandle {
    path: PathBuf,
    watcher: Option<RecommendedWatcher>,
    stop: Sender<Signal>,
    thread: Option<JoinHandle<()>>,
}

impl PriceWatchHandle {
    /// The pricing file being watched.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PriceWatchHandle {
    fn drop(&mut self) {
        self.watcher.take();
        let _ = self.stop.send(Signal::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn watch_error(dir: &Path, err: &notify::Error) -> CostError {
    CostError::Watch {
        path: dir.display().to_string(),
        message: err.to_string(),
    }
}

/// Whether an event may change the pricing file: a write, create, remove or rename naming
/// it (or Kubernetes' `..data`), or a rescan request.
fn is_relevant(event: &Event, file_name: &OsString) -> bool {
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
            .is_some_and(|name| name == file_name.as_os_str() || name == "..data")
    })
}

fn debounce_loop(rx: &mpsc::Receiver<Signal>, book: &PriceBook, debounce: Duration) {
    let longest_wait = (debounce * 10).max(Duration::from_secs(1));
    loop {
        match rx.recv() {
            Ok(Signal::Changed) => {}
            Ok(Signal::Stop) | Err(_) => return,
        }
        let first = Instant::now();
        while first.elapsed() < longest_wait {
            match rx.recv_timeout(debounce) {
                Ok(Signal::Changed) => continue,
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        // Failures are logged and kept in the status by `reload_file` itself.
        let _ = book.reload_file();
    }
}

#[cfg(test)]
#[path = "book_tests.rs"]
mod tests;
