//! The journal writer thread: bounded channel in, redaction, append, batched fsync.
//!
//! A record waits at most `fsync_interval_ms` between its append and the fsync that makes it
//! durable. After each fsync the durable position is published and the indexer is woken.
//! When the disk refuses writes, appended records stay in the journal's in-memory retry
//! buffer and the fsync is retried every [`FAILING_RETRY`] until it succeeds.

use super::indexer::IndexerCommand;
use super::journal::JournalWriter;
use super::record::LogRecord;
use super::redact::Redactor;
use super::{now_ms, LogError, Shared};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// How often a failing journal (a full disk) is retried.
const FAILING_RETRY: Duration = Duration::from_millis(250);

/// Messages to the writer thread, in channel order.
pub(crate) enum WriterMsg {
    /// A record to redact and append.
    Record(Box<LogRecord>),
    /// Fsync now, then answer.
    Flush(oneshot::Sender<Result<(), LogError>>),
    /// Append what is queued, fsync, and stop.
    Shutdown(oneshot::Sender<()>),
    /// Stop at once without fsync (a simulated crash).
    #[cfg(test)]
    Kill,
}

pub(crate) struct Writer {
    pub(crate) journal: JournalWriter,
    pub(crate) redactor: Arc<Redactor>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) indexer: std::sync::mpsc::Sender<IndexerCommand>,
    pub(crate) fsync_interval: Duration,
    pub(crate) rx: mpsc::Receiver<WriterMsg>,
    /// Set once the shutdown deadline made the writer skip the policy's hook.
    pub(crate) hurrying: bool,
    /// Set while the journal refuses records (its retry buffer is full): logged once.
    pub(crate) refusing: bool,
}

impl Writer {
    /// The thread body.
    pub(crate) fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                tracing::error!(error = %err, "log writer cannot start its timer; logging is off");
                return;
            }
        };
        runtime.block_on(self.run_loop());
    }

    async fn run_loop(mut self) {
        // When the next fsync is due (the oldest unsynced record's append + the interval, or
        // the next retry of a failing journal).
        let mut sync_due: Option<Instant> = None;
        loop {
            let message = match sync_due {
                Some(due) => match tokio::time::timeout_at(due, self.rx.recv()).await {
                    Ok(message) => message,
                    Err(_elapsed) => {
                        sync_due = self.sync();
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            match message {
                Some(WriterMsg::Record(record)) => {
                    self.write(*record);
                    if self.journal.is_dirty() {
                        let due =
                            *sync_due.get_or_insert_with(|| Instant::now() + self.fsync_interval);
                        if Instant::now() >= due {
                            sync_due = self.sync();
                        }
                    }
                }
                Some(WriterMsg::Flush(reply)) => {
                    let result = self.journal.sync();
                    if result.is_ok() {
                        self.publish();
                        sync_due = None;
                    } else {
                        self.publish_state();
                    }
                    let _ = reply.send(result);
                }
                Some(WriterMsg::Shutdown(reply)) => {
                    self.rx.close();
                    while let Ok(message) = self.rx.try_recv() {
                        if let WriterMsg::Record(record) = message {
                            self.write(*record);
                        }
                    }
                    let _ = self.sync();
                    self.report_unsynced_at_exit();
                    let _ = reply.send(());
                    return;
                }
                #[cfg(test)]
                Some(WriterMsg::Kill) => return,
                None => {
                    let _ = self.sync();
                    self.report_unsynced_at_exit();
                    return;
                }
            }
        }
    }

    /// Whether the shutdown deadline says to skip the policy's hook.
    fn hurry(&mut self) -> bool {
        let at = self.shared.hurry_at_ms.load(Ordering::Acquire);
        let hurry = at != 0 && now_ms() >= at;
        if hurry && !self.hurrying {
            self.hurrying = true;
            tracing::warn!(
                queued = self.rx.len(),
                "shutdown: redacting the remaining records with the built-in detectors only (the policy's redact hook is skipped)"
            );
        }
        hurry
    }

    fn write(&mut self, record: LogRecord) {
        let use_hook = !self.hurry();
        let id = record.id.clone();
        let redactor = &self.redactor;
        let json = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            redactor.record_json(record, use_hook)
        }));
        let json = match json {
            Ok(Ok(json)) => json,
            Ok(Err(err)) => {
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(id, error = %err, "log record could not be serialised; dropped");
                return;
            }
            Err(_) => {
                // Never write what could not be redacted.
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(id, "redaction panicked; log record dropped");
                return;
            }
        };
        match self.journal.append(&json) {
            Ok(seq) => {
                self.refusing = false;
                let mut batches = self.shared.lock_batches();
                if batches
                    .back()
                    .is_none_or(|&(first, _)| first <= self.shared.durable_seq())
                {
                    // The first record since the last fsync opens a new batch.
                    if batches.len() >= 100_000 {
                        let _ = batches.pop_front();
                    }
                    batches.push_back((seq, now_ms()));
                }
            }
            Err(err) => {
                self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
                self.shared
                    .unjournaled_records
                    .fetch_add(1, Ordering::Relaxed);
                if !self.refusing {
                    self.refusing = true;
                    tracing::error!(
                        error = %err,
                        id,
                        "log records cannot be journaled and are counted as unjournaled_records until the journal recovers"
                    );
                }
            }
        }
        self.publish_state();
    }

    /// Fsync if needed; the next due time (a retry while the journal is failing).
    fn sync(&mut self) -> Option<Instant> {
        if !self.journal.is_dirty() {
            return None;
        }
        let result = self.journal.sync();
        match result {
            Ok(()) => {
                self.publish();
                None
            }
            // The journal logs the episode once, with the path; retry later.
            Err(_) => {
                self.publish_state();
                Some(Instant::now() + FAILING_RETRY.max(self.fsync_interval))
            }
        }
    }

    /// Publish the durable end and wake the indexer.
    fn publish(&mut self) {
        self.shared
            .set_durable(self.journal.durable_end(), self.journal.durable_seq());
        self.publish_state();
        let _ = self.indexer.send(IndexerCommand::Wake);
    }

    /// Publish the journal's write state for `status_json`.
    fn publish_state(&self) {
        self.shared
            .journal_failing
            .store(self.journal.is_failing(), Ordering::Relaxed);
        self.shared
            .journal_write_failures
            .store(self.journal.failures(), Ordering::Relaxed);
        self.shared
            .journal_unsynced_bytes
            .store(self.journal.unsynced_bytes() as u64, Ordering::Relaxed);
    }

    fn report_unsynced_at_exit(&self) {
        if self.journal.is_dirty() {
            let lost = self
                .journal
                .next_seq()
                .saturating_sub(self.journal.durable_seq() + 1);
            self.shared
                .unjournaled_records
                .fetch_add(lost, Ordering::Relaxed);
            tracing::error!(
                records = lost,
                "the journal still refused writes at shutdown; these records are lost"
            );
        }
    }
}
