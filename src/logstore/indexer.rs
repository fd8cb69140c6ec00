//! The indexer: an OS thread tailing the journal into Tantivy.
//!
//! It reads records only up to the journal's last fsynced position, adds one document per
//! record, and commits every `commit_every_records` records or `commit_interval_ms` after the
//! first uncommitted one, storing the journal position after the last committed record in the
//! commit payload. On start it resumes from that payload, so a crash loses nothing and indexes
//! nothing twice. The same thread runs the retention pass, so every commit carries the payload.

use super::journal::{self, JournalEntry, JournalReader, Position};
use super::record::LogRecord;
use super::{now_ms, LogError, Shared};
use crate::canonical::ContentPart;
use serde::{Deserialize, Serialize};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tantivy::collector::Count;
use tantivy::query::RangeQuery;
use tantivy::schema::{
    Field, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STORED, STRING,
    TEXT,
};
use tantivy::{Index, IndexReader, IndexWriter, TantivyDocument};

/// Memory budget of the Tantivy writer (one indexing thread).
const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;

/// The index's fields. Text fields are not stored: the whole redacted record is, as JSON.
#[derive(Debug, Clone)]
pub struct LogSchema {
    /// The Tantivy schema.
    pub schema: Schema,
    /// Request id (raw, stored).
    pub id: Field,
    /// `started_ms`: milliseconds since the epoch (i64, indexed + fast).
    pub time: Field,
    /// The record's journal sequence number: unique, the tie-break of the time sort.
    pub seq: Field,
    /// Principal user (raw).
    pub user: Field,
    /// Principal team (raw).
    pub team: Field,
    /// Product feature (raw).
    pub feature: Field,
    /// The model the client asked for (raw).
    pub model: Field,
    /// The model that answered (raw).
    pub served_model: Field,
    /// The provider that answered (raw).
    pub provider: Field,
    /// HTTP status returned to the client (u64).
    pub status: Field,
    /// Total latency (f64).
    pub latency_ms: Field,
    /// Input tokens (u64).
    pub input_tokens: Field,
    /// Output tokens (u64).
    pub output_tokens: Field,
    /// Cost in USD (f64).
    pub cost_usd: Field,
    /// The id of the record this one replayed (raw).
    pub replay_of: Field,
    /// All request message text (full text).
    pub input: Field,
    /// Output text, tool call names and arguments (full text).
    pub output: Field,
    /// Error messages (full text).
    pub error: Field,
    /// The whole redacted record as JSON (stored only).
    pub record: Field,
    /// Rate-limit bucket keys the request counted against (raw, multi-valued); `None` in an
    /// index made before rate limits existed (the field is then not indexed).
    pub limit: Option<Field>,
    /// Milliseconds queued for a rate limit (f64).
    pub queued_ms: Option<Field>,
    /// Tokens reserved at admission (u64).
    pub reserved_tokens: Option<Field>,
    /// Tokens settled after the response (u64).
    pub settled_tokens: Option<Field>,
    /// Budget keys the request counted against (raw, multi-valued); `None` in an index made
    /// before budgets existed.
    pub budget: Option<Field>,
    /// The budget action (`downgrade`, `cap`, `queue`, `block`; raw).
    pub budget_action: Option<Field>,
    /// What the response cache did (`hit`, `miss`, `stale`, `bypass`; raw).
    pub cache: Option<Field>,
    /// Milliseconds to the first content byte (f64), for `/admin/stats`.
    pub first_token_ms: Option<Field>,
}

/// The schema of a new index.
pub fn build_schema() -> Schema {
    {
        let mut builder = Schema::builder();
        let raw = STRING | FAST;
        let numeric = NumericOptions::default().set_indexed().set_fast();
        let _ = builder.add_text_field("id", STRING | STORED);
        let _ = builder.add_i64_field("time", numeric.clone());
        let _ = builder.add_u64_field("seq", INDEXED | FAST);
        for name in [
            "user",
            "team",
            "feature",
            "model",
            "served_model",
            "provider",
            "replay_of",
        ] {
            let _ = builder.add_text_field(name, raw.clone());
        }
        let _ = builder.add_u64_field("status", numeric.clone());
        let _ = builder.add_f64_field("latency_ms", numeric.clone());
        let _ = builder.add_u64_field("input_tokens", numeric.clone());
        let _ = builder.add_u64_field("output_tokens", numeric.clone());
        let _ = builder.add_f64_field("cost_usd", numeric.clone());
        let _ = builder.add_text_field("limit", raw.clone());
        let _ = builder.add_text_field("budget", raw.clone());
        let _ = builder.add_text_field("budget_action", raw.clone());
        let _ = builder.add_text_field("cache", raw);
        let _ = builder.add_f64_field("queued_ms", numeric.clone());
        let _ = builder.add_u64_field("reserved_tokens", numeric.clone());
        let _ = builder.add_u64_field("settled_tokens", numeric.clone());
        let _ = builder.add_f64_field("first_token_ms", numeric);
        let text = TEXT.set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(tantivy::schema::IndexRecordOption::WithFreqsAndPositions),
        );
        for name in ["input", "output", "error"] {
            let _ = builder.add_text_field(name, text.clone());
        }
        let _ = builder.add_text_field("record", TextOptions::default().set_stored());
        builder.build()
    }
}

impl LogSchema {
    /// Look the fields up in an existing index's schema.
    pub fn from_schema(schema: &Schema) -> Result<LogSchema, LogError> {
        let field = |name: &str| {
            schema.get_field(name).map_err(|_| {
                LogError::Index(format!(
                    "index schema has no field `{name}`; move the old index away"
                ))
            })
        };
        Ok(LogSchema {
            schema: schema.clone(),
            id: field("id")?,
            time: field("time")?,
            seq: field("seq")?,
            user: field("user")?,
            team: field("team")?,
            feature: field("feature")?,
            model: field("model")?,
            served_model: field("served_model")?,
            provider: field("provider")?,
            status: field("status")?,
            latency_ms: field("latency_ms")?,
            input_tokens: field("input_tokens")?,
            output_tokens: field("output_tokens")?,
            cost_usd: field("cost_usd")?,
            replay_of: field("replay_of")?,
            input: field("input")?,
            output: field("output")?,
            error: field("error")?,
            record: field("record")?,
            limit: schema.get_field("limit").ok(),
            queued_ms: schema.get_field("queued_ms").ok(),
            reserved_tokens: schema.get_field("reserved_tokens").ok(),
            settled_tokens: schema.get_field("settled_tokens").ok(),
            budget: schema.get_field("budget").ok(),
            budget_action: schema.get_field("budget_action").ok(),
            cache: schema.get_field("cache").ok(),
            first_token_ms: schema.get_field("first_token_ms").ok(),
        })
    }

    /// The document for one record; `json` is the record as stored in the journal.
    pub fn document(&self, record: &LogRecord, json: &str, seq: u64) -> TantivyDocument {
        let mut doc = TantivyDocument::default();
        doc.add_text(self.id, &record.id);
        doc.add_i64(self.time, record.started_ms);
        doc.add_u64(self.seq, seq);
        doc.add_text(self.user, &record.user);
        doc.add_text(self.model, &record.requested_model);
        for (field, value) in [
            (self.team, &record.team),
            (self.feature, &record.feature),
            (self.served_model, &record.served_model),
            (self.provider, &record.provider),
            (self.replay_of, &record.replay_of),
        ] {
            if let Some(value) = value {
                doc.add_text(field, value);
            }
        }
        doc.add_u64(self.status, u64::from(record.status));
        doc.add_f64(self.latency_ms, record.latency_ms);
        doc.add_u64(self.input_tokens, record.usage.input_tokens);
        doc.add_u64(self.output_tokens, record.usage.output_tokens);
        doc.add_f64(self.cost_usd, record.cost_usd);
        doc.add_text(self.input, input_text(record));
        doc.add_text(self.output, output_text(record));
        let error = error_text(record);
        if !error.is_empty() {
            doc.add_text(self.error, error);
        }
        if let Some(limits) = &record.limits {
            if let Some(field) = self.limit {
                for key in &limits.applied {
                    doc.add_text(field, key);
                }
            }
            if let Some(field) = self.queued_ms {
                doc.add_f64(field, limits.queued_ms);
            }
            if let Some(field) = self.reserved_tokens {
                doc.add_u64(field, limits.reserved_tokens);
            }
            if let Some(field) = self.settled_tokens {
                doc.add_u64(field, limits.settled_tokens);
            }
        }
        if let Some(budget) = &record.budget {
            if let Some(field) = self.budget {
                for key in &budget.applied {
                    doc.add_text(field, key);
                }
            }
            if let (Some(field), Some(action)) = (self.budget_action, &budget.action) {
                doc.add_text(field, action);
            }
        }
        if let (Some(field), Some(ms)) = (self.first_token_ms, record.first_token_ms) {
            doc.add_f64(field, ms);
        }
        if let (Some(field), Some(cache)) = (self.cache, &record.cache) {
            doc.add_text(field, &cache.status);
        }
        doc.add_text(self.record, json);
        doc
    }
}

impl LogSchema {
    /// A minimal document (id, time, the stored JSON) for a record that no longer parses as
    /// [`LogRecord`] (written by another version); `None` if it is not a JSON object.
    pub fn fallback_document(&self, payload: &[u8], seq: u64) -> Option<TantivyDocument> {
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        let object = value.as_object()?;
        let mut doc = TantivyDocument::default();
        doc.add_text(self.id, object.get("id")?.as_str()?);
        doc.add_i64(
            self.time,
            object
                .get("started_ms")
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
        );
        doc.add_u64(self.seq, seq);
        for (field, key) in [(self.user, "user"), (self.model, "requested_model")] {
            if let Some(text) = object.get(key).and_then(|v| v.as_str()) {
                doc.add_text(field, text);
            }
        }
        if let Some(status) = object.get("status").and_then(|v| v.as_u64()) {
            doc.add_u64(self.status, status);
        }
        doc.add_text(self.record, std::str::from_utf8(payload).ok()?);
        Some(doc)
    }
}

/// All request text: message text parts (tool results included) and tool call arguments.
pub fn input_text(record: &LogRecord) -> String {
    let mut out = String::new();
    let mut push = |text: &str| {
        if !text.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(text);
        }
    };
    for message in &record.request.messages {
        for part in &message.content {
            if let ContentPart::Text { text } = part {
                push(text);
            }
        }
        for call in &message.tool_calls {
            push(&call.name);
            push(&call.arguments);
        }
    }
    out
}

/// Output text, then each output tool call's name and arguments.
pub fn output_text(record: &LogRecord) -> String {
    let mut out = record.output_text.clone();
    for call in &record.output_tool_calls {
        for text in [&call.name, &call.arguments] {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(text);
        }
    }
    out
}

/// The record's error and its attempts' errors.
pub fn error_text(record: &LogRecord) -> String {
    let mut parts: Vec<&str> = record.error.iter().map(String::as_str).collect();
    parts.extend(record.attempts.iter().filter_map(|a| a.error.as_deref()));
    parts.join("\n")
}

/// What each commit records about the journal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitPayload {
    /// The journal position after the last committed record.
    pub position: Position,
    /// That record's sequence number (0 before any).
    pub seq: u64,
}

/// Read the payload of the last commit (the start of the journal if none).
pub fn load_payload(index: &Index) -> Result<CommitPayload, LogError> {
    let metas = index.load_metas()?;
    match metas.payload {
        None => Ok(CommitPayload {
            position: Position::START,
            seq: 0,
        }),
        Some(text) => serde_json::from_str(&text)
            .map_err(|err| LogError::Index(format!("unreadable commit payload `{text}`: {err}"))),
    }
}

/// Open the index in `dir` or create it.
pub fn open_index(dir: &std::path::Path) -> Result<(Index, LogSchema), LogError> {
    std::fs::create_dir_all(dir)?;
    let index = if dir.join("meta.json").exists() {
        Index::open_in_dir(dir)?
    } else {
        Index::create_in_dir(dir, build_schema())?
    };
    let schema = LogSchema::from_schema(&index.schema())?;
    Ok((index, schema))
}

/// Requests to the indexer thread.
pub(crate) enum IndexerCommand {
    /// New records are durable in the journal.
    Wake,
    /// Index everything durable, commit, reload the reader, then answer.
    Sync(tokio::sync::oneshot::Sender<Result<(), LogError>>),
    /// Run the retention pass now, with this clock (ms), then answer with the deleted count.
    Retention(
        i64,
        tokio::sync::oneshot::Sender<Result<RetentionReport, LogError>>,
    ),
    /// Index what is durable until the deadline, commit, and stop (the rest is indexed from
    /// the journal at the next start).
    Shutdown(Instant, tokio::sync::oneshot::Sender<()>),
    /// Stop at once without committing (a simulated crash).
    #[cfg(test)]
    Kill,
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RetentionReport {
    /// Documents deleted from the index.
    pub deleted_records: u64,
    /// Journal segment files deleted.
    pub deleted_segments: usize,
}

/// The indexer thread's state.
pub(crate) struct Indexer {
    pub(crate) schema: LogSchema,
    pub(crate) writer: IndexWriter,
    pub(crate) reader: IndexReader,
    pub(crate) journal: JournalReader,
    pub(crate) journal_dir: PathBuf,
    pub(crate) shared: Arc<Shared>,
    pub(crate) commits: Receiver<IndexerCommand>,
    pub(crate) commit_every_records: usize,
    pub(crate) commit_interval: Duration,
    pub(crate) retention_days: u32,
    pub(crate) retention_interval: Duration,
    /// Records added since the last commit, and when the first of them was added.
    pending: usize,
    pending_since: Option<Instant>,
    last_seq: u64,
}

/// Create the Tantivy writer the indexer thread owns.
pub(crate) fn index_writer(index: &Index) -> Result<IndexWriter, LogError> {
    Ok(index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?)
}

impl Indexer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        schema: LogSchema,
        writer: IndexWriter,
        reader: IndexReader,
        journal_dir: PathBuf,
        start: CommitPayload,
        shared: Arc<Shared>,
        commits: Receiver<IndexerCommand>,
        config: &crate::config::LogsConfig,
    ) -> Indexer {
        Indexer {
            schema,
            writer,
            reader,
            journal: JournalReader::open(&journal_dir, start.position),
            journal_dir,
            shared,
            commits,
            commit_every_records: config.commit_every_records.max(1),
            commit_interval: Duration::from_millis(config.commit_interval_ms.max(1)),
            retention_days: config.retention_days,
            retention_interval: Duration::from_secs(config.retention_interval_s.max(1)),
            pending: 0,
            pending_since: None,
            last_seq: start.seq,
        }
    }

    /// The thread body: runs until shutdown (or until every command sender is gone).
    pub(crate) fn run(mut self) {
        let mut next_retention = Instant::now();
        loop {
            if let Err(err) = self.index_available() {
                tracing::error!(error = %err, "indexing from the journal failed; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            if self.commit_due() {
                self.commit_logged();
            }
            if Instant::now() >= next_retention {
                if let Err(err) = self.retention(now_ms()) {
                    tracing::error!(error = %err, "log retention pass failed");
                }
                next_retention = Instant::now() + self.retention_interval;
            }
            let wait = match self.pending_since {
                Some(since) => self.commit_interval.saturating_sub(since.elapsed()),
                None => Duration::from_secs(1),
            }
            .min(next_retention.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
            match self.commits.recv_timeout(wait) {
                Ok(IndexerCommand::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(IndexerCommand::Sync(reply)) => {
                    let result = self.index_available().and_then(|()| self.commit());
                    let _ = reply.send(result);
                }
                Ok(IndexerCommand::Retention(now, reply)) => {
                    let _ = reply.send(self.retention(now));
                }
                Ok(IndexerCommand::Shutdown(stop_at, reply)) => {
                    self.finish(Some(stop_at));
                    let _ = reply.send(());
                    return;
                }
                #[cfg(test)]
                Ok(IndexerCommand::Kill) => return,
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish(None);
                    return;
                }
            }
        }
    }

    fn finish(&mut self, stop_at: Option<Instant>) {
        if let Err(err) = self.index_until(stop_at) {
            tracing::error!(error = %err, "indexing the journal tail at shutdown failed");
        }
        self.commit_logged();
    }

    fn commit_due(&self) -> bool {
        self.pending >= self.commit_every_records
            || self
                .pending_since
                .is_some_and(|since| since.elapsed() >= self.commit_interval)
    }

    fn commit_logged(&mut self) {
        if self.pending > 0 {
            if let Err(err) = self.commit() {
                tracing::error!(error = %err, "log index commit failed; will retry");
            }
        }
    }

    /// Add every durable record not yet added, committing whenever the record count says so.
    fn index_available(&mut self) -> Result<(), LogError> {
        self.index_until(None)
    }

    /// [`Indexer::index_available`], stopping early at `stop_at`.
    fn index_until(&mut self, stop_at: Option<Instant>) -> Result<(), LogError> {
        let limit = self.shared.durable_position();
        loop {
            // Checked before reading: the commit payload is the reader's position.
            if stop_at.is_some_and(|stop_at| Instant::now() >= stop_at) {
                tracing::warn!(
                    indexed_seq = self.last_seq,
                    "shutdown deadline: the rest of the journal is indexed at the next start"
                );
                break;
            }
            let Some(entry) = self.journal.next(Some(limit))? else {
                break;
            };
            self.add(&entry)?;
            if self.pending >= self.commit_every_records {
                self.commit()?;
            }
        }
        Ok(())
    }

    fn add(&mut self, entry: &JournalEntry) -> Result<(), LogError> {
        let parsed = std::str::from_utf8(&entry.payload).ok().and_then(|json| {
            serde_json::from_str::<LogRecord>(json)
                .ok()
                .map(|r| (json, r))
        });
        match parsed {
            Some((json, record)) => {
                let _ = self
                    .writer
                    .add_document(self.schema.document(&record, json, entry.seq))?;
            }
            None => match self.schema.fallback_document(&entry.payload, entry.seq) {
                Some(doc) => {
                    tracing::warn!(
                        seq = entry.seq,
                        "journal record of an older shape indexed by id and time only"
                    );
                    let _ = self.writer.add_document(doc)?;
                }
                None => tracing::warn!(seq = entry.seq, "unreadable journal record skipped"),
            },
        }
        self.last_seq = entry.seq;
        self.pending += 1;
        self.pending_since.get_or_insert_with(Instant::now);
        Ok(())
    }

    /// Commit with the journal position as payload and make the commit visible to searches.
    fn commit(&mut self) -> Result<(), LogError> {
        let payload = CommitPayload {
            position: self.journal.position(),
            seq: self.last_seq,
        };
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&serde_json::to_string(&payload)?);
        let _ = prepared.commit()?;
        self.reader.reload()?;
        self.pending = 0;
        self.pending_since = None;
        self.shared.set_indexed(payload);
        tracing::debug!(seq = payload.seq, "log index committed");
        Ok(())
    }

    /// Delete records older than the retention window, then journal segments that are wholly
    /// indexed and older than it.
    fn retention(&mut self, now: i64) -> Result<RetentionReport, LogError> {
        let window_ms = i64::from(self.retention_days) * 86_400_000;
        let cutoff = now.saturating_sub(window_ms);
        let query =
            RangeQuery::new_i64_bounds("time".into(), Bound::Unbounded, Bound::Excluded(cutoff));
        let expired = self.reader.searcher().search(&query, &Count)? as u64;
        if expired > 0 {
            let _ = self.writer.delete_query(Box::new(query))?;
            self.commit()?;
            tracing::info!(deleted = expired, "log retention deleted expired records");
        }
        let cutoff_time = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(cutoff).unwrap_or_default());
        let indexed = self
            .shared
            .indexed
            .lock()
            .map(|p| p.position)
            .unwrap_or_default();
        let deleted_segments =
            journal::delete_segments_before(&self.journal_dir, indexed, cutoff_time)?;
        self.shared.retention_runs.fetch_add(1, Ordering::Relaxed);
        Ok(RetentionReport {
            deleted_records: expired,
            deleted_segments,
        })
    }
}
