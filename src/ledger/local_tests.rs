#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::time::advance;

use super::*;

fn tpm(tokens: u64) -> Limit {
    Limit {
        tokens_per_minute: Some(tokens),
        ..Limit::default()
    }
}

fn demand(tokens: u64) -> Demand {
    Demand { tokens }
}

fn denied(result: Result<Reservation, LedgerError>) -> Denied {
    match result {
        Err(LedgerError::Denied(denied)) => denied,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn remaining(ledger: &LocalLedger, key: &str, window: LimitWindow) -> i64 {
    let status = ledger.status_now(&BucketKey::from(key)).unwrap();
    status
        .windows
        .iter()
        .find(|w| w.window == window)
        .unwrap()
        .remaining
}

#[tokio::test(start_paused = true)]
async fn limit_of_n_tokens_admits_requests_totalling_n_and_refuses_n_plus_one() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(1000))];
    let first = ledger.reserve_now(&user, demand(600)).unwrap();
    let second = ledger.reserve_now(&user, demand(400)).unwrap();
    let refused = denied(ledger.reserve_now(&user, demand(1)));
    assert_eq!(refused.key, BucketKey::from("user:alice"));
    assert_eq!(refused.window, LimitWindow::TokensPerMinute);
    assert_eq!(refused.retry_after, Some(Duration::from_millis(60)));
    ledger.settle_now(first, demand(600));
    ledger.settle_now(second, demand(400));
}

#[tokio::test(start_paused = true)]
async fn limit_of_n_requests_admits_n_and_refuses_n_plus_one() {
    let ledger = LocalLedger::default();
    let limit = Limit {
        requests_per_minute: Some(3),
        ..Limit::default()
    };
    let feature = [BucketLimit::new("feature:batch", limit)];
    for _ in 0..3 {
        let r = ledger.reserve_now(&feature, demand(10_000)).unwrap();
        ledger.settle_now(r, demand(10_000));
    }
    let refused = denied(ledger.reserve_now(&feature, demand(1)));
    assert_eq!(refused.window, LimitWindow::RequestsPerMinute);
    assert_eq!(refused.retry_after, Some(Duration::from_secs(20)));
}

#[tokio::test(start_paused = true)]
async fn refill_is_smooth_half_back_after_thirty_seconds_and_no_burst_at_the_minute() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(1000))];
    let r = ledger.reserve_now(&user, demand(1000)).unwrap();
    ledger.settle_now(r, demand(1000));
    advance(Duration::from_secs(30)).await;
    assert_eq!(
        remaining(&ledger, "user:alice", LimitWindow::TokensPerMinute),
        500
    );
    let r = ledger.reserve_now(&user, demand(500)).unwrap();
    ledger.settle_now(r, demand(500));
    // At the minute boundary only what refilled since is back, not a whole new window.
    advance(Duration::from_secs(30)).await;
    assert_eq!(
        remaining(&ledger, "user:alice", LimitWindow::TokensPerMinute),
        500
    );
    assert!(ledger.reserve_now(&user, demand(501)).is_err());
}

#[tokio::test(start_paused = true)]
async fn reserve_is_all_or_none_across_buckets() {
    let ledger = LocalLedger::default();
    let both = [
        BucketLimit::new("user:alice", tpm(1000)),
        BucketLimit::new("feature:chat", tpm(100)),
    ];
    let refused = denied(ledger.reserve_now(&both, demand(500)));
    assert_eq!(refused.key, BucketKey::from("feature:chat"));
    assert_eq!(refused.retry_after, None, "500 can never fit in 100");
    // Nothing was taken from the bucket that would have passed.
    let alice = [BucketLimit::new("user:alice", tpm(1000))];
    let r = ledger.reserve_now(&alice, demand(1000)).unwrap();
    ledger.settle_now(r, demand(1000));

    // The second bucket drained: a request on both is refused, and the first keeps its room.
    advance(Duration::from_secs(60)).await;
    let chat = [BucketLimit::new("feature:chat", tpm(100))];
    let r = ledger.reserve_now(&chat, demand(100)).unwrap();
    ledger.settle_now(r, demand(100));
    let refused = denied(ledger.reserve_now(&both, demand(50)));
    assert_eq!(refused.key, BucketKey::from("feature:chat"));
    assert_eq!(
        remaining(&ledger, "user:alice", LimitWindow::TokensPerMinute),
        1000
    );
}

#[tokio::test(start_paused = true)]
async fn denial_names_the_first_limit_and_waits_for_the_longest() {
    let ledger = LocalLedger::default();
    let limits = [
        BucketLimit::new("user:alice", tpm(60)),
        BucketLimit::new("team:support", tpm(600)),
    ];
    let r = ledger.reserve_now(&limits, demand(60)).unwrap();
    ledger.settle_now(r, demand(60));
    let team = [BucketLimit::new("team:support", tpm(600))];
    let r = ledger.reserve_now(&team, demand(540)).unwrap();
    ledger.settle_now(r, demand(540));
    // alice needs 10 s for 10 tokens; the team needs 10 tokens too: at 10/s, 1 s.
    let refused = denied(ledger.reserve_now(&limits, demand(10)));
    assert_eq!(refused.key, BucketKey::from("user:alice"));
    assert_eq!(refused.retry_after, Some(Duration::from_secs(10)));
    advance(Duration::from_secs(10)).await;
    let r = ledger.reserve_now(&limits, demand(10)).unwrap();
    ledger.settle_now(r, demand(10));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_exact() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(6000))];
    let r = ledger.reserve_now(&user, demand(6000)).unwrap();
    ledger.settle_now(r, demand(6000));
    let wait = denied(ledger.reserve_now(&user, demand(250)))
        .retry_after
        .unwrap();
    assert_eq!(wait, Duration::from_millis(2500));
    advance(wait - Duration::from_nanos(1)).await;
    assert!(ledger.reserve_now(&user, demand(250)).is_err());
    advance(Duration::from_nanos(1)).await;
    let r = ledger.reserve_now(&user, demand(250)).unwrap();
    ledger.settle_now(r, demand(250));
}

#[tokio::test(start_paused = true)]
async fn demand_larger_than_the_limit_is_refused_with_no_retry() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(1000))];
    let refused = denied(ledger.reserve_now(&user, demand(1001)));
    assert_eq!(refused.retry_after, None);
    assert_eq!(ledger.live_buckets(), 0, "a refusal creates no bucket");
}

#[tokio::test(start_paused = true)]
async fn settle_refunds_the_unused_reservation() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(1000))];
    let r = ledger.reserve_now(&user, demand(800)).unwrap();
    assert_eq!(
        remaining(&ledger, "user:alice", LimitWindow::TokensPerMinute),
        200
    );
    let settled = ledger.settle_now(r, demand(300));
    assert!(settled.freed);
    assert_eq!(
        remaining(&ledger, "user:alice", LimitWindow::TokensPerMinute),
        700
    );
}

#[tokio::test(start_paused = true)]
async fn settle_charges_the_overage_and_later_requests_wait_longer() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(600))];
    let r = ledger.reserve_now(&user, demand(600)).unwrap();
    let settled = ledger.settle_now(r, demand(900));
    assert!(!settled.freed);
    assert_eq!(
        remaining(&ledger, "user:alice", LimitWindow::TokensPerMinute),
        -300
    );
    // 300 of debt plus 100 tokens at 10 tokens per second.
    let refused = denied(ledger.reserve_now(&user, demand(100)));
    assert_eq!(refused.retry_after, Some(Duration::from_secs(40)));
}

#[tokio::test(start_paused = true)]
async fn concurrency_slots_are_taken_at_reserve_and_released_at_settle() {
    let ledger = LocalLedger::default();
    let limit = Limit {
        concurrency: Some(2),
        ..Limit::default()
    };
    let key = [BucketLimit::new("user:alice", limit)];
    let first = ledger.reserve_now(&key, demand(1)).unwrap();
    let second = ledger.reserve_now(&key, demand(1)).unwrap();
    let refused = denied(ledger.reserve_now(&key, demand(1)));
    assert_eq!(refused.window, LimitWindow::Concurrency);
    assert_eq!(refused.retry_after, None, "a slot frees at a settlement");
    assert!(ledger.settle_now(first, demand(1)).freed);
    let third = ledger.reserve_now(&key, demand(1)).unwrap();
    let status = ledger.status_now(&BucketKey::from("user:alice")).unwrap();
    assert_eq!(status.in_flight, 2);
    ledger.settle_now(second, demand(1));
    ledger.settle_now(third, demand(1));
    assert_eq!(
        ledger
            .status_now(&BucketKey::from("user:alice"))
            .unwrap()
            .in_flight,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn idle_buckets_are_evicted_once_full_and_nothing_is_in_flight() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(600))];
    let r = ledger.reserve_now(&user, demand(60)).unwrap();
    advance(Duration::from_secs(120)).await;
    assert_eq!(ledger.evict_idle(), 0, "a bucket in flight stays");
    // Charged 60 more than reserved: six seconds of refill before it is full again.
    ledger.settle_now(r, demand(120));
    assert_eq!(ledger.evict_idle(), 0, "not yet refilled");
    advance(Duration::from_secs(6)).await;
    assert_eq!(ledger.evict_idle(), 1);
    assert_eq!(ledger.live_buckets(), 0);
    assert!(ledger.status_now(&BucketKey::from("user:alice")).is_none());
}

#[tokio::test(start_paused = true)]
async fn live_bucket_cap_refuses_new_buckets_until_idle_ones_are_evicted() {
    let ledger = LocalLedger::new(LocalLedgerConfig {
        shards: 4,
        max_buckets: 2,
    });
    for user in ["user:a", "user:b"] {
        let r = ledger
            .reserve_now(&[BucketLimit::new(user, tpm(60))], demand(60))
            .unwrap();
        ledger.settle_now(r, demand(60));
    }
    let third = [BucketLimit::new("user:c", tpm(60))];
    assert_eq!(
        ledger.reserve_now(&third, demand(1)),
        Err(LedgerError::BucketCap { cap: 2 })
    );
    // Existing buckets still work at the cap.
    advance(Duration::from_secs(1)).await;
    let r = ledger
        .reserve_now(&[BucketLimit::new("user:a", tpm(60))], demand(1))
        .unwrap();
    ledger.settle_now(r, demand(1));
    // Once b has refilled, it is evicted to make room.
    advance(Duration::from_secs(59)).await;
    let r = ledger.reserve_now(&third, demand(1)).unwrap();
    ledger.settle_now(r, demand(1));
    assert_eq!(ledger.live_buckets(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_key_named_twice_counts_once_under_the_tighter_limit() {
    let ledger = LocalLedger::default();
    let twice = [
        BucketLimit::new("user:alice", tpm(1000)),
        BucketLimit::new("user:alice", tpm(100)),
    ];
    let r = ledger.reserve_now(&twice, demand(100)).unwrap();
    assert_eq!(r.buckets().len(), 1);
    assert_eq!(
        remaining(&ledger, "user:alice", LimitWindow::TokensPerMinute),
        0
    );
    ledger.settle_now(r, demand(100));
}

#[tokio::test(start_paused = true)]
async fn day_windows_refill_over_a_day() {
    let ledger = LocalLedger::default();
    let limit = Limit {
        tokens_per_minute: Some(1000),
        tokens_per_day: Some(2400),
        ..Limit::default()
    };
    let key = [BucketLimit::new("team:support", limit)];
    for _ in 0..2 {
        let r = ledger.reserve_now(&key, demand(1000)).unwrap();
        ledger.settle_now(r, demand(1000));
        advance(Duration::from_secs(60)).await;
    }
    let refused = denied(ledger.reserve_now(&key, demand(1000)));
    assert_eq!(refused.window, LimitWindow::TokensPerDay);
    // 2400 per day is 100 per hour; 600 missing less what 2 minutes refilled.
    assert!(refused.retry_after.unwrap() > Duration::from_secs(5 * 3600));
}

#[tokio::test(start_paused = true)]
async fn status_reports_limit_remaining_and_reset() {
    let ledger = LocalLedger::default();
    let user = [BucketLimit::new("user:alice", tpm(600))];
    let r = ledger.reserve_now(&user, demand(60)).unwrap();
    let status = ledger.status_now(&BucketKey::from("user:alice")).unwrap();
    assert_eq!(
        status.windows,
        vec![WindowStatus {
            window: LimitWindow::TokensPerMinute,
            limit: 600,
            remaining: 540,
            resets_in: Duration::from_secs(6),
        }]
    );
    assert_eq!(status.in_flight, 1);
    ledger.settle_now(r, demand(60));
}

#[tokio::test(start_paused = true)]
async fn the_trait_object_reserves_settles_and_reads_status() {
    let ledger: std::sync::Arc<dyn Ledger> = std::sync::Arc::new(LocalLedger::default());
    let user = [BucketLimit::new("user:alice", tpm(100))];
    let r = ledger.reserve(&user, demand(100)).await.unwrap();
    assert!(matches!(
        ledger.reserve(&user, demand(1)).await,
        Err(LedgerError::Denied(_))
    ));
    let settled = ledger.settle(r, demand(40)).await.unwrap();
    assert!(settled.freed);
    let status = ledger
        .status(&BucketKey::from("user:alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.windows[0].remaining, 60);
}

#[test]
fn concurrent_reservations_across_threads_never_exceed_the_limit() {
    let ledger = std::sync::Arc::new(LocalLedger::new(LocalLedgerConfig {
        shards: 8,
        max_buckets: 1000,
    }));
    let limits = std::sync::Arc::new(vec![
        BucketLimit::new("shared", tpm(1000)),
        BucketLimit::new("other", tpm(1_000_000)),
    ]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let ledger = ledger.clone();
            let limits = limits.clone();
            std::thread::spawn(move || {
                let mut admitted = Vec::new();
                for _ in 0..500 {
                    if let Ok(r) = ledger.reserve_now(&limits, demand(1)) {
                        admitted.push(r);
                    }
                }
                admitted
            })
        })
        .collect();
    let admitted: Vec<Reservation> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // Real time passes here, so a few tokens may refill during the run.
    assert!(admitted.len() >= 1000 && admitted.len() < 1100);
    for r in admitted {
        ledger.settle_now(r, demand(1));
    }
}
