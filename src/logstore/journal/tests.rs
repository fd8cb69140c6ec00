//! Journal tests: frames, segments, torn writes, a full disk.

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
