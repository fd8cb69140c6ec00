//! The ledger's files: one per UTC day, `YYYY-MM-DD.spend`, holding that day's events as
//! frames
//!
//! ```text
//! len: u32 LE | crc32(JSON): u32 LE | len bytes of JSON | '\n'
//! ```
//!
//! (the request log's journal framing, without its sequence number). A reader resyncs past
//! bytes that are not a valid frame (a frame's header, JSON and trailing newline must all
//! agree with its CRC), so one damaged frame costs only itself; what follows the last valid
//! frame of a file is its torn tail (a crash mid-write).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::event::SpendEvent;
use super::SpendError;
use crate::cost::period::{day_number_label, parse_day_label, DAY_MS};
use crate::crc32::crc32;

/// The suffix of a ledger file.
pub(crate) const FILE_SUFFIX: &str = ".spend";
/// A frame's JSON longer than this is treated as corruption (events are a few hundred bytes;
/// their strings are capped at [`super::event::MAX_VALUE_BYTES`]).
pub(crate) const MAX_FRAME_BYTES: u32 = 1 << 20;
/// Bytes before a frame's JSON: length and CRC.
const HEADER: usize = 8;
/// Bytes read from a file at a time.
const READ_CHUNK: usize = 256 * 1024;

/// The UTC day number (days since 1970-01-01) of an instant: the file its event goes to.
pub(crate) fn utc_day(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// The path of the file of UTC day `day`.
pub(crate) fn file_path(dir: &Path, day: i64) -> PathBuf {
    dir.join(format!("{}{FILE_SUFFIX}", day_number_label(day)))
}

/// The ledger files in `dir` as (UTC day, path), oldest first; other names are ignored.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<(i64, PathBuf)>, SpendError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(SpendError::io(dir, err)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| SpendError::io(dir, err))?;
        let name = entry.file_name();
        let Some(day) = name
            .to_str()
            .and_then(|name| name.strip_suffix(FILE_SUFFIX))
            .and_then(parse_day_label)
        else {
            continue;
        };
        files.push((day, entry.path()));
    }
    files.sort_unstable();
    Ok(files)
}

/// Appends the frame of `event` to `out`.
pub(crate) fn encode_frame(event: &SpendEvent, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    let json = serde_json::to_vec(event)?;
    let len = u32::try_from(json.len())
        .ok()
        .filter(|&len| len <= MAX_FRAME_BYTES)
        .ok_or_else(|| serde::ser::Error::custom("event too large for a frame"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(())
}

/// One step of a [`FrameScanner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// A valid frame; its JSON is [`FrameScanner::payload`] until the next call.
    Frame,
    /// Bytes `from..to` are not a valid frame, but a valid one starts at `to`.
    Skipped { from: u64, to: u64 },
    /// Bytes from `from` to the end are not a valid frame (a torn tail).
    TornTail { from: u64 },
    /// The end of the data, right after a frame (or at the start).
    End,
}

/// Reads frames from a byte stream through a sliding window, resyncing past damage.
pub(crate) struct FrameScanner<R> {
    reader: R,
    buf: Vec<u8>,
    /// Where unread bytes start in `buf`.
    start: usize,
    /// The stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    payload: Range<usize>,
}

impl<R: Read> FrameScanner<R> {
    /// A scanner at the start of `reader`.
    pub(crate) fn new(reader: R) -> FrameScanner<R> {
        FrameScanner {
            reader,
            buf: Vec::new(),
            start: 0,
            base: 0,
            eof: false,
            payload: 0..0,
        }
    }

    /// The stream offset of the next unread byte (after the last frame returned).
    pub(crate) fn position(&self) -> u64 {
        self.base + self.start as u64
    }

    /// The JSON of the frame last returned.
    pub(crate) fn payload(&self) -> &[u8] {
        self.buf.get(self.payload.clone()).unwrap_or_default()
    }

    fn available(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Makes at least `need` unread bytes available; `false` when the stream ends first.
    fn fill(&mut self, need: usize) -> std::io::Result<bool> {
        while self.available() < need && !self.eof {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.base += self.start as u64;
                self.start = 0;
                self.payload = 0..0;
            }
            let old = self.buf.len();
            self.buf
                .resize(old + READ_CHUNK.max(need - self.available()), 0);
            let read = loop {
                match self
                    .reader
                    .read(self.buf.get_mut(old..).unwrap_or_default())
                {
                    Ok(read) => break read,
                    Err(err) if err.kind() == ErrorKind::Interrupted => {}
                    Err(err) => {
                        self.buf.truncate(old);
                        return Err(err);
                    }
                }
            };
            self.buf.truncate(old + read);
            self.eof = read == 0;
        }
        Ok(self.available() >= need)
    }

    /// The length of the valid frame starting at the next unread byte, if there is one.
    fn frame_here(&mut self) -> std::io::Result<Option<usize>> {
        if !self.fill(HEADER)? {
            return Ok(None);
        }
        let Some((len, crc)) = self
            .buf
            .get(self.start..self.start + HEADER)
            .and_then(|header| header.split_first_chunk::<4>())
            .and_then(|(len, rest)| Some((*len, *rest.first_chunk::<4>()?)))
        else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(len);
        if len > MAX_FRAME_BYTES {
            return Ok(None);
        }
        let total = HEADER + len as usize + 1;
        if !self.fill(total)? {
            return Ok(None);
        }
        let json = self.start + HEADER..self.start + total - 1;
        if self.buf.get(json.end) != Some(&b'\n') {
            return Ok(None);
        }
        let valid = self
            .buf
            .get(json.clone())
            .is_some_and(|json| crc32(json) == u32::from_le_bytes(crc));
        Ok(valid.then_some(total))
    }

    /// The next step: a frame, a damaged range skipped, the torn tail, or the end.
    pub(crate) fn next_item(&mut self) -> std::io::Result<Item> {
        if !self.fill(1)? {
            return Ok(Item::End);
        }
        if let Some(total) = self.frame_here()? {
            self.payload = self.start + HEADER..self.start + total - 1;
            self.start += total;
            return Ok(Item::Frame);
        }
        let from = self.position();
        loop {
            self.start += 1;
            if !self.fill(1)? {
                return Ok(Item::TornTail { from });
            }
            if self.frame_here()?.is_some() {
                return Ok(Item::Skipped {
                    from,
                    to: self.position(),
                });
            }
        }
    }
}

/// What reading one file found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileScan {
    /// Events read.
    pub events: u64,
    /// Damaged ranges skipped and frames whose JSON is not an event.
    pub corrupt: u64,
    /// The end of the last whole frame.
    pub valid_end: u64,
    /// Where the torn tail starts, if the file has one.
    pub torn_tail: Option<u64>,
    /// The scan stopped early because the callback asked it to.
    pub stopped: bool,
}

/// Reads the events of a stream, calling `on_event` for each until it answers `false`.
pub(crate) fn scan_stream(
    reader: impl Read,
    on_event: &mut dyn FnMut(SpendEvent) -> bool,
) -> std::io::Result<FileScan> {
    let mut scanner = FrameScanner::new(reader);
    let mut scan = FileScan::default();
    loop {
        match scanner.next_item()? {
            Item::Frame => {
                scan.valid_end = scanner.position();
                match serde_json::from_slice::<SpendEvent>(scanner.payload()) {
                    Ok(event) => {
                        scan.events += 1;
                        if !on_event(event) {
                            scan.stopped = true;
                            return Ok(scan);
                        }
                    }
                    Err(_) => scan.corrupt += 1,
                }
            }
            Item::Skipped { .. } => scan.corrupt += 1,
            Item::TornTail { from } => {
                scan.torn_tail = Some(from);
                return Ok(scan);
            }
            Item::End => return Ok(scan),
        }
    }
}

/// Reads the events of the file at `path`, its first `limit` bytes only when given.
pub(crate) fn scan_file(
    path: &Path,
    limit: Option<u64>,
    on_event: &mut dyn FnMut(SpendEvent) -> bool,
) -> Result<FileScan, SpendError> {
    let file = File::open(path).map_err(|err| SpendError::io(path, err))?;
    let scan = match limit {
        Some(limit) => scan_stream(file.take(limit), on_event),
        None => scan_stream(file, on_event),
    };
    scan.map_err(|err| SpendError::io(path, err))
}

/// Cuts the file at `path` to `len` bytes and makes that durable.
pub(crate) fn truncate_file(path: &Path, len: u64) -> Result<(), SpendError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|err| SpendError::io(path, err))?;
    file.set_len(len).map_err(|err| SpendError::io(path, err))?;
    file.sync_all().map_err(|err| SpendError::io(path, err))
}

/// Makes the directory's entries (created or deleted files) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What the writer holds for one day: read the file up to `limit` (what is durable; the
/// writer may append past it meanwhile), then the frames in `unsynced`.
#[derive(Debug, Default, Clone)]
pub(crate) struct PendingFile {
    /// Bytes of the file that are durable.
    pub limit: u64,
    /// Frames appended but not yet durable, in order.
    pub unsynced: Vec<u8>,
}

/// The writer's not-yet-durable frames by UTC day, taken in channel order so that a scan
/// sees every event recorded before it started, exactly once.
pub(crate) type Snapshot = BTreeMap<i64, PendingFile>;

/// Reads every event in the files of UTC days `from_day..=to_day` (and the writer's pending
/// frames from `snapshot`), oldest file first, until `on_event` answers `false`. A file
/// deleted meanwhile (retention) is skipped. Returns the totals over all files.
pub(crate) fn scan_days(
    dir: &Path,
    from_day: i64,
    to_day: i64,
    snapshot: &Snapshot,
    on_event: &mut dyn FnMut(SpendEvent) -> bool,
) -> Result<FileScan, SpendError> {
    let mut days: BTreeMap<i64, Option<PathBuf>> = list_files(dir)?
        .into_iter()
        .filter(|(day, _)| (from_day..=to_day).contains(day))
        .map(|(day, path)| (day, Some(path)))
        .collect();
    for &day in snapshot.keys() {
        if (from_day..=to_day).contains(&day) {
            days.entry(day).or_insert(None);
        }
    }
    let mut total = FileScan::default();
    for (day, path) in days {
        let pending = snapshot.get(&day);
        let mut scans = Vec::with_capacity(2);
        if let Some(path) = path {
            match scan_file(&path, pending.map(|p| p.limit), on_event) {
                Ok(scan) => scans.push(scan),
                Err(SpendError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
        if let Some(pending) = pending.filter(|p| !p.unsynced.is_empty()) {
            let scan = scan_stream(pending.unsynced.as_slice(), on_event)
                .map_err(|err| SpendError::io(dir, err))?;
            scans.push(scan);
        }
        for scan in scans {
            total.events += scan.events;
            total.corrupt += scan.corrupt + u64::from(scan.torn_tail.is_some());
            if scan.stopped {
                total.stopped = true;
                return Ok(total);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn event(n: u64) -> SpendEvent {
        SpendEvent {
            ts_ms: 1_700_000_000_000 + n as i64,
            request_id: format!("req-{n}"),
            user: "alice".into(),
            team: None,
            tier: None,
            feature: Some("chat".into()),
            key: "k1".into(),
            model: "gpt-4o".into(),
            provider: "openai".into(),
            input_tokens: n,
            cached_input_tokens: 0,
            cache_write_input_tokens: 0,
            output_tokens: 2 * n,
            cost: Some(crate::cost::Usd::from_nanos(n as i64 * 1000)),
        }
    }

    fn frames(range: Range<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        for n in range {
            encode_frame(&event(n), &mut out).unwrap();
        }
        out
    }

    fn read_all(bytes: &[u8]) -> (Vec<SpendEvent>, FileScan) {
        let mut events = Vec::new();
        let scan = scan_stream(bytes, &mut |event| {
            events.push(event);
            true
        })
        .unwrap();
        (events, scan)
    }

    #[test]
    fn frames_read_back_in_order_with_the_valid_end_at_the_last_byte() {
        let bytes = frames(0..50);
        let (events, scan) = read_all(&bytes);
        assert_eq!(events, (0..50).map(event).collect::<Vec<_>>());
        assert_eq!(scan.valid_end, bytes.len() as u64);
        assert_eq!((scan.corrupt, scan.torn_tail), (0, None));
    }

    #[test]
    fn cost_is_stored_as_integer_nanos_and_unpriced_as_null() {
        let mut priced = event(3);
        priced.cost = Some(crate::cost::Usd::from_nanos(123_456_789_012));
        let json = serde_json::to_string(&priced).unwrap();
        assert!(json.contains("\"cost_nanos\":123456789012"), "{json}");
        priced.cost = None;
        let json = serde_json::to_string(&priced).unwrap();
        assert!(json.contains("\"cost_nanos\":null"), "{json}");
        assert!(
            !json.contains("team"),
            "absent optionals are omitted: {json}"
        );
        let back: SpendEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(back, priced);
    }

    #[test]
    fn every_cut_of_the_last_frame_is_a_torn_tail_after_the_whole_frames() {
        let whole = frames(0..3);
        let last_start = frames(0..2).len();
        for cut in last_start + 1..whole.len() {
            let (events, scan) = read_all(&whole[..cut]);
            assert_eq!(events.len(), 2, "cut at {cut}");
            assert_eq!(scan.valid_end, last_start as u64);
            assert_eq!(scan.torn_tail, Some(last_start as u64));
        }
    }

    #[test]
    fn a_damaged_frame_in_the_middle_is_skipped_and_the_rest_kept() {
        let mut bytes = frames(0..10);
        let third = frames(0..3).len();
        // Flip a byte inside the fourth frame's JSON, then its length field.
        bytes[third + 20] ^= 0x55;
        let (events, scan) = read_all(&bytes);
        assert_eq!(events.len(), 9);
        assert!(!events.iter().any(|e| e.request_id == "req-3"));
        assert_eq!((scan.corrupt, scan.torn_tail), (1, None));
        let mut bytes = frames(0..10);
        bytes[third + 1] = 0x7f;
        let (events, scan) = read_all(&bytes);
        assert_eq!(events.len(), 9);
        assert_eq!(scan.corrupt, 1);
    }

    #[test]
    fn garbage_between_frames_is_skipped_even_without_a_newline_before_the_next_frame() {
        let mut bytes = frames(0..2);
        bytes.extend_from_slice(&[0x10, 0, 0, 0, 1, 2, 3]);
        bytes.extend(frames(2..4));
        let (events, scan) = read_all(&bytes);
        assert_eq!(events.len(), 4);
        assert_eq!(scan.corrupt, 1);
    }

    #[test]
    fn a_scanner_reads_frames_larger_than_its_read_chunk() {
        let mut big = event(1);
        big.request_id = "x".repeat(READ_CHUNK + 10);
        let mut bytes = Vec::new();
        encode_frame(&big, &mut bytes).unwrap();
        encode_frame(&event(2), &mut bytes).unwrap();
        let (events, _) = read_all(&bytes);
        assert_eq!(events, vec![big, event(2)]);
    }

    #[test]
    fn file_names_are_utc_dates_and_other_names_are_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "2024-02-29.spend",
            "2024-02-30.spend",
            "notes.txt",
            "2023-12-31.spend",
        ] {
            fs::write(tmp.path().join(name), b"").unwrap();
        }
        let days: Vec<String> = list_files(tmp.path())
            .unwrap()
            .into_iter()
            .map(|(day, _)| day_number_label(day))
            .collect();
        assert_eq!(days, ["2023-12-31", "2024-02-29"]);
        assert_eq!(
            file_path(tmp.path(), utc_day(1_709_164_800_000)),
            tmp.path().join("2024-02-29.spend")
        );
    }
}
