//! The journal: append-only segment files of redacted records, the log's write-ahead log.
//!
//! Records live in `<dir>/journal/NNNNNNNNNNNNNNNNNNNN.seg` (numbered from 1, a new file past
//! `segment_bytes`). Each record is one frame:
//!
//! ```text
//! len: u32 LE | crc32: u32 LE | seq: u64 LE | len bytes of JSON | '\n'
//! ```
//!
//! where the CRC covers the sequence number and the JSON. `seq` numbers records from 1 across
//! all segments. The writer fsyncs in batches; the indexer reads only up to the last fsynced
//! [`Position`], and a reader stops cleanly at a torn or partial frame (a crash mid-write),
//! which the next writer truncates away before appending.

use super::LogError;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Bytes before the JSON of a frame: length, CRC, sequence number.
const FRAME_HEADER: u64 = 16;
/// A frame longer than this is treated as corruption, not allocated.
const MAX_RECORD_BYTES: u32 = 256 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";

/// A place in the journal: a segment number and a byte offset inside it.
///
/// Ordered by segment, then offset. The indexer keeps the position after the last record it
/// committed in the Tantivy commit payload.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    /// The segment file number (the first segment is 1).
    pub segment: u64,
    /// Byte offset inside the segment.
    pub offset: u64,
}

impl Position {
    /// The start of the journal.
    pub const START: Position = Position {
        segment: 1,
        offset: 0,
    };
}

/// One record read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The record's sequence number (from 1).
    pub seq: u64,
    /// Where the frame starts.
    pub position: Position,
    /// Where the next frame starts.
    pub next: Position,
    /// The record's JSON.
    pub payload: Vec<u8>,
}

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// Continue a CRC-32 (IEEE) over more bytes; start with `0`.
pub fn crc32_update(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for &byte in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// CRC-32 (IEEE, as in zlib) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32_update(0, bytes)
}

fn frame_crc(seq: u64, payload: &[u8]) -> u32 {
    crc32_update(crc32(&seq.to_le_bytes()), payload)
}

/// The file name of segment `number`.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:020}{SEGMENT_SUFFIX}")
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(segment_file_name(number))
}

/// The segment numbers present in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>, LogError> {
    let mut numbers = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(numbers),
        Err(err) => return Err(err.into()),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(number) = name
            .strip_suffix(SEGMENT_SUFFIX)
            .and_then(|n| n.parse().ok())
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Total size in bytes of all segment files.
pub fn journal_bytes(dir: &Path) -> u64 {
    list_segments(dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| fs::metadata(segment_path(dir, n)).ok())
        .map(|m| m.len())
        .sum()
}

/// Delete segments that lie wholly before `indexed` (so every record in them is committed to
/// the index) and were last written before `older_than`. Returns how many were deleted.
pub fn delete_segments_before(
    dir: &Path,
    indexed: Position,
    older_than: SystemTime,
) -> Result<usize, LogError> {
    let mut deleted = 0;
    for number in list_segments(dir)? {
        if number >= indexed.segment {
            break;
        }
        let path = segment_path(dir, number);
        let modified = fs::metadata(&path)?.modified()?;
        if modified < older_than {
            fs::remove_file(&path)?;
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The outcome of reading one frame.
enum Frame {
    /// A whole, valid frame.
    Record { seq: u64, payload: Vec<u8> },
    /// End of data: the file ends here, possibly in the middle of a frame.
    End,
    /// The bytes here are not a valid frame.
    Corrupt,
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(buf.get_mut(filled..).unwrap_or_default()) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

fn read_frame(reader: &mut impl Read) -> std::io::Result<Frame> {
    let mut header = [0u8; FRAME_HEADER as usize];
    if read_up_to(reader, &mut header)? < header.len() {
        return Ok(Frame::End);
    }
    let [l0, l1, l2, l3, c0, c1, c2, c3, s0, s1, s2, s3, s4, s5, s6, s7] = header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]);
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    let seq = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
    if len > MAX_RECORD_BYTES {
        return Ok(Frame::Corrupt);
    }
    let mut payload = vec![0u8; len as usize + 1];
    if read_up_to(reader, &mut payload)? < payload.len() {
        return Ok(Frame::End);
    }
    if payload.pop() != Some(b'\n') || frame_crc(seq, &payload) != crc {
        return Ok(Frame::Corrupt);
    }
    Ok(Frame::Record { seq, payload })
}

fn frame_len(payload_len: usize) -> u64 {
    FRAME_HEADER + payload_len as u64 + 1
}

/// The valid frame starting at `at` in `bytes`, as (seq, frame length), if there is one.
fn frame_at(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let header = bytes.get(at..at.checked_add(FRAME_HEADER as usize)?)?;
    let (len, rest) = header.split_first_chunk::<4>()?;
    let (crc, seq) = rest.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len);
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let seq = u64::from_le_bytes(seq.try_into().ok()?);
    let payload_start = at + FRAME_HEADER as usize;
    let payload_end = payload_start + len as usize;
    if bytes.get(payload_end) != Some(&b'\n') {
        return None;
    }
    let payload = bytes.get(payload_start..payload_end)?;
    (frame_crc(seq, payload) == u32::from_le_bytes(*crc))
        .then_some((seq, FRAME_HEADER as usize + len as usize + 1))
}

/// The offset of the first valid frame at or after `from` whose seq is above `after_seq`:
/// where reading resumes past torn bytes (a failed or interrupted write).
fn resync(bytes: &[u8], from: usize, after_seq: Option<u64>) -> Option<usize> {
    (from..bytes.len()).find(|&at| {
        frame_at(bytes, at).is_some_and(|(seq, _)| after_seq.is_none_or(|after| seq > after))
    })
}

/// What a scan of a whole segment found.
#[derive(Debug, Default, PartialEq, Eq)]
struct SegmentScan {
    /// The end of the last valid frame (torn bytes after it may be cut off).
    valid_end: u64,
    /// The last valid frame's seq.
    last_seq: Option<u64>,
    /// Torn byte ranges skipped between valid frames (kept: readers resync past them).
    torn: Vec<(u64, u64)>,
}

/// Scan a segment's bytes, resyncing past torn frames so that no valid frame is lost.
fn scan_bytes(bytes: &[u8]) -> SegmentScan {
    let mut scan = SegmentScan::default();
    let mut at = 0usize;
    while at < bytes.len() {
        if let Some((seq, len)) = frame_at(bytes, at) {
            at += len;
            scan.valid_end = at as u64;
            scan.last_seq = Some(seq);
            continue;
        }
        match resync(bytes, at + 1, scan.last_seq) {
            Some(next) => {
                scan.torn.push((at as u64, next as u64));
                at = next;
            }
            None => break,
        }
    }
    scan
}

fn scan_segment(path: &Path) -> Result<SegmentScan, LogError> {
    Ok(scan_bytes(&fs::read(path).map_err(io_at(path))?))
}

/// Wraps an I/O error with the file it happened on.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::File {
        path: path.to_path_buf(),
        source,
    }
}

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

/// Reads records in order from a [`Position`], across segments.
pub struct JournalReader {
    dir: PathBuf,
    position: Position,
    file: Option<BufReader<File>>,
    /// The seq of the last record returned (resyncing only accepts later ones).
    last_seq: Option<u64>,
}

impl JournalReader {
    /// A reader that starts at `from` (the first frame at or after it).
    pub fn open(dir: &Path, from: Position) -> JournalReader {
        JournalReader {
            dir: dir.to_path_buf(),
            position: from,
            file: None,
            last_seq: None,
        }
    }

    /// The position of the next frame to read.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The next record, if one is wholly present before `limit` (no limit: up to the end of
    /// the data). `Ok(None)` at the end, including at a torn tail; the same call later picks
    /// up records appended since. Torn bytes before `limit` (or before the end of a segment
    /// the limit lies beyond) are skipped: reading resyncs on the next valid frame.
    pub fn next(&mut self, limit: Option<Position>) -> Result<Option<JournalEntry>, LogError> {
        loop {
            if limit.is_some_and(|limit| self.position >= limit) {
                return Ok(None);
            }
            let path = segment_path(&self.dir, self.position.segment);
            let file = match self.file.as_mut() {
                Some(file) => file,
                None => match File::open(&path) {
                    Ok(mut file) => {
                        file.seek(SeekFrom::Start(self.position.offset))
                            .map_err(io_at(&path))?;
                        self.file.insert(BufReader::with_capacity(256 * 1024, file))
                    }
                    Err(err) if err.kind() == ErrorKind::NotFound => {
                        if self.skip_to_next_segment(limit)? {
                            continue;
                        }
                        return Ok(None);
                    }
                    Err(err) => return Err(io_at(&path)(err)),
                },
            };
            match read_frame(file).map_err(io_at(&path))? {
                Frame::Record { seq, payload } => {
                    let position = self.position;
                    self.position.offset += frame_len(payload.len());
                    self.last_seq = Some(seq);
                    return Ok(Some(JournalEntry {
                        seq,
                        position,
                        next: self.position,
                        payload,
                    }));
                }
                // Data short of a whole frame is either the (still growing) end or a torn
                // frame with valid ones after it: resyncing tells (cheap at a true end, where
                // little or nothing follows).
                Frame::End | Frame::Corrupt => {}
            };
            self.file = None;
            if self.resync(limit)? {
                continue;
            }
            if self.skip_to_next_segment(limit)? {
                continue;
            }
            return Ok(None);
        }
    }

    /// Move past torn bytes at the current position to the next valid frame before the
    /// limit (within this segment). True when one was found.
    fn resync(&mut self, limit: Option<Position>) -> Result<bool, LogError> {
        let path = segment_path(&self.dir, self.position.segment);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(false),
            Err(err) => return Err(io_at(&path)(err)),
        };
        file.seek(SeekFrom::Start(self.position.offset))
            .map_err(io_at(&path))?;
        let mut rest = Vec::new();
        match limit {
            Some(limit) if limit.segment == self.position.segment => {
                let want = limit.offset.saturating_sub(self.position.offset);
                let _ = file
                    .take(want)
                    .read_to_end(&mut rest)
                    .map_err(io_at(&path))?;
            }
            _ => {
                let _ = file.read_to_end(&mut rest).map_err(io_at(&path))?;
            }
        }
        match resync(&rest, 1, self.last_seq) {
            Some(skip) => {
                tracing::warn!(
                    path = %path.display(),
                    from = self.position.offset,
                    skipped_bytes = skip,
                    "journal has torn bytes; skipped them to the next valid record"
                );
                self.position.offset += skip as u64;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Move to the next existing segment after the current one if there is one (and the
    /// limit lies beyond the current segment).
    fn skip_to_next_segment(&mut self, limit: Option<Position>) -> Result<bool, LogError> {
        if limit.is_some_and(|limit| limit.segment <= self.position.segment) {
            return Ok(false);
        }
        let next = list_segments(&self.dir)?
            .into_iter()
            .find(|&n| n > self.position.segment);
        match next {
            Some(segment) => {
                self.position = Position { segment, offset: 0 };
                self.file = None;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn read_all(dir: &Path, from: Position, limit: Option<Position>) -> Vec<JournalEntry> {
        let mut reader = JournalReader::open(dir, from);
        let mut out = Vec::new();
        while let Some(entry) = reader.next(limit).unwrap() {
            out.push(entry);
        }
        out
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn appended_records_read_back_in_order_with_sequence_numbers() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        for i in 0..10 {
            writer.append(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
        }
        writer.sync().unwrap();
        let entries = read_all(tmp.path(), Position::START, Some(writer.end()));
        assert_eq!(entries.len(), 10);
        for (i, entry) in entries.iter().enumerate() {
            assert_eq!(entry.seq, i as u64 + 1);
            assert_eq!(entry.payload, format!("{{\"n\":{i}}}").into_bytes());
        }
        // Resuming from a middle position yields exactly the rest.
        let rest = read_all(tmp.path(), entries[4].next, None);
        assert_eq!(rest.first().unwrap().seq, 6);
        assert_eq!(rest.len(), 5);
    }

    #[test]
    fn segments_roll_past_the_size_limit_and_reading_crosses_them() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 4096).unwrap();
        let payload = format!("\"{}\"", "x".repeat(1000));
        for _ in 0..20 {
            writer.append(payload.as_bytes()).unwrap();
        }
        writer.sync().unwrap();
        let segments = list_segments(tmp.path()).unwrap();
        assert!(segments.len() >= 5, "{segments:?}");
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        let entries = read_all(tmp.path(), Position::START, Some(writer.end()));
        assert_eq!(entries.len(), 20);
        assert_eq!(entries.last().unwrap().next, writer.end());
    }

    #[test]
    fn a_torn_tail_stops_the_reader_cleanly_and_the_writer_truncates_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        for i in 0..3 {
            writer.append(format!("{i}").as_bytes()).unwrap();
        }
        writer.sync().unwrap();
        drop(writer);
        // A crash mid-write: a header promising 100 bytes followed by only a few.
        let path = segment_path(tmp.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&100u32.to_le_bytes()).unwrap();
        file.write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        drop(file);

        assert_eq!(read_all(tmp.path(), Position::START, None).len(), 3);

        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        assert_eq!(writer.next_seq(), 4);
        writer.append(b"3").unwrap();
        writer.sync().unwrap();
        let entries = read_all(tmp.path(), Position::START, None);
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[3].payload, b"3");
        assert_eq!(entries[3].seq, 4);
    }

    #[test]
    fn a_corrupted_frame_at_the_tail_is_not_returned() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        writer.append(b"\"good\"").unwrap();
        writer.append(b"\"flipped\"").unwrap();
        writer.sync().unwrap();
        drop(writer);
        let path = segment_path(tmp.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xFF;
        fs::write(&path, bytes).unwrap();
        let entries = read_all(tmp.path(), Position::START, None);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].payload, b"\"good\"");
    }

    #[test]
    fn the_reader_does_not_read_past_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        writer.append(b"1").unwrap();
        writer.sync().unwrap();
        let durable = writer.end();
        writer.append(b"2").unwrap();
        writer.sync().unwrap();
        let mut reader = JournalReader::open(tmp.path(), Position::START);
        assert!(reader.next(Some(durable)).unwrap().is_some());
        assert!(reader.next(Some(durable)).unwrap().is_none());
        assert_eq!(
            reader.next(Some(writer.end())).unwrap().unwrap().payload,
            b"2"
        );
    }

    #[test]
    fn only_wholly_indexed_old_segments_are_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 4096).unwrap();
        let payload = format!("\"{}\"", "y".repeat(1500));
        for _ in 0..8 {
            writer.append(payload.as_bytes()).unwrap();
        }
        writer.sync().unwrap();
        let before = list_segments(tmp.path()).unwrap();
        assert!(before.len() >= 3);
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        // Nothing is old enough yet.
        assert_eq!(
            delete_segments_before(tmp.path(), writer.end(), SystemTime::UNIX_EPOCH).unwrap(),
            0
        );
        // Indexed up to the start of segment 3: only 1 and 2 may go.
        let indexed = Position {
            segment: 3,
            offset: 0,
        };
        assert_eq!(
            delete_segments_before(tmp.path(), indexed, future).unwrap(),
            2
        );
        assert_eq!(list_segments(tmp.path()).unwrap().first(), Some(&3));
        // A reader from the start skips the missing segments.
        let entries = read_all(tmp.path(), Position::START, None);
        assert!(!entries.is_empty());
        assert_eq!(entries[0].position.segment, 3);
    }
    /// The bytes of one valid frame, as the writer lays it out.
    fn frame_bytes(seq: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame_crc(seq, payload).to_le_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        out.extend_from_slice(payload);
        out.push(b'\n');
        out
    }

    #[test]
    fn a_torn_frame_mid_segment_is_skipped_and_a_restart_keeps_the_records_behind_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        for i in 1..=3 {
            writer.append(format!("{i}").as_bytes()).unwrap();
        }
        writer.sync().unwrap();
        drop(writer);
        // A write that failed part-way (a header promising 100 bytes, then 7), followed by
        // three good records written after it.
        let path = segment_path(tmp.path(), 1);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&100u32.to_le_bytes()).unwrap();
        file.write_all(&[1, 2, 3, 4, 5, 6, 7]).unwrap();
        for seq in 4..=6u64 {
            file.write_all(&frame_bytes(seq, format!("{seq}").as_bytes()))
                .unwrap();
        }
        drop(file);
        let file_end = Position {
            segment: 1,
            offset: fs::metadata(&path).unwrap().len(),
        };

        // The indexer's way (up to the durable end) and the unlimited way both resync.
        for limit in [Some(file_end), None] {
            let seqs: Vec<u64> = read_all(tmp.path(), Position::START, limit)
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(seqs, [1, 2, 3, 4, 5, 6], "limit {limit:?}");
        }
        // A restart keeps everything behind the torn bytes and appends after the last one.
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        assert_eq!(writer.next_seq(), 7);
        assert_eq!(writer.end(), file_end);
        writer.append(b"7").unwrap();
        writer.sync().unwrap();
        let entries = read_all(tmp.path(), Position::START, Some(writer.end()));
        assert_eq!(entries.len(), 7);
        assert_eq!(entries[6].payload, b"7");
    }

    #[test]
    fn a_corrupted_frame_mid_segment_does_not_hide_the_frames_after_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        let mut starts = Vec::new();
        for i in 1..=4 {
            starts.push(writer.end().offset as usize);
            writer.append(format!("\"record {i}\"").as_bytes()).unwrap();
        }
        writer.sync().unwrap();
        let end = writer.end();
        drop(writer);
        let path = segment_path(tmp.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes[starts[1] + FRAME_HEADER as usize + 2] ^= 0xFF;
        fs::write(&path, bytes).unwrap();
        let seqs: Vec<u64> = read_all(tmp.path(), Position::START, Some(end))
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 3, 4]);
        // The reader keeps going with records appended later.
        let mut writer = JournalWriter::open(tmp.path(), 1 << 20).unwrap();
        assert_eq!(writer.next_seq(), 5);
        writer.append(b"5").unwrap();
        writer.sync().unwrap();
        assert_eq!(
            read_all(tmp.path(), Position::START, Some(writer.end())).len(),
            4
        );
    }

    #[test]
    fn io_errors_name_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope").join(segment_file_name(1));
        let err = scan_segment(&missing).unwrap_err();
        assert!(
            err.to_string().contains(&*missing.to_string_lossy()),
            "{err}"
        );
    }
}
