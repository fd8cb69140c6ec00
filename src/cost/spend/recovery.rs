//! Opening a ledger directory: replaying its files into the sums (cutting the newest
//! file's torn tail), checking that it is writable, and retention.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{PoisonError, RwLock};

use super::aggregate::Aggregates;
use super::event::{Dimension, SpendUsage};
use super::{journal, Shared, SpendError};

/// The first UTC day kept when `retention_days` are kept before `now_ms`'s day
/// (`i64::MIN`: keep everything).
pub(super) fn retention_cutoff(now_ms: i64, retention_days: u32) -> i64 {
    if retention_days == 0 {
        i64::MIN
    } else {
        journal::utc_day(now_ms) - i64::from(retention_days)
    }
}

/// Deletes the files of days before `cutoff`, first taking their events out of the total
/// sums when given. Returns how many were deleted.
pub(super) fn delete_before(
    dir: &Path,
    cutoff: i64,
    aggregates: Option<&RwLock<Aggregates>>,
) -> Result<usize, SpendError> {
    let mut deleted = 0;
    for (day, path) in journal::list_files(dir)? {
        if day >= cutoff {
            break;
        }
        if let Some(aggregates) = aggregates {
            let mut sums: HashMap<(Dimension, String), SpendUsage> = HashMap::new();
            journal::scan_file(&path, None, &mut |event| {
                for dim in Dimension::ALL {
                    if let Some(value) = event.value(dim) {
                        sums.entry((dim, value.to_owned())).or_default().add(&event);
                    }
                }
                true
            })?;
            aggregates
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .subtract_total(&sums);
        }
        match std::fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(SpendError::io(&path, err)),
        }
    }
    if deleted > 0 {
        journal::sync_dir(dir).map_err(|err| SpendError::io(dir, err))?;
        tracing::info!(dir = %dir.display(), files = deleted, "spend ledger retention deleted files");
    }
    Ok(deleted)
}

/// Replays every file into `aggregates`: the newest file's torn tail is cut, damaged frames
/// elsewhere are skipped and counted (an older file's torn tail is cut only if the writer
/// appends to it). Returns the events replayed and each file's durable end for the writer.
pub(super) fn replay_at_open(
    dir: &Path,
    shared: &Shared,
    aggregates: &mut Aggregates,
) -> Result<(u64, HashMap<i64, u64>), SpendError> {
    let files = journal::list_files(dir)?;
    let newest = files.last().map(|(day, _)| *day);
    let mut replayed = 0;
    let mut known_ends = HashMap::new();
    for (day, path) in &files {
        let scan = journal::scan_file(path, None, &mut |mut event| {
            event.normalize();
            aggregates.add(&event);
            true
        })?;
        replayed += scan.events;
        let mut corrupt = scan.corrupt;
        match scan.torn_tail {
            Some(from) if Some(*day) == newest => {
                let len = std::fs::metadata(path)
                    .map_err(|err| SpendError::io(path, err))?
                    .len();
                tracing::warn!(
                    path = %path.display(),
                    valid_end = from,
                    file_len = len,
                    "spend ledger has a torn tail; truncating it"
                );
                journal::truncate_file(path, from)?;
                shared
                    .truncated_bytes
                    .fetch_add(len.saturating_sub(from), Ordering::Relaxed);
                known_ends.insert(*day, from);
            }
            Some(_) => {
                corrupt += 1;
                known_ends.insert(*day, scan.valid_end);
            }
            None => {
                known_ends.insert(*day, scan.valid_end);
            }
        }
        if corrupt > 0 {
            tracing::warn!(
                path = %path.display(),
                corrupt,
                "spend ledger file has damaged frames; they are skipped"
            );
            shared.corrupt_frames.fetch_add(corrupt, Ordering::Relaxed);
        }
    }
    Ok((replayed, known_ends))
}

/// Fails when files cannot be created in `dir`.
pub(super) fn check_writable(dir: &Path) -> Result<(), SpendError> {
    let probe = dir.join(".write-probe");
    std::fs::File::create(&probe).map_err(|err| SpendError::io(&probe, err))?;
    std::fs::remove_file(&probe).map_err(|err| SpendError::io(&probe, err))
}
