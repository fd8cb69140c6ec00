//! Appending to the journal: frames buffered until their fsync, rewind or roll after a
//! failed write.

use super::*;

/// Unsynced frames kept in memory past this many bytes (while the disk refuses writes) make
/// [`JournalWriter::append`] refuse records, which the caller counts.
pub const MAX_UNSYNCED_BYTES: usize = 32 * 1024 * 1024;
/// Unwritten frames are written (not yet fsynced) past this many bytes.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;

/// Appends frames to the newest segment and fsyncs on request.
///
/// Frames are kept in memory from their append until the fsync that makes them durable. A
/// failed write or fsync (a full disk) rewinds the segment to the last durable frame end (or,
/// when that is impossible, continues in a new segment, past torn bytes readers skip) and
/// keeps the frames for the next attempt, so a torn frame never stays in front of good ones
/// and no appended record is lost while the process lives. The failure is logged once per
/// episode, with the path, and its end is logged too.
pub struct JournalWriter {
    dir: PathBuf,
    file: File,
    segment: u64,
    /// Bytes of the segment that are written and fsynced.
    durable_end: u64,
    /// Frames after `durable_end`, in order; `written` of them are written but not fsynced.
    unsynced: Vec<u8>,
    written: usize,
    /// The seq of the last durable frame.
    durable_seq: u64,
    segment_bytes: u64,
    next_seq: u64,
    /// The segment has bytes past `durable_end` that could not be cut off yet.
    needs_rewind: bool,
    /// The current failure episode: its first error, when writes fail.
    failing: Option<String>,
    /// Failed write or fsync attempts (each retry counts).
    failures: u64,
}

impl JournalWriter {
    /// Open the journal in `dir` (created if missing) for appending.
    ///
    /// Torn bytes at the end of the newest segment (a crash or a full disk mid-write) are cut
    /// off, so new records follow the last whole one; torn bytes between valid frames are
    /// kept and skipped by readers, so no valid record behind them is lost.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<JournalWriter, LogError> {
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let segments = list_segments(dir)?;
        let mut next_seq = 1;
        let (segment, offset) = match segments.last() {
            None => (1, 0),
            Some(&last) => {
                let path = segment_path(dir, last);
                let scan = scan_segment(&path)?;
                for &(from, to) in &scan.torn {
                    tracing::warn!(
                        path = %path.display(),
                        from,
                        to,
                        "journal has torn bytes between valid records; readers skip them"
                    );
                }
                let len = fs::metadata(&path).map_err(io_at(&path))?.len();
                if len > scan.valid_end {
                    tracing::warn!(
                        path = %path.display(),
                        valid_end = scan.valid_end,
                        file_len = len,
                        "journal has a torn tail; truncating it"
                    );
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(io_at(&path))?;
                    file.set_len(scan.valid_end).map_err(io_at(&path))?;
                    file.sync_all().map_err(io_at(&path))?;
                }
                match scan.last_seq {
                    Some(seq) => next_seq = seq + 1,
                    None => {
                        for &older in segments.iter().rev().skip(1) {
                            if let Some(seq) = scan_segment(&segment_path(dir, older))?.last_seq {
                                next_seq = seq + 1;
                                break;
                            }
                        }
                    }
                }
                (last, scan.valid_end)
            }
        };
        let file = open_segment_for_append(dir, segment)?;
        Ok(JournalWriter {
            dir: dir.to_path_buf(),
            file,
            segment,
            durable_end: offset,
            unsynced: Vec::new(),
            written: 0,
            durable_seq: next_seq - 1,
            segment_bytes,
            next_seq,
            needs_rewind: false,
            failing: None,
            failures: 0,
        })
    }

    /// Make sure the next record gets a sequence number of at least `seq` (used when the
    /// index has seen more records than the surviving segments show).
    pub fn ensure_next_seq_at_least(&mut self, seq: u64) {
        if self.unsynced.is_empty() {
            self.durable_seq = self.durable_seq.max(seq.saturating_sub(1));
        }
        self.next_seq = self.next_seq.max(seq);
    }

    /// The sequence number the next record gets; `next_seq() - 1` records were appended.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The position after the last appended record (durable or not).
    pub fn end(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.durable_end + self.unsynced.len() as u64,
        }
    }

    /// The position after the last fsynced record: readers may read up to here.
    pub fn durable_end(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.durable_end,
        }
    }

    /// The seq of the last fsynced record (0 before any).
    pub fn durable_seq(&self) -> u64 {
        self.durable_seq
    }

    /// Whether records were appended since the last successful [`JournalWriter::sync`].
    pub fn is_dirty(&self) -> bool {
        !self.unsynced.is_empty()
    }

    /// Whether writes are failing now (a full disk): appended records wait in memory.
    pub fn is_failing(&self) -> bool {
        self.failing.is_some()
    }

    /// Bytes of appended frames not yet durable.
    pub fn unsynced_bytes(&self) -> usize {
        self.unsynced.len()
    }

    /// Failed write or fsync attempts so far.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.segment)
    }

    /// Append one record (JSON without newlines) and return its sequence number. Durable only
    /// after the next successful [`JournalWriter::sync`]; until then it is kept in memory and
    /// survives failed writes. Fails when the record is too large, or when writes have been
    /// failing so long that [`MAX_UNSYNCED_BYTES`] are waiting (the caller counts the loss).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len <= MAX_RECORD_BYTES)
            .ok_or_else(|| {
                LogError::BadRequest(format!("record of {} bytes is too large", payload.len()))
            })?;
        let size = frame_len(payload.len());
        if self.unsynced.len() + size as usize > MAX_UNSYNCED_BYTES && self.is_failing() {
            return Err(LogError::File {
                path: self.path(),
                source: std::io::Error::new(
                    ErrorKind::StorageFull,
                    "journal writes keep failing and the in-memory retry buffer is full",
                ),
            });
        }
        if self.end().offset > 0 && self.end().offset + size > self.segment_bytes {
            // Only roll when everything is durable; if the disk refuses, keep growing this
            // segment and roll later.
            if self.sync().is_ok() {
                self.roll();
            }
        }
        let seq = self.next_seq;
        self.unsynced.extend_from_slice(&len.to_le_bytes());
        self.unsynced
            .extend_from_slice(&frame_crc(seq, payload).to_le_bytes());
        self.unsynced.extend_from_slice(&seq.to_le_bytes());
        self.unsynced.extend_from_slice(payload);
        self.unsynced.push(b'\n');
        self.next_seq += 1;
        if self.unsynced.len() - self.written >= WRITE_CHUNK_BYTES && !self.is_failing() {
            // Write early (no fsync); a failure is handled and retried at the next sync.
            let _ = self.write_unwritten();
        }
        Ok(seq)
    }

    /// Write the unwritten frames (no fsync). On failure the segment is rewound.
    fn write_unwritten(&mut self) -> Result<(), LogError> {
        if self.needs_rewind {
            self.rewind();
            if self.needs_rewind {
                return Err(LogError::File {
                    path: self.path(),
                    source: std::io::Error::other("torn bytes could not be cut off yet"),
                });
            }
        }
        let pending = self.unsynced.get(self.written..).unwrap_or_default();
        match self.file.write_all(pending) {
            Ok(()) => {
                self.written = self.unsynced.len();
                Ok(())
            }
            Err(err) => Err(self.failed(err)),
        }
    }

    /// Write what is unwritten and fsync the segment. On failure (a full disk) the segment is
    /// rewound to its last durable frame end and every unsynced frame is kept for the next
    /// call, so a later success writes them all in order.
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.unsynced.is_empty() && !self.needs_rewind {
            return Ok(());
        }
        self.write_unwritten()?;
        if let Err(err) = self.file.sync_data() {
            return Err(self.failed(err));
        }
        self.durable_end += self.unsynced.len() as u64;
        self.durable_seq = self.next_seq - 1;
        self.unsynced.clear();
        self.written = 0;
        if let Some(first_error) = self.failing.take() {
            tracing::warn!(
                path = %self.path().display(),
                first_error,
                failed_attempts = self.failures,
                "journal writes succeed again; the records kept in memory are now durable"
            );
        }
        Ok(())
    }

    /// Handle a failed write or fsync: rewind, start or continue the episode, and return
    /// the error naming the path.
    fn failed(&mut self, err: std::io::Error) -> LogError {
        self.failures += 1;
        self.needs_rewind = true;
        self.rewind();
        let path = self.path();
        if self.failing.is_none() {
            tracing::error!(
                path = %path.display(),
                error = %err,
                "journal write failed (disk full?); records are kept in memory and retried"
            );
            self.failing = Some(err.to_string());
        }
        LogError::File { path, source: err }
    }

    /// Cut the segment back to its durable end, or when that fails continue in a new
    /// segment (readers resync past the torn bytes left behind).
    fn rewind(&mut self) {
        self.written = 0;
        match self.file.set_len(self.durable_end) {
            Ok(()) => self.needs_rewind = false,
            Err(err) => {
                let next = self.segment + 1;
                match open_segment_for_append(&self.dir, next) {
                    Ok(file) => {
                        tracing::warn!(
                            path = %self.path().display(),
                            error = %err,
                            "journal segment could not be rewound; continuing in a new segment"
                        );
                        self.file = file;
                        self.segment = next;
                        self.durable_end = 0;
                        self.needs_rewind = false;
                    }
                    Err(_) => self.needs_rewind = true,
                }
            }
        }
    }

    fn roll(&mut self) {
        let next = self.segment + 1;
        let file = match open_segment_for_append(&self.dir, next) {
            Ok(file) => file,
            Err(err) => {
                tracing::warn!(error = %err, "journal segment cannot roll; the current one grows");
                return;
            }
        };
        // Make the new file's directory entry durable too.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.file = file;
        self.segment = next;
        self.durable_end = 0;
        tracing::debug!(segment = next, "journal segment rolled");
    }
}

fn open_segment_for_append(dir: &Path, number: u64) -> Result<File, LogError> {
    let path = segment_path(dir, number);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_at(&path))?;
    file.seek(SeekFrom::End(0)).map_err(io_at(&path))?;
    Ok(file)
}
