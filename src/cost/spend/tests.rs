//! Ledger tests with real files in temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use super::*;
use crate::cost::period::DAY_MS;

mod report_tests;

/// 2024-05-17T12:00:00Z.
pub(super) const NOON: i64 = 1_715_947_200_000;

pub(super) fn config(dir: &Path) -> CostConfig {
    CostConfig {
        ledger_dir: dir.to_path_buf(),
        retention_days: 0,
        fsync_interval_ms: 5,
        ..CostConfig::default()
    }
}

pub(super) fn event(ts_ms: i64, user: &str, model: &str, nanos: Option<i64>) -> SpendEvent {
    SpendEvent {
        ts_ms,
        request_id: format!("req-{ts_ms}-{user}"),
        user: user.into(),
        team: Some("core".into()),
        tier: None,
        feature: Some("chat".into()),
        key: format!("key-{user}"),
        model: model.into(),
        provider: "openai".into(),
        input_tokens: 100,
        cached_input_tokens: 10,
        cache_write_input_tokens: 0,
        output_tokens: 20,
        cost: nanos.map(Usd::from_nanos),
    }
}

fn open(dir: &Path) -> SpendLedger {
    SpendLedger::open_with(&config(dir), SpendLimits::default(), NOON).unwrap()
}

fn all_usage(ledger: &SpendLedger, now_ms: i64) -> Vec<SpendUsage> {
    let mut out = Vec::new();
    for user in ["alice", "bob"] {
        for period in [BudgetPeriod::Day, BudgetPeriod::Month, BudgetPeriod::Total] {
            out.push(ledger.usage(Dimension::User, user, period, now_ms));
        }
    }
    for model in ["gpt-4o", "mystery"] {
        out.push(ledger.usage(Dimension::Model, model, BudgetPeriod::Day, now_ms));
    }
    out.push(ledger.usage(Dimension::Team, "core", BudgetPeriod::Month, now_ms));
    out
}

fn newest_file(dir: &Path) -> std::path::PathBuf {
    journal::list_files(dir).unwrap().pop().unwrap().1
}

#[tokio::test]
async fn recorded_spend_is_visible_at_once_and_equal_after_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    ledger
        .record(event(NOON, "alice", "gpt-4o", Some(1_500)))
        .await;
    assert_eq!(
        ledger.spent(Dimension::User, "alice", BudgetPeriod::Day, NOON),
        Usd(1_500),
        "a budget check right after recording sees it"
    );
    ledger
        .try_record(event(NOON + 1, "alice", "gpt-4o", Some(500)))
        .unwrap();
    ledger
        .record(event(NOON - DAY_MS, "bob", "gpt-4o", Some(7)))
        .await;
    ledger.record(event(NOON + 2, "bob", "mystery", None)).await;
    let before = all_usage(&ledger, NOON);
    let alice_total = ledger.usage(Dimension::User, "alice", BudgetPeriod::Total, NOON);
    assert_eq!((alice_total.requests, alice_total.cost), (2, Usd(2_000)));
    ledger.shutdown().await;
    ledger.shutdown().await;
    assert_eq!(ledger.stats().pending, 0);
    assert_eq!(ledger.stats().dropped, 0);
    drop(ledger);

    let reopened = open(tmp.path());
    assert_eq!(all_usage(&reopened, NOON), before);
    assert_eq!(reopened.stats().replayed_events, 4);
    let bob = reopened.usage(Dimension::User, "bob", BudgetPeriod::Day, NOON);
    assert_eq!(
        (bob.requests, bob.unpriced_requests, bob.cost),
        (1, 1, Usd(0))
    );
    assert_eq!(
        reopened.spent(Dimension::User, "bob", BudgetPeriod::Day, NOON - DAY_MS),
        Usd(7)
    );
    assert_eq!(
        journal::list_files(tmp.path()).unwrap().len(),
        2,
        "one file per UTC day"
    );
}

#[tokio::test]
async fn a_torn_tail_is_truncated_and_the_whole_frames_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    for i in 0..5 {
        ledger
            .record(event(NOON + i, "alice", "gpt-4o", Some(10)))
            .await;
    }
    ledger.shutdown().await;
    drop(ledger);
    let path = newest_file(tmp.path());
    let whole = fs::metadata(&path).unwrap().len();
    // Half of a sixth frame: a crash mid-write.
    let mut torn = Vec::new();
    journal::encode_frame(&event(NOON + 9, "alice", "gpt-4o", Some(10)), &mut torn).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(&torn[..torn.len() / 2]);
    fs::write(&path, &bytes).unwrap();

    let reopened = open(tmp.path());
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        whole,
        "torn tail cut off"
    );
    assert_eq!(reopened.stats().truncated_bytes, (torn.len() / 2) as u64);
    let usage = reopened.usage(Dimension::User, "alice", BudgetPeriod::Total, NOON);
    assert_eq!((usage.requests, usage.cost), (5, Usd(50)));
    // New events follow the last whole frame and read back.
    reopened
        .record(event(NOON + 10, "alice", "gpt-4o", Some(10)))
        .await;
    reopened.shutdown().await;
    drop(reopened);
    let again = open(tmp.path());
    assert_eq!(again.stats().replayed_events, 6);
    assert_eq!(again.stats().corrupt_frames, 0);
}

#[tokio::test]
async fn a_corrupt_frame_in_an_older_file_is_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    for i in 0..4 {
        ledger
            .record(event(NOON - DAY_MS + i, "bob", "gpt-4o", Some(1)))
            .await;
    }
    ledger.record(event(NOON, "bob", "gpt-4o", Some(1))).await;
    ledger.shutdown().await;
    drop(ledger);
    let (_, older) = journal::list_files(tmp.path()).unwrap().remove(0);
    let mut bytes = fs::read(&older).unwrap();
    let frame = bytes.len() / 4;
    bytes[frame + frame / 2] ^= 0xff; // inside the second frame
    let len = bytes.len();
    bytes[len - 3] ^= 0xff; // inside the last frame: not the newest file, so not cut
    fs::write(&older, &bytes).unwrap();

    let reopened = open(tmp.path());
    assert_eq!(reopened.stats().corrupt_frames, 2);
    assert_eq!(
        fs::metadata(&older).unwrap().len(),
        len as u64,
        "older files are left alone"
    );
    let usage = reopened.usage(Dimension::User, "bob", BudgetPeriod::Total, NOON);
    assert_eq!(usage.requests, 3);
}

#[tokio::test]
async fn flushed_events_survive_a_crash_without_shutdown() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    for i in 0..100 {
        ledger
            .record(event(NOON + i, "alice", "gpt-4o", Some(3)))
            .await;
    }
    ledger.flush().await.unwrap();
    assert_eq!(ledger.stats().pending, 0);
    for i in 100..110 {
        ledger
            .record(event(NOON + i, "alice", "gpt-4o", Some(3)))
            .await;
    }
    ledger.kill().await;
    drop(ledger);

    let reopened = open(tmp.path());
    let usage = reopened.usage(Dimension::User, "alice", BudgetPeriod::Day, NOON);
    assert!(
        (100..=110).contains(&usage.requests),
        "every flushed event is back: {}",
        usage.requests
    );
    assert_eq!(usage.cost, Usd(3 * usage.requests as i64));
}

#[tokio::test]
async fn replay_sees_events_not_yet_flushed_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CostConfig {
        fsync_interval_ms: CostConfig::MAX_FSYNC_INTERVAL_MS,
        ..config(tmp.path())
    };
    let ledger = SpendLedger::open_with(&cfg, SpendLimits::default(), NOON).unwrap();
    ledger
        .record(event(NOON - DAY_MS, "alice", "gpt-4o", Some(1)))
        .await;
    ledger.flush().await.unwrap();
    // Not yet written: they wait in the writer's buffer for the next fsync.
    ledger.record(event(NOON, "alice", "gpt-4o", Some(2))).await;
    ledger
        .record(event(NOON + 1, "bob", "gpt-4o", Some(4)))
        .await;
    let replay = |since_ms| {
        let ledger = ledger.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            ledger.replay(since_ms, |e| seen.push(e.cost)).unwrap();
            seen
        })
    };
    assert_eq!(
        replay(i64::MIN).await.unwrap(),
        [Some(Usd(1)), Some(Usd(2)), Some(Usd(4))]
    );
    assert_eq!(replay(NOON).await.unwrap().len(), 2);
    ledger.flush().await.unwrap();
    assert_eq!(
        replay(i64::MIN).await.unwrap().len(),
        3,
        "no duplicates once durable"
    );
    ledger.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_old_files_and_their_spend_from_the_total() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CostConfig {
        retention_days: 2,
        ..config(tmp.path())
    };
    let ledger = SpendLedger::open_with(&cfg, SpendLimits::default(), NOON).unwrap();
    for days_ago in 0..5 {
        ledger
            .record(event(NOON - days_ago * DAY_MS, "alice", "gpt-4o", Some(10)))
            .await;
    }
    ledger.flush().await.unwrap();
    assert_eq!(journal::list_files(tmp.path()).unwrap().len(), 5);
    assert_eq!(ledger.run_retention(NOON).unwrap(), 2);
    let days: Vec<i64> = journal::list_files(tmp.path())
        .unwrap()
        .into_iter()
        .map(|(day, _)| day)
        .collect();
    let today = journal::utc_day(NOON);
    assert_eq!(days, [today - 2, today - 1, today]);
    let total = ledger.usage(Dimension::User, "alice", BudgetPeriod::Total, NOON);
    assert_eq!((total.requests, total.cost), (3, Usd(30)));
    assert_eq!(ledger.run_retention(NOON).unwrap(), 0);
    ledger.shutdown().await;
    drop(ledger);
    let kept_forever = open(tmp.path());
    assert_eq!(kept_forever.run_retention(NOON + 1000 * DAY_MS).unwrap(), 0);
    // Open applies retention too.
    let cfg = CostConfig {
        retention_days: 1,
        ..config(tmp.path())
    };
    drop(kept_forever);
    let reopened = SpendLedger::open_with(&cfg, SpendLimits::default(), NOON).unwrap();
    assert_eq!(journal::list_files(tmp.path()).unwrap().len(), 2);
    assert_eq!(reopened.stats().replayed_events, 2);
}

#[tokio::test]
async fn days_and_months_roll_over_at_the_configured_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CostConfig {
        timezone: "+02:00".into(),
        ..config(tmp.path())
    };
    let ledger = SpendLedger::open_with(&cfg, SpendLimits::default(), NOON).unwrap();
    // 2024-05-31T21:30Z is 23:30 on the 31st at +02:00; 22:30Z is 00:30 on June 1st.
    let before = 1_717_191_000_000;
    let after = before + 3_600_000;
    ledger
        .record(event(before, "alice", "gpt-4o", Some(1)))
        .await;
    ledger
        .record(event(after, "alice", "gpt-4o", Some(10)))
        .await;
    let spent = |period, now| ledger.spent(Dimension::User, "alice", period, now);
    assert_eq!(spent(BudgetPeriod::Day, before), Usd(1));
    assert_eq!(spent(BudgetPeriod::Day, after), Usd(10));
    assert_eq!(spent(BudgetPeriod::Month, before), Usd(1));
    assert_eq!(spent(BudgetPeriod::Month, after), Usd(10));
    assert_eq!(spent(BudgetPeriod::Total, after), Usd(11));
    ledger.shutdown().await;
    // Both are on 2024-05-31 in UTC: one file.
    assert_eq!(journal::list_files(tmp.path()).unwrap().len(), 1);
}

#[tokio::test]
async fn a_full_channel_gives_the_event_back_and_record_waits_for_room() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = SpendLimits {
        channel_capacity: 2,
        ..SpendLimits::default()
    };
    let ledger = SpendLedger::open_with(&config(tmp.path()), limits, NOON).unwrap();
    let (release, stalled) = std::sync::mpsc::channel::<()>();
    ledger.stall_writer(stalled).await;
    let mut accepted = 0;
    let refused = loop {
        match ledger.try_record(event(NOON + accepted, "alice", "gpt-4o", Some(1))) {
            Ok(()) => accepted += 1,
            Err(event) => break event,
        }
        assert!(accepted <= 2, "the channel holds two events");
    };
    assert_eq!(accepted, 2);
    assert_eq!(
        refused.ts_ms,
        NOON + accepted,
        "the refused event comes back whole"
    );
    assert_eq!(
        ledger.spent(Dimension::User, "alice", BudgetPeriod::Day, NOON),
        Usd(accepted),
        "a refused event is not counted"
    );
    let waiting = {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.record(refused).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "record waits while the channel is full"
    );
    drop(release);
    waiting.await.unwrap();
    assert_eq!(ledger.stats().backpressure_waits, 1);
    ledger.flush().await.unwrap();
    let stats = ledger.stats();
    assert_eq!(
        (stats.events, stats.pending, stats.dropped),
        (accepted as u64 + 1, 0, 0)
    );
    ledger.shutdown().await;
}

#[test]
fn an_unusable_directory_fails_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    fs::write(&file, b"x").unwrap();
    let err = SpendLedger::open(&config(&file.join("spend"))).unwrap_err();
    assert!(matches!(err, SpendError::Io { .. }), "{err}");
    assert!(err.to_string().contains("plain-file"), "{err}");
    let bad_zone = CostConfig {
        timezone: "Mars/Olympus".into(),
        ..config(tmp.path())
    };
    assert!(matches!(
        SpendLedger::open(&bad_zone),
        Err(SpendError::Config(_))
    ));
}

#[test]
fn a_read_only_directory_fails_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ro");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    if fs::write(dir.join("probe"), b"").is_ok() {
        // Running as root: permissions do not apply; the failing-write test covers writes.
        return;
    }
    let err = SpendLedger::open(&config(&dir)).unwrap_err();
    assert!(matches!(err, SpendError::Io { .. }), "{err}");
}

#[tokio::test]
async fn a_write_error_after_open_is_counted_and_retried_without_losing_events() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = SpendLimits {
        max_pending_bytes: 1,
        ..SpendLimits::default()
    };
    let ledger = SpendLedger::open_with(&config(tmp.path()), limits, NOON).unwrap();
    // Today's file is a link to a device that is always full.
    let path = journal::file_path(tmp.path(), journal::utc_day(NOON));
    std::os::unix::fs::symlink("/dev/full", &path).unwrap();
    ledger.record(event(NOON, "alice", "gpt-4o", Some(5))).await;
    assert!(
        ledger.flush().await.is_err(),
        "flush reports the failing write"
    );
    let stats = ledger.stats();
    assert!(stats.write_errors >= 1 && stats.failing, "{stats:?}");
    assert_eq!(stats.pending, 1);
    // Past the kept-bytes bound: try_record refuses, record waits.
    let refused = ledger
        .try_record(event(NOON + 1, "alice", "gpt-4o", Some(5)))
        .unwrap_err();
    let waiting = {
        let ledger = ledger.clone();
        tokio::spawn(async move { ledger.record(refused).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "record waits while writes fail past the bound"
    );
    assert!(ledger.stats().write_errors >= 2, "the write is retried");
    // The disk recovers.
    fs::remove_file(&path).unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .unwrap()
        .unwrap();
    ledger.flush().await.unwrap();
    let stats = ledger.stats();
    assert_eq!((stats.pending, stats.dropped, stats.failing), (0, 0, false));
    assert!(stats.backpressure_waits >= 1);
    ledger.shutdown().await;
    drop(ledger);
    let reopened = open(tmp.path());
    let usage = reopened.usage(Dimension::User, "alice", BudgetPeriod::Day, NOON);
    assert_eq!((usage.requests, usage.cost), (2, Usd(10)));
    assert_eq!(reopened.stats().corrupt_frames, 0);
}

#[tokio::test]
async fn events_after_shutdown_are_dropped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    ledger.shutdown().await;
    ledger.record(event(NOON, "alice", "gpt-4o", Some(1))).await;
    assert!(ledger
        .try_record(event(NOON, "alice", "gpt-4o", Some(1)))
        .is_ok());
    assert_eq!(ledger.stats().dropped, 2);
    assert_eq!(
        ledger.spent(Dimension::User, "alice", BudgetPeriod::Day, NOON),
        Usd(0)
    );
}

#[test]
fn dropping_the_last_handle_flushes_without_a_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    ledger
        .try_record(event(NOON, "alice", "gpt-4o", Some(9)))
        .unwrap();
    let clone = ledger.clone();
    drop(ledger);
    drop(clone);
    let reopened = open(tmp.path());
    assert_eq!(
        reopened.spent(Dimension::User, "alice", BudgetPeriod::Day, NOON),
        Usd(9)
    );
}

#[test]
fn overlong_values_are_cut_and_timestamps_clamped_when_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    let max = event::MAX_VALUE_BYTES;
    let mut long = event(-5, &"é".repeat(max), "gpt-4o", Some(1));
    long.team = Some("t".repeat(max + 7));
    ledger.try_record(long).unwrap();
    let mut seen = Vec::new();
    ledger.replay(i64::MIN, |e| seen.push(e.clone())).unwrap();
    let stored = seen.pop().unwrap();
    assert_eq!(stored.ts_ms, 0);
    assert_eq!(stored.user.len(), max);
    assert_eq!(stored.team.as_deref().map(str::len), Some(max));
}
