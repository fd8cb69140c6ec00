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
use crate::crc32::{crc32, crc32_update};
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

mod reader;
mod writer;
pub use reader::JournalReader;
pub use writer::{JournalWriter, MAX_UNSYNCED_BYTES};

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
