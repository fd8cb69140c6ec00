#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Barrier;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::*;

fn key(n: u8) -> CacheKey {
    CacheKey::from_bytes([n; 32])
}

fn leader(joined: Joined) -> FlightGuard {
    match joined {
        Joined::Leader(guard) => guard,
        Joined::Follower(_) => panic!("expected leader"),
    }
}

fn follower(joined: Joined) -> FlightWait {
    match joined {
        Joined::Follower(wait) => wait,
        Joined::Leader(_) => panic!("expected follower"),
    }
}

/// Lets spawned tasks run until they block (no time passes on a paused clock).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[test]
fn twenty_concurrent_joins_make_exactly_one_leader() {
    let flights = Flights::default();
    let barrier = Arc::new(Barrier::new(20));
    let mut threads = Vec::new();
    for _ in 0..20 {
        let flights = flights.clone();
        let barrier = Arc::clone(&barrier);
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            flights.join(key(1))
        }));
    }
    let joined: Vec<Joined> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let leaders = joined
        .iter()
        .filter(|j| matches!(j, Joined::Leader(_)))
        .count();
    assert_eq!(leaders, 1);
    assert_eq!(flights.in_flight(), 1);
    drop(joined);
    assert_eq!(flights.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn followers_wake_when_the_leader_is_done() {
    let flights = Flights::default();
    let guard = leader(flights.join(key(1)));
    let started = Instant::now();
    let mut followers = JoinSet::new();
    for _ in 0..5 {
        let wait = follower(flights.join(key(1)));
        followers.spawn(wait.wait(Duration::from_secs(60)));
    }
    settle().await;
    guard.done();
    while let Some(end) = followers.join_next().await {
        assert_eq!(end.unwrap(), FlightEnd::Done);
    }
    assert_eq!(started.elapsed(), Duration::ZERO, "woken, not timed out");
    assert_eq!(flights.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn followers_wake_when_the_leaders_guard_drops() {
    let flights = Flights::default();
    let guard = leader(flights.join(key(1)));
    let wait = follower(flights.join(key(1)));
    let waiting = tokio::spawn(wait.wait(Duration::from_secs(60)));
    settle().await;
    drop(guard);
    assert_eq!(waiting.await.unwrap(), FlightEnd::Abandoned);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_still_wakes_its_followers() {
    let flights = Flights::default();
    let leading = {
        let flights = flights.clone();
        tokio::spawn(async move {
            let _guard = leader(flights.join(key(1)));
            std::future::pending::<()>().await;
        })
    };
    settle().await;
    let wait = follower(flights.join(key(1)));
    let waiting = tokio::spawn(wait.wait(Duration::from_secs(60)));
    settle().await;
    let started = Instant::now();
    leading.abort();
    assert_eq!(waiting.await.unwrap(), FlightEnd::Abandoned);
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert!(matches!(flights.join(key(1)), Joined::Leader(_)));
}

#[tokio::test(start_paused = true)]
async fn a_follower_wait_times_out() {
    let flights = Flights::default();
    let _guard = leader(flights.join(key(1)));
    let wait = follower(flights.join(key(1)));
    let started = Instant::now();
    assert_eq!(
        wait.wait(Duration::from_millis(250)).await,
        FlightEnd::TimedOut
    );
    assert_eq!(started.elapsed(), Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn a_follower_that_waits_after_the_leader_finished_returns_at_once() {
    let flights = Flights::default();
    let guard = leader(flights.join(key(1)));
    let wait = follower(flights.join(key(1)));
    guard.done();
    assert_eq!(wait.wait(Duration::from_secs(60)).await, FlightEnd::Done);
}

#[tokio::test(start_paused = true)]
async fn after_a_flight_ends_the_next_request_leads_a_new_one() {
    let flights = Flights::default();
    leader(flights.join(key(1))).done();
    let second = leader(flights.join(key(1)));
    assert!(second.is_registered());
    assert!(matches!(flights.join(key(1)), Joined::Follower(_)));
}

#[tokio::test(start_paused = true)]
async fn rejoining_after_an_abandoned_flight_elects_one_new_leader() {
    let flights = Flights::default();
    let first = leader(flights.join(key(1)));
    let waits: Vec<FlightWait> = (0..3).map(|_| follower(flights.join(key(1)))).collect();
    drop(first);
    let mut leaders = 0;
    let mut guards = Vec::new();
    for wait in waits {
        assert_eq!(
            wait.wait(Duration::from_secs(1)).await,
            FlightEnd::Abandoned
        );
        match flights.join(key(1)) {
            Joined::Leader(guard) => {
                leaders += 1;
                guards.push(guard);
            }
            Joined::Follower(_) => {}
        }
    }
    assert_eq!(leaders, 1);
}

#[tokio::test(start_paused = true)]
async fn different_keys_fly_independently() {
    let flights = Flights::default();
    let _one = leader(flights.join(key(1)));
    let _two = leader(flights.join(key(2)));
    assert_eq!(flights.in_flight(), 2);
}

#[tokio::test(start_paused = true)]
async fn beyond_max_flights_join_leads_without_registering() {
    let flights = Flights::new(2);
    let _one = leader(flights.join(key(1)));
    let _two = leader(flights.join(key(2)));
    let three = leader(flights.join(key(3)));
    assert!(!three.is_registered());
    let three_again = leader(flights.join(key(3)));
    assert!(!three_again.is_registered());
    assert_eq!(flights.in_flight(), 2);
    drop(three);
    drop(three_again);
    assert_eq!(flights.in_flight(), 2);
    drop(_one);
    assert!(leader(flights.join(key(3))).is_registered());
}

#[test]
fn guards_and_waits_can_move_between_tasks() {
    fn is_send_static<T: Send + 'static>(_: &T) {}
    let flights = Flights::default();
    let guard = leader(flights.join(key(1)));
    let wait = follower(flights.join(key(1)));
    is_send_static(&guard);
    is_send_static(&wait.wait(Duration::from_secs(1)));
}
