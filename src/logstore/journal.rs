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
use std::io::{BufReader, BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
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

/// Appends frames to the newest segment and fsyncs on request.
pub struct JournalWriter {
    dir: PathBuf,
    file: BufWriter<File>,
    segment: u64,
    offset: u64,
    segment_bytes: u64,
    next_seq: u64,
    dirty: bool,
}

impl JournalWriter {
    /// Open the journal in `dir` (created if missing) for appending.
    ///
    /// A torn frame at the end of the newest segment (a crash mid-write) is cut off, so new
    /// records follow the last whole one.
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<JournalWriter, LogError> {
        fs::create_dir_all(dir)?;
        let segments = list_segments(dir)?;
        let mut next_seq = 1;
        // The newest segment's valid end; older segments are only read for the last seq.
        let (segment, offset) = match segments.last() {
            None => (1, 0),
            Some(&last) => {
                let (valid_end, last_seq) = scan_segment(&segment_path(dir, last))?;
                let path = segment_path(dir, last);
                let len = fs::metadata(&path)?.len();
                if len > valid_end {
                    tracing::warn!(
                        segment = last,
                        valid_end,
                        file_len = len,
                        "journal has a torn tail; truncating it"
                    );
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(valid_end)?;
                    file.sync_all()?;
                }
                match last_seq {
                    Some(seq) => next_seq = seq + 1,
                    None => {
                        for &older in segments.iter().rev().skip(1) {
                            if let (_, Some(seq)) = scan_segment(&segment_path(dir, older))? {
                                next_seq = seq + 1;
                                break;
                            }
                        }
                    }
                }
                (last, valid_end)
            }
        };
        let file = open_segment_for_append(dir, segment)?;
        Ok(JournalWriter {
            dir: dir.to_path_buf(),
            file: BufWriter::with_capacity(256 * 1024, file),
            segment,
            offset,
            segment_bytes,
            next_seq,
            dirty: false,
        })
    }

    /// Make sure the next record gets a sequence number of at least `seq` (used when the
    /// index has seen more records than the surviving segments show).
    pub fn ensure_next_seq_at_least(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    /// The sequence number the next record gets; `next_seq() - 1` records were written.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The position after the last appended record.
    pub fn end(&self) -> Position {
        Position {
            segment: self.segment,
            offset: self.offset,
        }
    }

    /// Whether records were appended since the last [`JournalWriter::sync`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Append one record (JSON without newlines) and return its sequence number. Durable only
    /// after the next [`JournalWriter::sync`].
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&len| len <= MAX_RECORD_BYTES)
            .ok_or_else(|| {
                LogError::BadRequest(format!("record of {} bytes is too large", payload.len()))
            })?;
        let size = frame_len(payload.len());
        if self.offset > 0 && self.offset + size > self.segment_bytes {
            self.roll()?;
        }
        let seq = self.next_seq;
        let mut header = [0u8; FRAME_HEADER as usize];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&frame_crc(seq, payload).to_le_bytes());
        header[8..].copy_from_slice(&seq.to_le_bytes());
        self.file.write_all(&header)?;
        self.file.write_all(payload)?;
        self.file.write_all(b"\n")?;
        self.offset += size;
        self.next_seq += 1;
        self.dirty = true;
        Ok(seq)
    }

    /// Write buffered frames and fsync the segment.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        self.dirty = false;
        Ok(())
    }

    fn roll(&mut self) -> Result<(), LogError> {
        self.sync()?;
        let next = self.segment + 1;
        let file = open_segment_for_append(&self.dir, next)?;
        // Make the new file's directory entry durable too.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.file = BufWriter::with_capacity(256 * 1024, file);
        self.segment = next;
        self.offset = 0;
        tracing::debug!(segment = next, "journal segment rolled");
        Ok(())
    }
}

fn open_segment_for_append(dir: &Path, number: u64) -> Result<File, LogError> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, number))?;
    file.seek(SeekFrom::End(0))?;
    Ok(file)
}

/// Read a whole segment: the end of its last valid frame and that frame's seq.
fn scan_segment(path: &Path) -> Result<(u64, Option<u64>), LogError> {
    let mut reader = BufReader::with_capacity(1024 * 1024, File::open(path)?);
    let mut offset = 0;
    let mut last_seq = None;
    while let Frame::Record { seq, payload } = read_frame(&mut reader)? {
        offset += frame_len(payload.len());
        last_seq = Some(seq);
    }
    Ok((offset, last_seq))
}

/// Reads records in order from a [`Position`], across segments.
pub struct JournalReader {
    dir: PathBuf,
    position: Position,
    file: Option<BufReader<File>>,
}

impl JournalReader {
    /// A reader that starts at `from` (the first frame at or after it).
    pub fn open(dir: &Path, from: Position) -> JournalReader {
        JournalReader {
            dir: dir.to_path_buf(),
            position: from,
            file: None,
        }
    }

    /// The position of the next frame to read.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The next record, if one is wholly present before `limit` (no limit: up to the end of
    /// the data). `Ok(None)` at the end, including at a torn tail; the same call later picks
    /// up records appended since.
    pub fn next(&mut self, limit: Option<Position>) -> Result<Option<JournalEntry>, LogError> {
        loop {
            if limit.is_some_and(|limit| self.position >= limit) {
                return Ok(None);
            }
            let file = match self.file.as_mut() {
                Some(file) => file,
                None => match File::open(segment_path(&self.dir, self.position.segment)) {
                    Ok(mut file) => {
                        file.seek(SeekFrom::Start(self.position.offset))?;
                        self.file.insert(BufReader::with_capacity(256 * 1024, file))
                    }
                    Err(err) if err.kind() == ErrorKind::NotFound => {
                        if self.skip_to_next_segment(limit)? {
                            continue;
                        }
                        return Ok(None);
                    }
                    Err(err) => return Err(err.into()),
                },
            };
            match read_frame(file)? {
                Frame::Record { seq, payload } => {
                    let position = self.position;
                    self.position.offset += frame_len(payload.len());
                    return Ok(Some(JournalEntry {
                        seq,
                        position,
                        next: self.position,
                        payload,
                    }));
                }
                Frame::End => {
                    // Re-seek next time: part of a frame may have been consumed.
                    self.file = None;
                    if self.skip_to_next_segment(limit)? {
                        continue;
                    }
                    return Ok(None);
                }
                Frame::Corrupt => {
                    self.file = None;
                    if self.skip_to_next_segment(limit)? {
                        tracing::warn!(
                            segment = self.position.segment,
                            "corrupt journal frame; skipped the rest of the segment"
                        );
                        continue;
                    }
                    return Ok(None);
                }
            }
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
}
