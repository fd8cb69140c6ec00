//! The journal writer thread: bounded channel in, redaction, append, batched fsync.
//!
//! A record waits at most `fsync_interval_ms` between its append and the fsync that makes it
//! durable. After each fsync the durable position is published and the indexer is woken.

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
        // When the oldest unsynced record was appended.
        let mut dirty_since: Option<Instant> = None;
        loop {
            let message = match dirty_since {
                Some(since) => {
                    match tokio::time::timeout_at(since + self.fsync_interval, self.rx.recv()).await
                    {
                        Ok(message) => message,
                        Err(_elapsed) => {
                            self.sync();
                            dirty_since = None;
                            continue;
                        }
                    }
                }
                None => self.rx.recv().await,
            };
            match message {
                Some(WriterMsg::Record(record)) => {
                    self.write(*record);
                    if self.journal.is_dirty() {
                        let since = *dirty_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.fsync_interval {
                            self.sync();
                            dirty_since = None;
                        }
                    }
                }
                Some(WriterMsg::Flush(reply)) => {
                    let result = self.journal.sync();
                    self.publish();
                    dirty_since = None;
                    let _ = reply.send(result);
                }
                Some(WriterMsg::Shutdown(reply)) => {
                    self.rx.close();
                    while let Ok(message) = self.rx.try_recv() {
                        if let WriterMsg::Record(record) = message {
                            self.write(*record);
                        }
                    }
                    self.sync();
                    let _ = reply.send(());
                    return;
                }
                #[cfg(test)]
                Some(WriterMsg::Kill) => return,
                None => {
                    self.sync();
                    return;
                }
            }
        }
    }

    fn write(&mut self, mut record: LogRecord) {
        let redactor = &self.redactor;
        let redacted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            redactor.redact_record(&mut record);
        }));
        if redacted.is_err() {
            // Never write what could not be redacted.
            self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(id = %record.id, "redaction panicked; log record dropped");
            return;
        }
        let appended = serde_json::to_vec(&record)
            .map_err(LogError::from)
            .and_then(|json| self.journal.append(&json));
        match appended {
            Ok(seq) => {
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
                tracing::error!(error = %err, id = %record.id, "log record could not be journaled");
            }
        }
    }

    fn sync(&mut self) {
        if !self.journal.is_dirty() {
            return;
        }
        if let Err(err) = self.journal.sync() {
            self.shared.write_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %err, "journal fsync failed");
            return;
        }
        self.publish();
    }

    /// Publish the durable end and wake the indexer.
    fn publish(&mut self) {
        self.shared.set_durable(
            self.journal.end(),
            self.journal.next_seq().saturating_sub(1),
        );
        let _ = self.indexer.send(IndexerCommand::Wake);
    }
}
