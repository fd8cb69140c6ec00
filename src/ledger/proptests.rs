//! Random reserve/settle sequences against one bucket: the window never lets through more
//! than a token bucket allows. Over any interval of length `d` that ends at an admission,
//! the net amount taken (reservations, plus charges, minus refunds) is at most
//! `N + N·d/period`: one burst of N, then the smooth refill. (A literal "at most N in any
//! 60 s" is not what a smoothly refilling bucket of burst N promises: after a burst of N,
//! half is back at 30 s, by design. The bound above is what rules out a fixed window's
//! 2× at its edge: for a short interval it is N.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::{BucketLimit, Demand, LedgerError, Limit, LocalLedger, Reservation};

#[derive(Debug, Clone)]
enum Op {
    /// Wait, then try to reserve this many tokens.
    Reserve { wait_ms: u64, tokens: u64 },
    /// Wait, then settle the i-th outstanding reservation (modulo) to this figure.
    Settle {
        wait_ms: u64,
        pick: usize,
        actual: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u64..20_000, 0u64..400).prop_map(|(wait_ms, tokens)| Op::Reserve { wait_ms, tokens }),
        2 => (0u64..20_000, any::<usize>(), 0u64..600)
            .prop_map(|(wait_ms, pick, actual)| Op::Settle { wait_ms, pick, actual }),
    ]
}

/// Whether the net amounts in `events` (time in ns since start, amount) stay within the
/// token-bucket bound for every interval that starts at an event and ends at `end_ns`.
fn within_bound(events: &[(u128, i128)], end_ns: u128, limit: u64, period: Duration) -> bool {
    let period_ns = period.as_nanos() as i128;
    let limit = i128::from(limit);
    let mut sum: i128 = 0;
    for &(at, amount) in events.iter().rev() {
        sum += amount;
        let d = (end_ns - at) as i128;
        if sum * period_ns > limit * period_ns + limit * d {
            return false;
        }
    }
    true
}

proptest! {
    #[test]
    fn reserve_and_settle_never_admit_more_than_the_window_allows(
        tokens_per_minute in 1u64..2_000,
        requests_per_minute in 1u64..20,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let ledger = LocalLedger::default();
        let limit = Limit {
            tokens_per_minute: Some(tokens_per_minute),
            requests_per_minute: Some(requests_per_minute),
            concurrency: Some(5),
            ..Limit::default()
        };
        let buckets = [BucketLimit::new("user:prop", limit)];
        let start = Instant::now();
        let mut now = start;
        let mut outstanding: Vec<Reservation> = Vec::new();
        let mut token_events: Vec<(u128, i128)> = Vec::new();
        let mut request_events: Vec<(u128, i128)> = Vec::new();
        for op in ops {
            match op {
                Op::Reserve { wait_ms, tokens } => {
                    now += Duration::from_millis(wait_ms);
                    let at = (now - start).as_nanos();
                    match ledger.reserve_at(&buckets, Demand { tokens }, now) {
                        Ok(reservation) => {
                            token_events.push((at, i128::from(tokens)));
                            request_events.push((at, 1));
                            outstanding.push(reservation);
                            prop_assert!(outstanding.len() <= 5, "concurrency exceeded");
                            prop_assert!(within_bound(&token_events, at, tokens_per_minute, Duration::from_secs(60)));
                            prop_assert!(within_bound(&request_events, at, requests_per_minute, Duration::from_secs(60)));
                        }
                        Err(LedgerError::Denied(denied)) => {
                            // The exact wait is honest: after it, with nothing else
                            // happening, the same demand passes.
                            if let Some(wait) = denied.retry_after {
                                let later = now + wait;
                                let passes = ledger.reserve_at(&buckets, Demand { tokens }, later);
                                prop_assert!(passes.is_ok(), "retry_after {wait:?} too short");
                                // Keep it as a real admission from then on.
                                let at_later = (later - start).as_nanos();
                                token_events.push((at_later, i128::from(tokens)));
                                request_events.push((at_later, 1));
                                outstanding.push(passes.unwrap());
                                now = later;
                                prop_assert!(outstanding.len() <= 5, "concurrency exceeded");
                                prop_assert!(within_bound(&token_events, at_later, tokens_per_minute, Duration::from_secs(60)));
                                prop_assert!(within_bound(&request_events, at_later, requests_per_minute, Duration::from_secs(60)));
                            }
                        }
                        Err(other) => prop_assert!(false, "unexpected {other:?}"),
                    }
                }
                Op::Settle { wait_ms, pick, actual } => {
                    now += Duration::from_millis(wait_ms);
                    if outstanding.is_empty() {
                        continue;
                    }
                    let reservation = outstanding.swap_remove(pick % outstanding.len());
                    let reserved = reservation.demand().tokens;
                    ledger.settle_at(reservation, Demand { tokens: actual }, now);
                    let at = (now - start).as_nanos();
                    token_events.push((at, i128::from(actual) - i128::from(reserved)));
                }
            }
        }
    }
}
