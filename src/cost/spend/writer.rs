//! The writer thread: events from the bounded channel are framed into per-day buffers,
//! written, and fsynced at most `fsync_interval_ms` after the first unsynced one.
//!
//! A frame stays in memory from its append until the fsync that makes it durable. A failed
//! write or fsync (a full disk) drops the file handle; the next attempt reopens the file,
//! cuts it back to its durable end and writes every kept frame again, so a torn frame never
//! stays in front of good ones and nothing recorded is lost while the process lives. Failed
//! attempts are retried every [`FAILING_RETRY`] and counted in `write_errors`. While the
//! kept bytes exceed the ledger's bound, `record` waits and `try_record` refuses (see
//! [`super::SpendLedger::record`]).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::event::SpendEvent;
use super::journal::{self, PendingFile, Snapshot};
use super::{Shared, SpendError};

/// How often a failing write is retried.
pub(crate) const FAILING_RETRY: Duration = Duration::from_millis(250);
/// Unwritten frames are written (not yet fsynced) past this many bytes.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;
/// Day files kept open when idle (the latest ones).
const OPEN_DAYS: usize = 2;

/// Messages to the writer, in channel order.
pub(crate) enum WriterMsg {
    /// An event to append.
    Event(Box<SpendEvent>),
    /// Fsync everything appended so far, then answer.
    Flush(oneshot::Sender<Result<(), SpendError>>),
    /// Answer with what is not durable yet (for a scan that must see it).
    Snapshot(oneshot::Sender<Snapshot>),
    /// Close the handles of days before this UTC day (retention is about to delete their
    /// files), then answer.
    CloseBefore(i64, oneshot::Sender<()>),
    /// Append what is queued, fsync, and stop.
    Shutdown,
    /// Stop at once without writing or fsyncing (a simulated crash).
    #[cfg(test)]
    Kill,
    /// Say so on the first, then block until the second's sender is dropped (so that the
    /// channel fills).
    #[cfg(test)]
    Stall(oneshot::Sender<()>, std::sync::mpsc::Receiver<()>),
}

/// One UTC day's file and its frames not yet durable.
struct DayFile {
    path: PathBuf,
    /// The open handle; dropped after a failure (the next attempt reopens) and when idle.
    file: Option<File>,
    /// Bytes of the file that are whole frames and fsynced: always known, so that a
    /// [`Snapshot`] tells a scan exactly where the file's durable part ends.
    durable_end: u64,
    /// Frames after `durable_end`, in order; `written` bytes of them are written.
    unsynced: Vec<u8>,
    unsynced_events: u64,
    written: usize,
    /// The file was created by us and its directory entry is not fsynced yet.
    new_entry: bool,
    /// The last write or fsync failed (bytes past the durable end are ours, not torn).
    after_failure: bool,
}

impl DayFile {
    /// The day file at `path`; its durable end is `known_end` (found at open) or, for a
    /// file not seen at open, the end of its last whole frame (scanned now: rare, a file
    /// made by someone else).
    fn new(path: PathBuf, known_end: Option<u64>, shared: &Shared) -> DayFile {
        let durable_end = known_end.unwrap_or_else(|| match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {
                match journal::scan_file(&path, None, &mut |_| true) {
                    Ok(scan) => {
                        shared
                            .corrupt_frames
                            .fetch_add(scan.corrupt, Ordering::Relaxed);
                        scan.valid_end
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "spend ledger file unreadable; appending at its end");
                        meta.len()
                    }
                }
            }
            _ => 0,
        });
        DayFile {
            path,
            file: None,
            durable_end,
            unsynced: Vec::new(),
            unsynced_events: 0,
            written: 0,
            new_entry: false,
            after_failure: false,
        }
    }

    /// Opens the file for appending at its durable end: a torn tail (bytes past the last
    /// whole frame) is cut first; after a failure, what was written past the durable end
    /// is cut so that the kept frames are written again in order.
    fn prepare(&mut self, shared: &Shared) -> std::io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let existed = match std::fs::metadata(&self.path) {
            Ok(meta) if !meta.is_file() => {
                return Err(std::io::Error::other("not a regular file"));
            }
            Ok(_) => true,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
            Err(err) => return Err(err),
        };
        if !existed && self.durable_end > 0 {
            tracing::debug!(path = %self.path.display(), "spend ledger file was deleted; starting it anew");
            self.durable_end = 0;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.new_entry |= !existed;
        let len = file.metadata()?.len();
        if len > self.durable_end {
            if !self.after_failure {
                tracing::warn!(
                    path = %self.path.display(),
                    valid_end = self.durable_end,
                    file_len = len,
                    "spend ledger file has a torn tail; truncating it before appending"
                );
                shared
                    .truncated_bytes
                    .fetch_add(len - self.durable_end, Ordering::Relaxed);
            }
            file.set_len(self.durable_end)?;
        } else if len < self.durable_end {
            tracing::error!(
                path = %self.path.display(),
                expected = self.durable_end,
                file_len = len,
                "spend ledger file shrank behind the writer's back; appending at its end"
            );
            self.durable_end = len;
        }
        self.file = Some(file);
        self.written = 0;
        self.after_failure = false;
        Ok(())
    }

    /// Writes the unwritten frames (no fsync).
    fn write_unwritten(&mut self, shared: &Shared) -> std::io::Result<()> {
        self.prepare(shared)?;
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("spend ledger file is not open"));
        };
        file.write_all(self.unsynced.get(self.written..).unwrap_or_default())?;
        self.written = self.unsynced.len();
        Ok(())
    }

    /// Writes and fsyncs the kept frames; returns how many events became durable.
    fn sync(&mut self, dir: &Path, shared: &Shared) -> std::io::Result<u64> {
        if self.unsynced.is_empty() {
            return Ok(0);
        }
        self.write_unwritten(shared)?;
        if let Some(file) = self.file.as_mut() {
            file.sync_data()?;
        }
        if self.new_entry {
            journal::sync_dir(dir)?;
            self.new_entry = false;
        }
        self.durable_end += self.unsynced.len() as u64;
        self.unsynced.clear();
        self.written = 0;
        Ok(std::mem::take(&mut self.unsynced_events))
    }

    /// Forgets the handle after a failure; the next attempt reopens and rewrites.
    fn failed(&mut self) {
        self.file = None;
        self.written = 0;
        self.after_failure = true;
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    pub(crate) dir: PathBuf,
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: mpsc::Receiver<WriterMsg>,
    pub(crate) fsync_interval: Duration,
    /// Durable ends found at open (the newest file, its torn tail already cut).
    pub(crate) known_ends: HashMap<i64, u64>,
    files: BTreeMap<i64, DayFile>,
    /// The first error of the current failure episode.
    failing: Option<String>,
}

/// Sets `done` when the writer ends (also on a panic).
struct DoneGuard(watch::Sender<bool>);

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl Writer {
    /// A writer for `dir`, fed by `rx`.
    pub(crate) fn new(
        dir: PathBuf,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<WriterMsg>,
        fsync_interval: Duration,
        known_ends: HashMap<i64, u64>,
    ) -> Writer {
        Writer {
            dir,
            shared,
            rx,
            fsync_interval,
            known_ends,
            files: BTreeMap::new(),
            failing: None,
        }
    }

    /// The thread body; `done` is set to `true` when it ends, however it ends.
    pub(crate) fn run(mut self, done: watch::Sender<bool>) {
        let _guard = DoneGuard(done);
        match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.run_loop()),
            Err(err) => {
                tracing::error!(error = %err, "spend ledger writer cannot start its timer");
                self.rx.close();
                self.drain_and_stop();
            }
        }
    }

    async fn run_loop(&mut self) {
        // When the next fsync is due: the first unsynced event's append + the interval, or
        // the next retry of a failing write.
        let mut sync_due: Option<Instant> = None;
        loop {
            let message = match sync_due {
                Some(due) => match tokio::time::timeout_at(due, self.rx.recv()).await {
                    Ok(message) => message,
                    Err(_elapsed) => {
                        sync_due = self
                            .sync_all()
                            .err()
                            .map(|_| Instant::now() + FAILING_RETRY);
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            match message {
                Some(WriterMsg::Event(event)) => {
                    self.append(&event);
                    let due = *sync_due.get_or_insert_with(|| Instant::now() + self.fsync_interval);
                    if Instant::now() >= due {
                        sync_due = self
                            .sync_all()
                            .err()
                            .map(|_| Instant::now() + FAILING_RETRY);
                    }
                }
                Some(WriterMsg::Flush(reply)) => {
                    let result = self.sync_all();
                    sync_due = result.is_err().then(|| Instant::now() + FAILING_RETRY);
                    let _ = reply.send(result);
                }
                Some(WriterMsg::Snapshot(reply)) => {
                    let _ = reply.send(self.snapshot());
                }
                Some(WriterMsg::CloseBefore(day, reply)) => {
                    for file in self.files.range_mut(..day).map(|(_, file)| file) {
                        file.file = None;
                    }
                    let _ = reply.send(());
                }
                Some(WriterMsg::Shutdown) | None => {
                    self.rx.close();
                    self.drain_and_stop();
                    return;
                }
                #[cfg(test)]
                Some(WriterMsg::Kill) => return,
                #[cfg(test)]
                Some(WriterMsg::Stall(stalled, release)) => {
                    let _ = stalled.send(());
                    let _ = release.recv();
                }
            }
        }
    }

    /// After the channel closed: append what is queued, answer what asks, fsync, and count
    /// what could not be made durable as dropped.
    fn drain_and_stop(&mut self) {
        let mut flushes = Vec::new();
        while let Ok(message) = self.rx.try_recv() {
            match message {
                WriterMsg::Event(event) => self.append(&event),
                WriterMsg::Flush(reply) => flushes.push(reply),
                WriterMsg::Snapshot(reply) => {
                    let _ = reply.send(self.snapshot());
                }
                _ => {}
            }
        }
        let result = self.sync_all();
        let lost: u64 = self.files.values().map(|f| f.unsynced_events).sum();
        if lost > 0 {
            self.shared.dropped.fetch_add(lost, Ordering::Relaxed);
            self.shared.abandoned.fetch_add(lost, Ordering::Release);
            tracing::error!(
                events = lost,
                dir = %self.dir.display(),
                "spend ledger stops while writes fail; events not made durable are lost"
            );
        }
        for reply in flushes {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(_) => Err(SpendError::Closed),
            });
        }
        tracing::debug!(dir = %self.dir.display(), "spend ledger writer stopped");
    }

    /// Frames one event into its day's buffer.
    fn append(&mut self, event: &SpendEvent) {
        let day = journal::utc_day(event.ts_ms);
        let dir = &self.dir;
        let known_ends = &self.known_ends;
        let shared = &self.shared;
        let file = self.files.entry(day).or_insert_with(|| {
            let known_end = known_ends.get(&day).copied();
            DayFile::new(journal::file_path(dir, day), known_end, shared)
        });
        let before = file.unsynced.len();
        if let Err(err) = journal::encode_frame(event, &mut file.unsynced) {
            // Unreachable for normalized events (their strings are capped); counted anyway.
            file.unsynced.truncate(before);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            self.shared.abandoned.fetch_add(1, Ordering::Release);
            tracing::error!(request_id = %event.request_id, error = %err, "spend event cannot be framed; dropped");
            return;
        }
        file.unsynced_events += 1;
        let grown = (file.unsynced.len() - before) as u64;
        self.shared.pending_bytes.fetch_add(grown, Ordering::AcqRel);
        if file.unsynced.len() - file.written >= WRITE_CHUNK_BYTES && self.failing.is_none() {
            // Write early (no fsync); a failure is handled and retried at the next sync.
            if file.write_unwritten(&self.shared).is_err() {
                file.failed();
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Writes and fsyncs every day with kept frames; on failure keeps them for a retry.
    fn sync_all(&mut self) -> Result<(), SpendError> {
        let mut first_error = None;
        let mut durable = 0;
        for file in self.files.values_mut() {
            if file.unsynced.is_empty() {
                continue;
            }
            match file.sync(&self.dir, &self.shared) {
                Ok(events) => {
                    durable += events;
                    self.shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    file.failed();
                    self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                    first_error.get_or_insert_with(|| SpendError::io(&file.path, err));
                }
            }
        }
        self.shared
            .durable_events
            .fetch_add(durable, Ordering::AcqRel);
        let kept: usize = self.files.values().map(|f| f.unsynced.len()).sum();
        self.shared
            .pending_bytes
            .store(kept as u64, Ordering::Release);
        self.shared.room.notify_waiters();
        match first_error {
            None => {
                if let Some(first_error) = self.failing.take() {
                    self.shared.failing.store(false, Ordering::Release);
                    tracing::warn!(
                        dir = %self.dir.display(),
                        first_error,
                        "spend ledger writes succeed again; the events kept in memory are durable"
                    );
                }
                self.close_idle_files();
                Ok(())
            }
            Some(err) => {
                if self.failing.is_none() {
                    self.shared.failing.store(true, Ordering::Release);
                    tracing::error!(
                        error = %err,
                        kept_bytes = kept,
                        "spend ledger write failed (disk full?); events are kept in memory and retried"
                    );
                    self.failing = Some(err.to_string());
                }
                Err(err)
            }
        }
    }

    /// Closes the handles of days other than the latest [`OPEN_DAYS`] that have nothing
    /// kept (their entries stay: a few bytes per day touched, with the durable end).
    fn close_idle_files(&mut self) {
        for file in self.files.values_mut().rev().skip(OPEN_DAYS) {
            if file.unsynced.is_empty() {
                file.file = None;
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.files
            .iter()
            .map(|(&day, file)| {
                let pending = PendingFile {
                    limit: file.durable_end,
                    unsynced: file.unsynced.clone(),
                };
                (day, pending)
            })
            .collect()
    }
}

/// Wakes a parked thread.
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread, parking between polls. Works inside and
/// outside a runtime; only for futures served by another thread (the writer's).
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut context = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
