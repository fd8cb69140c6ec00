//! The request log: redaction, journal, Tantivy indexer, search.
//!
//! ```text
//! pipeline ──LogSender::submit──▶ bounded channel ──▶ writer thread: redact → journal append
//!                                                     (fsync every ≤ fsync_interval_ms)
//!                                                        │ durable position
//!                                                        ▼
//!                      indexer thread: journal → Tantivy, commit with journal position
//!                                                        │ reload
//!                                                        ▼
//!                               LogStore::search / get / status_json (admin API)
//! ```
//!
//! Nothing on this path can slow or fail a response: `submit` only waits when the channel is
//! full (counted as `backpressure_waits`), and a burst faster than indexing only makes search
//! lag behind the journal for a while. The journal is the write-ahead log: the indexer keeps
//! its journal position in each commit's payload and resumes from it after a restart or
//! crash, so no record is lost or indexed twice.

pub mod indexer;
pub mod journal;
pub mod record;
pub mod redact;
mod redact_record;
pub mod search;
pub mod search_limits;
mod writer;

pub use indexer::RetentionReport;
pub use journal::Position;
pub use record::{Attempt, BudgetRecord, CacheRecord, LimitsRecord, LogRecord};
pub use redact::{RedactHook, Redactor};
pub use search::{
    SearchHit, SearchParams, SearchResults, SearchSort, Snippets, StatsInterval, StatsQuery,
};

use crate::config::LogsConfig;
use crate::error::{ErrorCode, ErrorSource, GatewayError};
use indexer::{CommitPayload, Indexer, IndexerCommand, LogSchema};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use tantivy::{Index, IndexReader, ReloadPolicy};
use tokio::sync::{mpsc, oneshot};
use writer::{Writer, WriterMsg};

/// Why a log store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A search parameter is invalid; the message names it (400).
    #[error("{0}")]
    BadRequest(String),
    /// The `q` query does not parse; the parser's message (400).
    #[error("invalid query: {0}")]
    BadQuery(String),
    /// No such record (404).
    #[error("{0} not found")]
    NotFound(String),
    /// The store was shut down.
    #[error("the log store is shut down")]
    Closed,
    /// Unusable `[logs]` settings.
    #[error("logs config: {0}")]
    Config(String),
    /// Journal or index file I/O.
    #[error("log i/o: {0}")]
    Io(#[from] std::io::Error),
    /// File I/O on a named journal file (a full disk names the segment).
    #[error("log i/o on {}: {source}", path.display())]
    File {
        /// The file the operation was on.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A search ran past its deadline (`search_timeout_ms`) and was stopped (503).
    #[error("search timed out after {0} ms; narrow the query or the time range")]
    Timeout(u64),
    /// Tantivy failed.
    #[error("log index: {0}")]
    Index(String),
    /// A record could not be (de)serialized.
    #[error("log record json: {0}")]
    Json(#[from] serde_json::Error),
}

impl LogError {
    /// The HTTP status for this error: 400 for bad parameters or queries, 404, 503 for a
    /// search past its deadline, else 500.
    pub fn status(&self) -> u16 {
        match self {
            LogError::BadRequest(_) | LogError::BadQuery(_) => 400,
            LogError::NotFound(_) => 404,
            LogError::Timeout(_) => 503,
            _ => 500,
        }
    }
}

impl From<tantivy::TantivyError> for LogError {
    fn from(err: tantivy::TantivyError) -> Self {
        LogError::Index(err.to_string())
    }
}

impl From<LogError> for GatewayError {
    fn from(err: LogError) -> Self {
        match &err {
            LogError::BadRequest(_) | LogError::BadQuery(_) => GatewayError::new(
                ErrorSource::Client,
                ErrorCode::InvalidRequest,
                err.to_string(),
            ),
            LogError::NotFound(_) => {
                GatewayError::new(ErrorSource::Client, ErrorCode::NotFound, err.to_string())
            }
            LogError::Timeout(_) => GatewayError::new(
                ErrorSource::Internal,
                ErrorCode::Unavailable,
                err.to_string(),
            ),
            _ => GatewayError::internal(err.to_string()),
        }
    }
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// State the writer, the indexer and the API share.
pub(crate) struct Shared {
    accepting: AtomicBool,
    /// The journal's fsynced end and the last durable record's seq.
    durable: Mutex<(Position, u64)>,
    /// What the last index commit covered.
    pub(crate) indexed: Mutex<CommitPayload>,
    backpressure_waits: AtomicU64,
    /// Records handed over with [`LogSender::hand_off`] still waiting for channel room.
    pending_hand_offs: AtomicUsize,
    /// The bound on `pending_hand_offs`.
    max_pending_hand_offs: usize,
    /// Hand-offs given back to their caller because the bound was reached.
    hand_offs_refused: AtomicU64,
    dropped_records: AtomicU64,
    /// Records the journal refused after its in-memory retry buffer filled (disk full for
    /// long): counted, and logged once per episode.
    pub(crate) unjournaled_records: AtomicU64,
    /// The journal's write state, published by the writer: failing now, failed attempts,
    /// bytes waiting in memory for a retry.
    pub(crate) journal_failing: AtomicBool,
    pub(crate) journal_write_failures: AtomicU64,
    pub(crate) journal_unsynced_bytes: AtomicU64,
    /// Epoch ms after which the writer skips the policy's `redact` hook (built-in detectors
    /// only) to finish a shutdown in time; 0 = never.
    pub(crate) hurry_at_ms: AtomicI64,
    pub(crate) write_errors: AtomicU64,
    last_commit_ms: AtomicI64,
    pub(crate) retention_runs: AtomicU64,
    /// (first seq, append time ms) of each fsync batch not yet wholly indexed.
    batches: Mutex<VecDeque<(u64, i64)>>,
}

impl Shared {
    pub(crate) fn durable_position(&self) -> Position {
        lock(&self.durable).0
    }

    pub(crate) fn durable_seq(&self) -> u64 {
        lock(&self.durable).1
    }

    pub(crate) fn set_durable(&self, position: Position, seq: u64) {
        *lock(&self.durable) = (position, seq);
    }

    pub(crate) fn lock_batches(&self) -> MutexGuard<'_, VecDeque<(u64, i64)>> {
        lock(&self.batches)
    }

    pub(crate) fn set_indexed(&self, payload: CommitPayload) {
        *lock(&self.indexed) = payload;
        self.last_commit_ms.store(now_ms(), Ordering::Relaxed);
        let mut batches = self.lock_batches();
        while batches
            .get(1)
            .is_some_and(|&(first, _)| first <= payload.seq + 1)
        {
            let _ = batches.pop_front();
        }
    }
}

/// The request log: give records to [`LogStore::sender`], search with [`LogStore::search`].
pub struct LogStore {
    tx: mpsc::Sender<WriterMsg>,
    shared: Arc<Shared>,
    indexer_tx: std::sync::mpsc::Sender<IndexerCommand>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    pub(crate) index: Index,
    pub(crate) reader: IndexReader,
    pub(crate) schema: LogSchema,
    journal_dir: PathBuf,
    shutting_down: AtomicBool,
    shutdown_timeout: Duration,
    pub(crate) search_timeout: Duration,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("journal_dir", &self.journal_dir)
            .finish()
    }
}

/// A cheap handle the pipeline keeps to submit records.
///
/// Three ways in, all bounded: [`LogSender::hand_off`] never waits and gives the record back
/// when too many hand-offs already wait for channel room; [`LogSender::submit`] awaits room;
/// [`LogSender::blocking_submit`] blocks the thread (for code outside any async context).
/// None of them drops a record while the store runs.
#[derive(Clone)]
pub struct LogSender {
    tx: mpsc::Sender<WriterMsg>,
    shared: Arc<Shared>,
    /// Where waiting hand-offs run: the runtime that opened the store, which outlives the
    /// per-thread request runtimes (their tasks die with them).
    spawner: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for LogSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSender").finish_non_exhaustive()
    }
}

/// One reserved waiting hand-off: gives the slot back when the wait ends, and counts the
/// record as dropped if the wait ends without sending it (its runtime shut down).
struct PendingSlot {
    shared: Arc<Shared>,
    id: Option<String>,
}

impl PendingSlot {
    /// The wait ended; `sent` says whether the record reached the channel.
    fn release(mut self, sent: bool) {
        if sent {
            self.id = None;
        }
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.shared.pending_hand_offs.fetch_sub(1, Ordering::AcqRel);
        if let Some(id) = self.id.take() {
            self.shared.dropped_records.fetch_add(1, Ordering::Relaxed);
            tracing::error!(id, "a waiting log hand-off was cancelled; record dropped");
        }
    }
}

impl LogSender {
    /// Queue a record for the log, waiting for channel room when the channel is full (each
    /// such wait counts in `backpressure_waits`). Never drops it while the store runs; after
    /// shutdown the record is dropped and counted in `dropped_records`.
    pub async fn submit(&self, record: LogRecord) {
        let message = match self.try_send(record) {
            None => return,
            Some(message) => message,
        };
        self.shared
            .backpressure_waits
            .fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(message)) = self.tx.send(message).await {
            self.drop_message(message);
        }
    }

    /// Hand a record over without waiting. `Ok` when it is in the channel, or given to one of
    /// at most `max_pending_hand_offs` background hand-offs that wait for room (they run on
    /// the runtime that opened the store, and [`LogStore::shutdown`] waits for them).
    /// `Err(record)` gives the record back when that bound is reached (or no runtime can run
    /// the wait): the caller then awaits [`LogSender::submit`] (backpressure). After
    /// shutdown the record is dropped and counted, and this returns `Ok`.
    // The record goes back by value so the caller can `submit` it: this signature is the
    // pipeline's contract, and the Err path is the rare backpressure case.
    #[allow(clippy::result_large_err)]
    pub fn hand_off(&self, record: LogRecord) -> Result<(), LogRecord> {
        let message = match self.try_send(record) {
            None => return Ok(()),
            Some(message) => message,
        };
        let WriterMsg::Record(record) = message else {
            return Ok(());
        };
        let runtime = self
            .spawner
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok());
        let Some(runtime) = runtime else {
            return Err(*record);
        };
        let max = self.shared.max_pending_hand_offs;
        let reserved = self.shared.pending_hand_offs.fetch_update(
            Ordering::AcqRel,
            Ordering::Acquire,
            |pending| (pending < max).then_some(pending + 1),
        );
        if reserved.is_err() {
            self.shared
                .hand_offs_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(*record);
        }
        let slot = PendingSlot {
            shared: self.shared.clone(),
            id: Some(record.id.clone()),
        };
        let tx = self.tx.clone();
        drop(runtime.spawn(async move {
            let sent = tx.send(WriterMsg::Record(record)).await.is_ok();
            // Unsent (the store closed): the slot counts the drop.
            slot.release(sent);
        }));
        Ok(())
    }

    /// Queue a record from a thread that must not (or cannot) await, such as a stream body
    /// dropped while its runtime shuts down: blocks the thread until the record is accepted.
    /// Inside a runtime it first tries a bounded background hand-off; only past that bound
    /// does it block the thread (counted as a backpressure wait). Never panics, never drops
    /// a record while the store runs.
    pub fn blocking_submit(&self, record: LogRecord) {
        let record = match self.hand_off(record) {
            Ok(()) => return,
            Err(record) => record,
        };
        let message = match self.try_send(record) {
            None => return,
            Some(message) => message,
        };
        self.shared
            .backpressure_waits
            .fetch_add(1, Ordering::Relaxed);
        // `unconstrained`: inside a runtime, the task's cooperative budget must not make the
        // send pend forever while this thread is parked.
        let send = tokio::task::unconstrained(self.tx.send(message));
        if let Err(mpsc::error::SendError(message)) = block_on(send) {
            self.drop_message(message);
        }
    }

    /// Push into the channel if there is room. `None` when done (sent, or dropped after
    /// shutdown); `Some(message)` when the channel is full.
    fn try_send(&self, record: LogRecord) -> Option<WriterMsg> {
        if !self.shared.accepting.load(Ordering::Acquire) {
            self.drop_record(&record.id);
            return None;
        }
        match self.tx.try_send(WriterMsg::Record(Box::new(record))) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(message)) => Some(message),
            Err(mpsc::error::TrySendError::Closed(message)) => {
                self.drop_message(message);
                None
            }
        }
    }

    fn drop_message(&self, message: WriterMsg) {
        if let WriterMsg::Record(record) = message {
            self.drop_record(&record.id);
        }
    }

    fn drop_record(&self, id: &str) {
        self.shared.dropped_records.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(id, "log store is shut down; record dropped");
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

/// Run a future to completion on this thread, parking it between polls. Unlike tokio's
/// `blocking_send` it works inside and outside a runtime (the channel is served by the
/// writer's own thread, so parking here cannot deadlock it).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
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

impl LogStore {
    /// Open (or create) the log under `cfg.dir`, recover the journal, and start the writer
    /// and indexer threads. `extra_redact` is the policy's `redact(text)` hook.
    pub fn open(
        cfg: &LogsConfig,
        extra_redact: Option<RedactHook>,
    ) -> Result<Arc<LogStore>, LogError> {
        let mut problems = cfg.problems();
        if cfg.search_timeout_ms == 0 {
            problems.push("logs.search_timeout_ms: must be greater than 0".to_string());
        }
        if cfg.shutdown_timeout_ms < 100 {
            problems.push("logs.shutdown_timeout_ms: must be at least 100".to_string());
        }
        if !problems.is_empty() {
            return Err(LogError::Config(problems.join("; ")));
        }
        let redactor = Arc::new(Redactor::new(&cfg.redact)?.with_hook(extra_redact));
        let journal_dir = cfg.dir.join("journal");
        let (index, schema) = indexer::open_index(&cfg.dir.join("index"))?;
        // Take the index writer's lock first: it also keeps a second process off the journal.
        let index_writer = indexer::index_writer(&index)?;
        let mut start = indexer::load_payload(&index)?;
        let mut journal = journal::JournalWriter::open(&journal_dir, cfg.segment_bytes)?;
        journal.ensure_next_seq_at_least(start.seq + 1);
        if start.position > journal.end() {
            tracing::warn!(
                indexed = ?start.position,
                journal_end = ?journal.end(),
                "index is ahead of the journal (journal lost?); indexing resumes at the journal end"
            );
            start.position = journal.end();
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;

        let last_seq = journal.next_seq().saturating_sub(1);
        let shared = Arc::new(Shared {
            accepting: AtomicBool::new(true),
            durable: Mutex::new((journal.end(), last_seq)),
            indexed: Mutex::new(start),
            backpressure_waits: AtomicU64::new(0),
            pending_hand_offs: AtomicUsize::new(0),
            max_pending_hand_offs: cfg.max_pending_hand_offs,
            hand_offs_refused: AtomicU64::new(0),
            dropped_records: AtomicU64::new(0),
            unjournaled_records: AtomicU64::new(0),
            journal_failing: AtomicBool::new(false),
            journal_write_failures: AtomicU64::new(0),
            journal_unsynced_bytes: AtomicU64::new(0),
            hurry_at_ms: AtomicI64::new(0),
            write_errors: AtomicU64::new(0),
            last_commit_ms: AtomicI64::new(0),
            retention_runs: AtomicU64::new(0),
            batches: Mutex::new(if last_seq > start.seq {
                VecDeque::from([(start.seq + 1, now_ms())])
            } else {
                VecDeque::new()
            }),
        });

        let (tx, rx) = mpsc::channel(cfg.channel_capacity.max(1));
        let (indexer_tx, indexer_rx) = std::sync::mpsc::channel();
        let indexer = Indexer::new(
            schema.clone(),
            index_writer,
            reader.clone(),
            journal_dir.clone(),
            start,
            shared.clone(),
            indexer_rx,
            cfg,
        );
        let writer = Writer {
            journal,
            redactor,
            shared: shared.clone(),
            indexer: indexer_tx.clone(),
            fsync_interval: Duration::from_millis(cfg.fsync_interval_ms),
            rx,
            hurrying: false,
            refusing: false,
        };
        let indexer_thread = std::thread::Builder::new()
            .name("log-indexer".into())
            .spawn(move || indexer.run())?;
        let writer_thread = std::thread::Builder::new()
            .name("log-writer".into())
            // Serialising and redacting walk nested request values recursively.
            .stack_size(16 * 1024 * 1024)
            .spawn(move || writer.run())?;
        tracing::info!(
            dir = %cfg.dir.display(),
            journal_records = last_seq,
            indexed_records = start.seq,
            "log store open"
        );
        Ok(Arc::new(LogStore {
            tx,
            shared,
            indexer_tx,
            threads: Mutex::new(vec![writer_thread, indexer_thread]),
            index,
            reader,
            schema,
            journal_dir,
            shutting_down: AtomicBool::new(false),
            shutdown_timeout: Duration::from_millis(cfg.shutdown_timeout_ms),
            search_timeout: Duration::from_millis(cfg.search_timeout_ms),
        }))
    }

    /// A handle for submitting records.
    pub fn sender(&self) -> LogSender {
        LogSender {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
            spawner: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Make everything submitted before this call durable, indexed, committed and visible to
    /// searches (forces a commit; for tests, replay and operators, not the request path).
    pub async fn sync(&self) -> Result<(), LogError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(WriterMsg::Flush(reply))
            .await
            .map_err(|_| LogError::Closed)?;
        done.await.map_err(|_| LogError::Closed)??;
        let (reply, done) = oneshot::channel();
        self.indexer_tx
            .send(IndexerCommand::Sync(reply))
            .map_err(|_| LogError::Closed)?;
        done.await.map_err(|_| LogError::Closed)?
    }

    /// Run the retention pass now (it also runs at start and every `retention_interval_s`).
    pub async fn run_retention(&self) -> Result<RetentionReport, LogError> {
        self.run_retention_at(now_ms()).await
    }

    /// Run the retention pass as if the clock read `now_ms`.
    pub async fn run_retention_at(&self, now_ms: i64) -> Result<RetentionReport, LogError> {
        let (reply, done) = oneshot::channel();
        self.indexer_tx
            .send(IndexerCommand::Retention(now_ms, reply))
            .map_err(|_| LogError::Closed)?;
        done.await.map_err(|_| LogError::Closed)?
    }

    /// Counters for `/admin/logs/status`: journal and index progress, lag, backpressure.
    pub fn status_json(&self) -> serde_json::Value {
        let (_, journal_records) = *lock(&self.shared.durable);
        let indexed_records = lock(&self.shared.indexed).seq;
        let lag_records = journal_records.saturating_sub(indexed_records);
        let lag_ms = if lag_records == 0 {
            0
        } else {
            // The batch holding the oldest unindexed record.
            let batches = self.shared.lock_batches();
            let oldest = batches
                .iter()
                .take_while(|&&(first, _)| first <= indexed_records + 1)
                .last()
                .or(batches.front());
            oldest
                .map(|&(_, at)| now_ms().saturating_sub(at).max(0))
                .unwrap_or(0)
        };
        let last_commit = self.shared.last_commit_ms.load(Ordering::Relaxed);
        let last_commit_at = (last_commit > 0)
            .then(|| chrono::DateTime::from_timestamp_millis(last_commit))
            .flatten()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        serde_json::json!({
            "journal_records": journal_records,
            "indexed_records": indexed_records,
            "lag_records": lag_records,
            "lag_ms": lag_ms,
            "backpressure_waits": self.shared.backpressure_waits.load(Ordering::Relaxed),
            "pending_hand_offs": self.shared.pending_hand_offs.load(Ordering::Relaxed),
            "max_pending_hand_offs": self.shared.max_pending_hand_offs,
            "hand_offs_refused": self.shared.hand_offs_refused.load(Ordering::Relaxed),
            "dropped_records": self.shared.dropped_records.load(Ordering::Relaxed),
            "write_errors": self.shared.write_errors.load(Ordering::Relaxed),
            "journal_failing": self.shared.journal_failing.load(Ordering::Relaxed),
            "journal_write_failures": self.shared.journal_write_failures.load(Ordering::Relaxed),
            "journal_unsynced_bytes": self.shared.journal_unsynced_bytes.load(Ordering::Relaxed),
            "unjournaled_records": self.shared.unjournaled_records.load(Ordering::Relaxed),
            "last_commit_at": last_commit_at,
            "index_docs": self.reader.searcher().num_docs(),
            "journal_bytes": journal::journal_bytes(&self.journal_dir),
            "accepting": self.shared.accepting.load(Ordering::Relaxed),
        })
    }

    /// Stop accepting records, journal and fsync everything queued, let the indexer commit,
    /// and join the threads. Call on SIGTERM; later calls return at once.
    ///
    /// Bounded by `shutdown_timeout_ms` (plus at most a second for the final index commit):
    /// - records already accepted (in the channel or in waiting hand-offs) are journaled;
    ///   from half the budget on, the writer skips the policy's `redact` hook and redacts
    ///   with the built-in detectors only (never writing unredacted text), which takes
    ///   microseconds per record, so even thousands queued behind a slow hook make it;
    /// - the indexer indexes what it can until the deadline and commits; whatever it did not
    ///   reach is in the journal and indexed at the next start;
    /// - if the writer still has not finished at the deadline (a hook stuck in one call), this
    ///   stops waiting, logs how many records were still queued, and returns.
    pub async fn shutdown(&self) {
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let budget = self.shutdown_timeout;
        let started = tokio::time::Instant::now();
        let deadline = started + budget;
        let half_ms = i64::try_from(budget.as_millis() / 2).unwrap_or(i64::MAX);
        self.shared
            .hurry_at_ms
            .store(now_ms().saturating_add(half_ms).max(1), Ordering::Release);
        // Records of the last requests may still be waiting for channel room: let them in.
        while self.shared.pending_hand_offs.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.shared.accepting.store(false, Ordering::Release);
        let writer_done = async {
            let (reply, done) = oneshot::channel();
            if self.tx.send(WriterMsg::Shutdown(reply)).await.is_ok() {
                let _ = done.await;
            }
        };
        let mut clean = true;
        if tokio::time::timeout_at(deadline, writer_done)
            .await
            .is_err()
        {
            clean = false;
            let queued = self.tx.max_capacity() - self.tx.capacity();
            tracing::error!(
                queued,
                pending_hand_offs = self.shared.pending_hand_offs.load(Ordering::Acquire),
                budget_ms = budget.as_millis() as u64,
                "log writer did not finish within the shutdown budget; queued records are lost"
            );
        }
        // The indexer stops indexing at the deadline and commits what it has.
        let (reply, done) = oneshot::channel();
        let stop_at = std::time::Instant::now()
            + deadline.saturating_duration_since(tokio::time::Instant::now());
        if self
            .indexer_tx
            .send(IndexerCommand::Shutdown(stop_at, reply))
            .is_ok()
        {
            let commit_grace = deadline + Duration::from_secs(1);
            if tokio::time::timeout_at(commit_grace, done).await.is_err() {
                clean = false;
                tracing::error!("log indexer did not commit within the shutdown budget");
            }
        }
        if clean {
            let threads: Vec<JoinHandle<()>> = lock(&self.threads).drain(..).collect();
            let _ = tokio::task::spawn_blocking(move || {
                for thread in threads {
                    let _ = thread.join();
                }
            })
            .await;
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log store shut down"
        );
    }

    /// Stop both threads at once, without fsync or commit, as a SIGKILL would.
    #[cfg(test)]
    pub(crate) fn simulate_crash(&self) {
        self.shared.accepting.store(false, Ordering::Release);
        let _ = self.tx.try_send(WriterMsg::Kill);
        let _ = self.indexer_tx.send(IndexerCommand::Kill);
        for thread in lock(&self.threads).drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod redact_more_tests;
#[cfg(test)]
mod tests;
