#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::ledger::{Limit, LocalLedger};

fn admission(max_waiters: usize) -> Arc<Admission> {
    Arc::new(Admission::new(
        Arc::new(LocalLedger::default()),
        max_waiters,
    ))
}

fn tpm(key: &str, tokens: u64) -> Vec<BucketLimit> {
    vec![BucketLimit::new(
        key,
        Limit {
            tokens_per_minute: Some(tokens),
            ..Limit::default()
        },
    )]
}

fn waiting(owner: &str, max_wait_ms: u64) -> Waiting {
    Waiting {
        owner: Arc::from(owner),
        priority: Priority::Interactive,
        max_wait: Duration::from_millis(max_wait_ms),
    }
}

fn demand(tokens: u64) -> Demand {
    Demand { tokens }
}

fn reason(refusal: Refusal) -> RefusalReason {
    match refusal {
        Refusal::Limited { reason, .. } => reason,
        other => panic!("expected a limit refusal, got {other:?}"),
    }
}

/// Let spawned tasks run until they block (the paused clock does not move).
async fn settle_tasks() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_over_limit_request_waits_exactly_until_the_window_has_room() {
    let admission = admission(100);
    let buckets = tpm("user:a", 600);
    let first = admission
        .admit(&buckets, demand(600), &waiting("a", 0))
        .await
        .unwrap();
    let started = Instant::now();
    // 300 tokens refill in 30 s at 600 per minute.
    let second = admission
        .admit(&buckets, demand(300), &waiting("a", 40_000))
        .await
        .unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    assert_eq!(second.queued, Duration::from_secs(30));
    assert_eq!(admission.waiting(), 0);
    admission
        .settle(first.reservation, demand(600))
        .await
        .unwrap();
    admission
        .settle(second.reservation, demand(300))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_wait_longer_than_queue_ms_is_refused_at_once_with_the_exact_retry_after() {
    let admission = admission(100);
    let buckets = tpm("user:a", 600);
    let first = admission
        .admit(&buckets, demand(600), &waiting("a", 0))
        .await
        .unwrap();
    let started = Instant::now();
    let refused = admission
        .admit(&buckets, demand(300), &waiting("a", 29_000))
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::ZERO, "refused without waiting");
    match refused {
        Refusal::Limited {
            denied,
            retry_after,
            reason,
        } => {
            assert_eq!(denied.key, BucketKey::from("user:a"));
            assert_eq!(denied.window, LimitWindow::TokensPerMinute);
            assert_eq!(retry_after, Some(Duration::from_secs(30)));
            assert_eq!(reason, RefusalReason::WaitTooLong);
        }
        other => panic!("{other:?}"),
    }
    let no_queue = admission
        .admit(&buckets, demand(1), &waiting("a", 0))
        .await
        .unwrap_err();
    assert_eq!(reason(no_queue), RefusalReason::NoQueue);
    let too_big = admission
        .admit(&buckets, demand(601), &waiting("a", 600_000))
        .await
        .unwrap_err();
    assert_eq!(reason(too_big), RefusalReason::NeverFits);
    admission
        .settle(first.reservation, demand(600))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn one_owners_burst_of_two_hundred_does_not_delay_another_owners_single_request() {
    let admission = admission(1000);
    // 60 requests per minute: one admission per second once the burst is spent.
    let buckets = vec![BucketLimit::new(
        "feature:shared",
        Limit {
            requests_per_minute: Some(60),
            ..Limit::default()
        },
    )];
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(
            admission
                .admit(&buckets, demand(1), &waiting("a", 0))
                .await
                .unwrap(),
        );
    }
    let (order_tx, mut order_rx) = mpsc::unbounded_channel();
    for i in 0..200 {
        let (admission, buckets, order) = (admission.clone(), buckets.clone(), order_tx.clone());
        tokio::spawn(async move {
            let admitted = admission
                .admit(&buckets, demand(1), &waiting("a", 600_000))
                .await
                .unwrap();
            order.send(format!("a{i}")).unwrap();
            admission
                .settle(admitted.reservation, demand(1))
                .await
                .unwrap();
        });
        settle_tasks().await;
    }
    assert_eq!(admission.waiting(), 200);
    {
        let (admission, buckets, order) = (admission.clone(), buckets.clone(), order_tx.clone());
        tokio::spawn(async move {
            let admitted = admission
                .admit(&buckets, demand(1), &waiting("b", 600_000))
                .await
                .unwrap();
            order.send("b".to_string()).unwrap();
            admission
                .settle(admitted.reservation, demand(1))
                .await
                .unwrap();
        });
    }
    settle_tasks().await;
    assert_eq!(admission.waiting(), 201);
    let mut served = Vec::new();
    while served.len() < 5 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        settle_tasks().await;
        while let Ok(who) = order_rx.try_recv() {
            served.push(who);
        }
    }
    let b_at = served.iter().position(|w| w == "b").expect("b was served");
    assert!(b_at <= 1, "b served at position {b_at}: {served:?}");
    for admitted in held {
        admission
            .settle(admitted.reservation, demand(1))
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn interactive_waiters_are_served_before_batch_ones() {
    let admission = admission(100);
    let buckets = tpm("model:shared", 100);
    let held = admission
        .admit(&buckets, demand(100), &waiting("x", 0))
        .await
        .unwrap();
    let (order_tx, mut order_rx) = mpsc::unbounded_channel();
    for (name, priority) in [
        ("batch1", Priority::Batch),
        ("batch2", Priority::Batch),
        ("interactive", Priority::Interactive),
    ] {
        let (admission, buckets, order) = (admission.clone(), buckets.clone(), order_tx.clone());
        tokio::spawn(async move {
            let wait = Waiting {
                owner: Arc::from(name),
                priority,
                max_wait: Duration::from_secs(600),
            };
            let admitted = admission.admit(&buckets, demand(50), &wait).await.unwrap();
            order.send(name).unwrap();
            admission
                .settle(admitted.reservation, demand(50))
                .await
                .unwrap();
        });
        settle_tasks().await;
    }
    tokio::time::sleep(Duration::from_secs(120)).await;
    settle_tasks().await;
    let mut served = Vec::new();
    while let Ok(who) = order_rx.try_recv() {
        served.push(who);
    }
    assert_eq!(served.first(), Some(&"interactive"), "{served:?}");
    assert_eq!(served.len(), 3);
    admission
        .settle(held.reservation, demand(100))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_waiter_that_leaves_frees_its_place_and_wakes_the_next() {
    let admission = admission(100);
    let buckets = vec![BucketLimit::new(
        "user:a",
        Limit {
            concurrency: Some(1),
            ..Limit::default()
        },
    )];
    let held = admission
        .admit(&buckets, demand(1), &waiting("a", 0))
        .await
        .unwrap();
    let leaving = {
        let (admission, buckets) = (admission.clone(), buckets.clone());
        tokio::spawn(async move {
            let _ = admission
                .admit(&buckets, demand(1), &waiting("a", 60_000))
                .await;
        })
    };
    settle_tasks().await;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    {
        let (admission, buckets) = (admission.clone(), buckets.clone());
        tokio::spawn(async move {
            let admitted = admission
                .admit(&buckets, demand(1), &waiting("b", 60_000))
                .await
                .unwrap();
            done_tx.send(()).unwrap();
            admission
                .settle(admitted.reservation, demand(1))
                .await
                .unwrap();
        });
    }
    settle_tasks().await;
    assert_eq!(admission.waiting(), 2);
    leaving.abort();
    settle_tasks().await;
    assert_eq!(admission.waiting(), 1, "the aborted waiter left at once");
    // The slot frees at a settlement, which wakes the new head with no timer.
    admission.settle(held.reservation, demand(1)).await.unwrap();
    settle_tasks().await;
    assert!(
        done_rx.try_recv().is_ok(),
        "b admitted after the settlement"
    );
    assert_eq!(admission.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_at_once() {
    let admission = admission(1);
    let buckets = tpm("user:a", 600);
    let held = admission
        .admit(&buckets, demand(600), &waiting("a", 0))
        .await
        .unwrap();
    let queued = {
        let (admission, buckets) = (admission.clone(), buckets.clone());
        tokio::spawn(async move {
            let _ = admission
                .admit(&buckets, demand(600), &waiting("a", 600_000))
                .await;
        })
    };
    settle_tasks().await;
    assert_eq!(admission.waiting(), 1);
    let started = Instant::now();
    let full = admission
        .admit(&buckets, demand(1), &waiting("b", 600_000))
        .await
        .unwrap_err();
    assert_eq!(reason(full), RefusalReason::QueueFull);
    assert_eq!(started.elapsed(), Duration::ZERO);
    queued.abort();
    admission
        .settle(held.reservation, demand(600))
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_small_newcomer_queues_behind_the_head_instead_of_taking_its_room() {
    let admission = admission(10);
    let buckets = tpm("user:a", 600);
    let held = admission
        .admit(&buckets, demand(600), &waiting("a", 0))
        .await
        .unwrap();
    admission
        .settle(held.reservation, demand(600))
        .await
        .unwrap();
    let (order_tx, mut order_rx) = mpsc::unbounded_channel();
    for (name, tokens) in [("big", 600), ("small", 10)] {
        if name == "small" {
            // The small one arrives 30 s later, when half the window is back.
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        let (admission, buckets, order) = (admission.clone(), buckets.clone(), order_tx.clone());
        tokio::spawn(async move {
            let admitted = admission
                .admit(&buckets, demand(tokens), &waiting(name, 600_000))
                .await
                .unwrap();
            order.send((name, Instant::now())).unwrap();
            admission
                .settle(admitted.reservation, demand(tokens))
                .await
                .unwrap();
        });
        settle_tasks().await;
    }
    assert_eq!(admission.waiting(), 2, "the small one joined the line");
    tokio::time::sleep(Duration::from_secs(60)).await;
    settle_tasks().await;
    let (first, _) = order_rx.try_recv().unwrap();
    let (second, _) = order_rx.try_recv().unwrap();
    assert_eq!((first, second), ("big", "small"));
}

#[tokio::test(start_paused = true)]
async fn a_request_without_buckets_is_admitted_with_an_empty_reservation() {
    let admission = admission(1);
    let admitted = admission
        .admit(&[], demand(10), &waiting("a", 0))
        .await
        .unwrap();
    assert!(admitted.reservation.buckets().is_empty());
    admission
        .settle(admitted.reservation, demand(10))
        .await
        .unwrap();
}
