//! Reading the journal: frame by frame, resyncing past torn or corrupt frames.

use super::*;

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
