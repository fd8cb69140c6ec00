//! The durable spend ledger: every served request's cost, journaled to daily files and
//! summed in memory for budget checks.
//!
//! - [`SpendLedger::record`] / [`SpendLedger::try_record`] add an event to the in-memory sums
//!   at once (a budget check right after sees it) and hand it to the writer thread through a
//!   bounded channel; the writer appends it to `<ledger_dir>/YYYY-MM-DD.spend` (the event's
//!   UTC date) and fsyncs in batches, at most `fsync_interval_ms` after it (`journal.rs`
//!   has the frame format, `writer.rs` the failure handling).
//! - [`SpendLedger::spent`] / [`SpendLedger::usage`] read the sums of one value of one
//!   dimension for the current day, month or everything retained (`aggregate.rs`).
//! - [`SpendLedger::report`] scans the files of a range (`report.rs`);
//!   [`SpendLedger::replay`] hands every retained event to a callback.
//!
//! Nothing recorded is dropped while the ledger runs. Memory is bounded: the channel holds
//! [`SpendLimits::channel_capacity`] events, and while writes fail (a full disk) the writer keeps
//! at most [`SpendLimits::max_pending_bytes`] of frames and retries; past that `try_record`
//! gives events back and `record` waits (counted in `backpressure_waits`). An event
//! recorded after [`SpendLedger::shutdown`], or still not durable when the writer stops
//! while writes fail, is counted in `dropped` and logged.
//!
//! One process owns a ledger directory: two ledgers on one directory would interleave
//! frames in the same files (readers resync, but nothing stops it).

mod aggregate;
mod event;
mod journal;
mod recovery;
mod report;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch, Notify};

pub use event::{Dimension, SpendEvent, SpendUsage};
pub use report::{SpendInterval, SpendQuery, SpendReport, SpendRow, MAX_REPORT_ROWS};

use crate::config::BudgetPeriod;
use crate::config::CostConfig;
use crate::cost::Usd;
use crate::error::{ErrorCode, ErrorSource, GatewayError};
use aggregate::Aggregates;
use journal::Snapshot;
use recovery::{check_writable, delete_before, replay_at_open, retention_cutoff};
use writer::{block_on, Writer, WriterMsg};

/// What can go wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    /// Unusable `[cost]` settings.
    #[error("cost config: {0}")]
    Config(String),
    /// File I/O on a named ledger file or directory.
    #[error("spend ledger i/o on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A report query is invalid; the message says why (400).
    #[error("bad spend query: {0}")]
    BadQuery(String),
    /// A report would have more rows than allowed (400).
    #[error(
        "the spend report has more than {max} rows; narrow the query (a shorter range, a monthly interval or fewer group_by dimensions)"
    )]
    TooManyRows {
        /// The bound.
        max: usize,
    },
    /// The ledger was shut down.
    #[error("the spend ledger is shut down")]
    Closed,
    /// A report task failed.
    #[error("spend report task failed: {0}")]
    Task(String),
}

impl SpendError {
    /// The HTTP status: 400 for a bad or too broad query, else 500 (as the
    /// [`GatewayError`] it converts into).
    pub fn status(&self) -> u16 {
        match self {
            SpendError::BadQuery(_) | SpendError::TooManyRows { .. } => 400,
            _ => 500,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> SpendError {
        SpendError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<SpendError> for GatewayError {
    /// A bad or too broad report query is the client's (400, message kept); anything else
    /// is an internal fault whose details stay in the log (log the `SpendError` first).
    fn from(err: SpendError) -> GatewayError {
        match err {
            SpendError::BadQuery(_) | SpendError::TooManyRows { .. } => GatewayError::new(
                ErrorSource::Client,
                ErrorCode::InvalidRequest,
                err.to_string(),
            ),
            _ => GatewayError::internal("spend ledger error"),
        }
    }
}

/// Counters for `/admin` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpendStats {
    /// Events recorded since open.
    pub events: u64,
    /// Events replayed from the files at open.
    pub replayed_events: u64,
    /// Recorded events not yet fsynced.
    pub pending: u64,
    /// Bytes of frames the writer keeps that are not yet durable.
    pub pending_bytes: u64,
    /// Successful fsyncs.
    pub fsyncs: u64,
    /// Failed write or fsync attempts (each retry counts).
    pub write_errors: u64,
    /// Whether writes are failing now (events wait in memory).
    pub failing: bool,
    /// `record` calls that had to wait for room.
    pub backpressure_waits: u64,
    /// Events lost: recorded after shutdown, or not durable when the writer stopped while
    /// writes failed. Stays 0 otherwise.
    pub dropped: u64,
    /// Damaged frames skipped (and torn tails left in older files) while reading.
    pub corrupt_frames: u64,
    /// Bytes of torn tails cut off.
    pub truncated_bytes: u64,
    /// New values counted in an `(other)` bucket because a table was full.
    pub overflowed_keys: u64,
}

/// The ledger's bounds (the defaults suit production; tests shrink them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendLimits {
    /// Events the channel to the writer holds.
    pub channel_capacity: usize,
    /// Bytes of not-yet-durable frames the writer keeps (while writes fail) before
    /// recording waits.
    pub max_pending_bytes: u64,
    /// Values per in-memory period table, over all dimensions.
    pub max_keys_per_period: usize,
    /// Rows a report may have.
    pub max_report_rows: usize,
}

impl Default for SpendLimits {
    fn default() -> Self {
        SpendLimits {
            channel_capacity: 8192,
            max_pending_bytes: 32 * 1024 * 1024,
            max_keys_per_period: 1_000_000,
            max_report_rows: MAX_REPORT_ROWS,
        }
    }
}

/// State shared with the writer thread.
pub(crate) struct Shared {
    pub(crate) events: AtomicU64,
    pub(crate) durable_events: AtomicU64,
    pub(crate) pending_bytes: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) failing: AtomicBool,
    pub(crate) backpressure_waits: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// The part of `dropped` that had been recorded (counted in `events`).
    pub(crate) abandoned: AtomicU64,
    pub(crate) corrupt_frames: AtomicU64,
    pub(crate) truncated_bytes: AtomicU64,
    /// Notified after each sync attempt (pending bytes may have shrunk).
    pub(crate) room: Notify,
}

/// The spend ledger; a cheap handle (clones share one ledger). See the module docs.
#[derive(Clone)]
pub struct SpendLedger {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<WriterMsg>,
    shared: Arc<Shared>,
    aggregates: RwLock<Aggregates>,
    dir: PathBuf,
    utc_offset_s: i32,
    retention_days: u32,
    limits: SpendLimits,
    replayed_events: u64,
    closed: AtomicBool,
    done: watch::Receiver<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SpendLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpendLedger")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// The wall clock in Unix milliseconds.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl SpendLedger {
    /// Opens (or creates) the ledger in `config.ledger_dir`: deletes files past retention,
    /// replays the rest into the in-memory sums (cutting the newest file's torn tail,
    /// skipping damaged frames), checks that the directory is writable, and starts the
    /// writer thread. Blocking; fails on bad settings or an unusable directory.
    pub fn open(config: &CostConfig) -> Result<SpendLedger, SpendError> {
        SpendLedger::open_with(config, SpendLimits::default(), now_ms())
    }

    /// [`SpendLedger::open`] with explicit bounds and clock (retention at open uses `now_ms`).
    pub fn open_with(
        config: &CostConfig,
        limits: SpendLimits,
        now_ms: i64,
    ) -> Result<SpendLedger, SpendError> {
        let problems: Vec<String> = config
            .problems()
            .into_iter()
            .map(|(field, reason)| format!("{field}: {reason}"))
            .collect();
        let utc_offset_s = match config.utc_offset_s() {
            Some(offset) if problems.is_empty() => offset,
            _ => return Err(SpendError::Config(problems.join("; "))),
        };
        if (1..32).contains(&config.retention_days) {
            tracing::warn!(
                retention_days = config.retention_days,
                "cost.retention_days is under a month: monthly spend shrinks after a restart"
            );
        }
        let dir = config.ledger_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|err| SpendError::io(&dir, err))?;
        delete_before(&dir, retention_cutoff(now_ms, config.retention_days), None)?;

        let shared = Arc::new(Shared {
            events: AtomicU64::new(0),
            durable_events: AtomicU64::new(0),
            pending_bytes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            backpressure_waits: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
            corrupt_frames: AtomicU64::new(0),
            truncated_bytes: AtomicU64::new(0),
            room: Notify::new(),
        });
        let mut aggregates = Aggregates::new(utc_offset_s, limits.max_keys_per_period);
        let (replayed_events, known_ends) = replay_at_open(&dir, &shared, &mut aggregates)?;
        check_writable(&dir)?;

        let (tx, rx) = mpsc::channel(limits.channel_capacity.max(1));
        let (done_tx, done) = watch::channel(false);
        let fsync_interval = Duration::from_millis(config.fsync_interval_ms.max(1));
        let writer = Writer::new(dir.clone(), shared.clone(), rx, fsync_interval, known_ends);
        let thread = std::thread::Builder::new()
            .name("spend-writer".into())
            .spawn(move || writer.run(done_tx))
            .map_err(|err| SpendError::io(&dir, err))?;
        tracing::info!(
            dir = %dir.display(),
            replayed_events,
            corrupt_frames = shared.corrupt_frames.load(Ordering::Relaxed),
            "spend ledger open"
        );
        Ok(SpendLedger {
            inner: Arc::new(Inner {
                tx,
                shared,
                aggregates: RwLock::new(aggregates),
                dir,
                utc_offset_s,
                retention_days: config.retention_days,
                limits,
                replayed_events,
                closed: AtomicBool::new(false),
                done,
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    fn over_pending_bound(&self) -> bool {
        self.inner.shared.pending_bytes.load(Ordering::Acquire)
            >= self.inner.limits.max_pending_bytes
    }

    /// Counts an event after shutdown as dropped.
    fn drop_closed(&self, event: &SpendEvent) {
        self.inner.shared.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            request_id = %event.request_id,
            "spend ledger is shut down; spend event dropped"
        );
    }

    /// Adds the event to the sums and sends it (the permit guarantees room).
    fn accept(&self, permit: mpsc::Permit<'_, WriterMsg>, mut event: SpendEvent) {
        event.normalize();
        self.inner
            .aggregates
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .add(&event);
        self.inner.shared.events.fetch_add(1, Ordering::AcqRel);
        permit.send(WriterMsg::Event(Box::new(event)));
    }

    /// Records an event without waiting: counted in the sums at once and queued for the
    /// writer. `Err(event)` gives it back, uncounted, when the channel is full or the writer
    /// keeps too many unwritten bytes (writes failing); then await [`SpendLedger::record`].
    /// After shutdown the event is dropped, counted in `dropped`, and this returns `Ok`.
    // The event goes back by value so that the caller can `record` it.
    #[allow(clippy::result_large_err)]
    pub fn try_record(&self, event: SpendEvent) -> Result<(), SpendEvent> {
        if self.inner.closed.load(Ordering::Acquire) {
            self.drop_closed(&event);
            return Ok(());
        }
        if self.over_pending_bound() {
            return Err(event);
        }
        match self.inner.tx.try_reserve() {
            Ok(permit) => {
                self.accept(permit, event);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(())) => Err(event),
            Err(mpsc::error::TrySendError::Closed(())) => {
                self.drop_closed(&event);
                Ok(())
            }
        }
    }

    /// Records an event, waiting for room in the channel and (while writes fail) for the
    /// writer's kept bytes to drop under the bound; a call that waited counts once in
    /// `backpressure_waits`. The sums include the event when this returns. Cancel-safe:
    /// a cancelled call has recorded nothing. After shutdown the event is dropped and
    /// counted in `dropped`.
    pub async fn record(&self, event: SpendEvent) {
        let mut waited = false;
        loop {
            if self.inner.closed.load(Ordering::Acquire) {
                self.drop_closed(&event);
                return;
            }
            if self.over_pending_bound() {
                waited = true;
                let room = self.inner.shared.room.notified();
                tokio::pin!(room);
                room.as_mut().enable();
                if self.over_pending_bound() {
                    // Woken after each sync attempt (every few hundred ms while failing).
                    room.await;
                }
                continue;
            }
            let permit = match self.inner.tx.try_reserve() {
                Ok(permit) => permit,
                Err(mpsc::error::TrySendError::Full(())) => {
                    waited = true;
                    match self.inner.tx.reserve().await {
                        Ok(permit) => permit,
                        Err(_) => continue,
                    }
                }
                Err(mpsc::error::TrySendError::Closed(())) => {
                    self.drop_closed(&event);
                    return;
                }
            };
            if waited {
                self.inner
                    .shared
                    .backpressure_waits
                    .fetch_add(1, Ordering::Relaxed);
            }
            self.accept(permit, event);
            return;
        }
    }

    /// The cost spent by `value` of `dim` in the period holding `now_ms` (in the configured
    /// offset); `Total` is everything retained. A hash lookup under a read lock.
    pub fn spent(&self, dim: Dimension, value: &str, period: BudgetPeriod, now_ms: i64) -> Usd {
        self.usage(dim, value, period, now_ms).cost
    }

    /// The sums of `value` of `dim` in the period holding `now_ms` (zero when unknown). The
    /// latest 3 days and months are kept in memory; older ones read zero (use `report`).
    pub fn usage(
        &self,
        dim: Dimension,
        value: &str,
        period: BudgetPeriod,
        now_ms: i64,
    ) -> SpendUsage {
        self.inner
            .aggregates
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .usage(dim, value, period, now_ms)
    }

    /// The writer's not-yet-durable frames, taken after everything recorded so far (`None`
    /// once the writer has stopped: then everything is in the files).
    async fn snapshot(&self) -> Option<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.inner.tx.send(WriterMsg::Snapshot(reply)).await.ok()?;
        answer.await.ok()
    }

    /// Calls `f` with every retained event with `ts_ms >= since_ms`, oldest file first,
    /// including events recorded but not yet durable. Blocking (reads files on the calling
    /// thread): call it from a blocking context. Returns how many events were passed.
    pub fn replay(&self, since_ms: i64, mut f: impl FnMut(&SpendEvent)) -> Result<u64, SpendError> {
        let snapshot = block_on(tokio::task::unconstrained(self.snapshot())).unwrap_or_default();
        let mut passed = 0;
        journal::scan_days(
            &self.inner.dir,
            journal::utc_day(since_ms),
            i64::MAX,
            &snapshot,
            &mut |event| {
                if event.ts_ms >= since_ms {
                    passed += 1;
                    f(&event);
                }
                true
            },
        )?;
        Ok(passed)
    }

    /// Sums the events of a time range by period and dimensions, scanning the files on a
    /// blocking task (and including events not yet durable). Fails on a bad query or past
    /// [`SpendLimits::max_report_rows`] rows.
    pub async fn report(&self, query: SpendQuery) -> Result<SpendReport, SpendError> {
        query.validate()?;
        let snapshot = self.snapshot().await.unwrap_or_default();
        let dir = self.inner.dir.clone();
        let offset = self.inner.utc_offset_s;
        let max_rows = self.inner.limits.max_report_rows;
        tokio::task::spawn_blocking(move || {
            report::build(&dir, offset, max_rows, &query, &snapshot)
        })
        .await
        .map_err(|err| SpendError::Task(err.to_string()))?
    }

    /// Deletes the files of UTC days more than `retention_days` before `now_ms`'s day
    /// (none when `retention_days` is 0), taking their events out of the `Total` sums.
    /// Blocking; returns how many files were deleted.
    ///
    /// The writer first closes its handles on those days, so that a late event for one is
    /// written to a new file rather than to the deleted one.
    pub fn run_retention(&self, now_ms: i64) -> Result<usize, SpendError> {
        let cutoff = retention_cutoff(now_ms, self.inner.retention_days);
        if cutoff == i64::MIN {
            return Ok(0);
        }
        let (reply, closed) = oneshot::channel();
        let close = async {
            if self
                .inner
                .tx
                .send(WriterMsg::CloseBefore(cutoff, reply))
                .await
                .is_ok()
            {
                let _ = closed.await;
            }
        };
        block_on(tokio::task::unconstrained(close));
        delete_before(&self.inner.dir, cutoff, Some(&self.inner.aggregates))
    }

    /// The counters.
    pub fn stats(&self) -> SpendStats {
        let shared = &self.inner.shared;
        let events = shared.events.load(Ordering::Acquire);
        let durable = shared.durable_events.load(Ordering::Acquire);
        let dropped = shared.dropped.load(Ordering::Relaxed);
        let abandoned = shared.abandoned.load(Ordering::Acquire);
        SpendStats {
            events,
            replayed_events: self.inner.replayed_events,
            pending: events.saturating_sub(durable).saturating_sub(abandoned),
            pending_bytes: shared.pending_bytes.load(Ordering::Relaxed),
            fsyncs: shared.fsyncs.load(Ordering::Relaxed),
            write_errors: shared.write_errors.load(Ordering::Relaxed),
            failing: shared.failing.load(Ordering::Relaxed),
            backpressure_waits: shared.backpressure_waits.load(Ordering::Relaxed),
            dropped,
            corrupt_frames: shared.corrupt_frames.load(Ordering::Relaxed),
            truncated_bytes: shared.truncated_bytes.load(Ordering::Relaxed),
            overflowed_keys: self
                .inner
                .aggregates
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .overflowed(),
        }
    }

    /// Waits until everything recorded before this call is written and fsynced. Fails
    /// (after one attempt) while writes fail; the events stay kept and retried.
    pub async fn flush(&self) -> Result<(), SpendError> {
        let (reply, answer) = oneshot::channel();
        if self.inner.tx.send(WriterMsg::Flush(reply)).await.is_err() {
            return if self.stats().pending == 0 {
                Ok(())
            } else {
                Err(SpendError::Closed)
            };
        }
        answer.await.map_err(|_| SpendError::Closed)?
    }

    /// Stops recording, writes and fsyncs what is queued, and stops the writer; waits until
    /// it has. Idempotent. While writes fail, the writer makes one last attempt; what is
    /// still not durable then is lost, counted in `dropped` and logged. Events recorded
    /// afterwards are dropped and counted too. Dropping the last handle does the same,
    /// best effort: it waits for the writer unless the channel is full.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.inner.tx.send(WriterMsg::Shutdown).await;
        let mut done = self.inner.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }

    /// Stops the writer at once, without writing or fsyncing (a simulated crash).
    #[cfg(test)]
    pub(crate) async fn kill(&self) {
        self.inner.closed.store(true, Ordering::Release);
        let _ = self.inner.tx.send(WriterMsg::Kill).await;
        let mut done = self.inner.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }

    /// Blocks the writer until `release` is dropped; returns once it is blocked.
    #[cfg(test)]
    pub(crate) async fn stall_writer(&self, release: std::sync::mpsc::Receiver<()>) {
        let (stalled, blocked) = oneshot::channel();
        let _ = self.inner.tx.send(WriterMsg::Stall(stalled, release)).await;
        let _ = blocked.await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: ask the writer to finish and wait for it, unless the channel is full
        // (then the writer finishes on its own once this sender is gone).
        if self.tx.try_send(WriterMsg::Shutdown).is_ok() {
            let thread = self
                .thread
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}
