//! The fair queue: a request over a limit waits for room instead of failing, without polling.
//!
//! Waiters for one bucket form a **line**. A line has two lanes (`interactive` before
//! `batch`); in each lane, waiters are served round-robin across their owners (the user, or
//! the key the script chose), so one owner's burst of 500 cannot delay another owner's single
//! request behind it. Only the line's **head** tries the ledger: it sleeps until the exact
//! moment its demand fits (the window says when) or until a settlement frees room on the
//! bucket, whichever comes first; when it is admitted, refused or leaves, the next head is
//! woken. A newcomer that finds a line on one of its buckets joins it rather than jumping
//! ahead.
//!
//! Bounded in every way: at most `max_waiters` waiters in all (beyond, a 429 at once); a wait
//! that cannot finish within the request's `queue_ms` (the exact wait is known from the
//! window) is refused at once; a waiter whose client leaves is removed by its guard's `Drop`
//! at once, waking the next head if it was the head.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::lines::{FairQueue, PlaceGuard};
use super::{BucketKey, BucketLimit, Demand, Denied, Ledger, LedgerError, LimitWindow};
use super::{Reservation, Settled};
use crate::config::Priority;

/// How one request may wait.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// Whose request it is, for round-robin fairness (the user, or the key the script chose).
    pub owner: Arc<str>,
    /// Its lane.
    pub priority: Priority,
    /// The longest it may wait (zero: refuse at once when over a limit).
    pub max_wait: Duration,
}

/// A request admitted on every bucket.
#[derive(Debug)]
pub struct Admitted {
    /// Settle it after the response ([`Admission::settle`]).
    pub reservation: Reservation,
    /// How long it waited in the queue.
    pub queued: Duration,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over a limit, and waiting is not allowed, would take longer than allowed, or cannot
    /// help (the demand exceeds a limit's whole capacity: `denied.retry_after` is `None`).
    Limited {
        /// The limit that did not pass.
        denied: Denied,
        /// When to try again, if a wait would help.
        retry_after: Option<Duration>,
        /// Why no wait was possible.
        reason: RefusalReason,
    },
    /// Too many live buckets (the ledger's memory cap).
    BucketCap {
        /// The configured cap.
        cap: usize,
    },
}

/// Why an over-limit request was refused rather than queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// Its limits allow no wait (`queue_ms = 0`).
    NoQueue,
    /// The wait it needs is longer than its `queue_ms`.
    WaitTooLong,
    /// The demand is larger than a limit's whole capacity: no wait helps.
    NeverFits,
    /// The queue is full (`max_waiters`).
    QueueFull,
    /// It waited `queue_ms` and room did not free up in time.
    TimedOut,
}

impl RefusalReason {
    /// The reason as a word, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::NoQueue => "no_queue",
            RefusalReason::WaitTooLong => "wait_too_long",
            RefusalReason::NeverFits => "never_fits",
            RefusalReason::QueueFull => "queue_full",
            RefusalReason::TimedOut => "timed_out",
        }
    }
}

/// A line's live figures, for `/admin/limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineStatus {
    /// Requests waiting.
    pub depth: usize,
    /// How long the oldest has waited.
    pub oldest_wait: Duration,
}

/// Rate-limit admission: the ledger plus the fair queue in front of it. Reserve with
/// [`Admission::admit`], settle with [`Admission::settle`] (which wakes waiters).
pub struct Admission {
    ledger: Arc<dyn Ledger>,
    queue: FairQueue,
}

impl Admission {
    /// Admission over `ledger` with at most `max_waiters` queued requests.
    pub fn new(ledger: Arc<dyn Ledger>, max_waiters: usize) -> Self {
        Admission {
            ledger,
            queue: FairQueue::new(max_waiters),
        }
    }

    /// The ledger underneath.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Requests waiting now, over every bucket.
    pub fn waiting(&self) -> usize {
        self.queue.waiting.load(Ordering::Acquire)
    }

    /// The queue of one bucket, if anyone waits on it.
    pub fn line_status(&self, key: &BucketKey) -> Option<LineStatus> {
        self.queue.status(key)
    }

    /// Reserve `demand` on every bucket, waiting in the fair queue for up to
    /// `waiting.max_wait` when over a limit. Dropping the future leaves the queue at once.
    pub async fn admit(
        &self,
        buckets: &[BucketLimit],
        demand: Demand,
        waiting: &Waiting,
    ) -> Result<Admitted, Refusal> {
        if buckets.is_empty() {
            return Ok(Admitted {
                reservation: Reservation::default(),
                queued: Duration::ZERO,
            });
        }
        let line = self.queue.line_among(buckets);
        let denied = match line {
            // Nobody waits on these buckets: the fast path.
            None => match self.ledger.reserve(buckets, demand).await {
                Ok(reservation) => {
                    return Ok(Admitted {
                        reservation,
                        queued: Duration::ZERO,
                    })
                }
                Err(err) => denial(err)?,
            },
            // Others wait: a request that may not wait still gets its chance now; one that
            // may wait is told at once if its own wait is too long, else joins the line.
            Some((line_key, window)) => {
                if waiting.max_wait.is_zero() {
                    match self.ledger.reserve(buckets, demand).await {
                        Ok(reservation) => {
                            return Ok(Admitted {
                                reservation,
                                queued: Duration::ZERO,
                            })
                        }
                        Err(err) => denial(err)?,
                    }
                } else {
                    match self.ledger.check(buckets, demand).await {
                        Ok(()) => Denied {
                            key: line_key,
                            window,
                            retry_after: Some(Duration::ZERO),
                        },
                        Err(err) => denial(err)?,
                    }
                }
            }
        };
        refuse_unless_waitable(&denied, waiting.max_wait)?;
        let deadline = Instant::now() + waiting.max_wait;
        self.wait(buckets, demand, waiting, denied, deadline).await
    }

    /// The queued part of [`Admission::admit`].
    async fn wait(
        &self,
        buckets: &[BucketLimit],
        demand: Demand,
        waiting: &Waiting,
        first: Denied,
        deadline: Instant,
    ) -> Result<Admitted, Refusal> {
        let started = Instant::now();
        let join = |denied: &Denied| {
            self.queue
                .join(denied, waiting)
                .map(|place| PlaceGuard {
                    queue: &self.queue,
                    place,
                })
                .ok_or_else(|| Refusal::Limited {
                    denied: first.clone(),
                    retry_after: first.retry_after,
                    reason: RefusalReason::QueueFull,
                })
        };
        let mut guard = join(&first)?;
        let mut last = first.clone();
        loop {
            // Wait for our turn at the head of the line.
            while !self.queue.is_head(&guard.place) {
                let woken = guard.place.wake.clone();
                if tokio::time::timeout_at(deadline, woken.notified())
                    .await
                    .is_err()
                {
                    return Err(timed_out(last));
                }
            }
            let denied = match self.ledger.reserve(buckets, demand).await {
                Ok(reservation) => {
                    drop(guard);
                    return Ok(Admitted {
                        reservation,
                        queued: started.elapsed(),
                    });
                }
                Err(err) => denial(err)?,
            };
            last = denied.clone();
            if denied.key != guard.place.key {
                // Another bucket of this request is now the one in the way: wait in its line.
                drop(guard);
                guard = join(&denied)?;
                continue;
            }
            self.queue.refused_on(&guard.place, denied.window);
            let wake_at = match (denied.retry_after, denied.window) {
                (Some(wait), _) => {
                    let at = Instant::now() + wait;
                    if at > deadline {
                        return Err(Refusal::Limited {
                            retry_after: Some(wait),
                            denied,
                            reason: RefusalReason::WaitTooLong,
                        });
                    }
                    at
                }
                // A concurrency slot frees at a settlement, whose wake-up we wait for.
                (None, LimitWindow::Concurrency) => deadline,
                (None, _) => {
                    return Err(Refusal::Limited {
                        denied,
                        retry_after: None,
                        reason: RefusalReason::NeverFits,
                    })
                }
            };
            let woken = guard.place.wake.clone();
            let _ = tokio::time::timeout_at(wake_at, woken.notified()).await;
            if Instant::now() >= deadline {
                return Err(timed_out(last));
            }
        }
    }

    /// Replace a reservation with the real figure and wake the waiters of every bucket that
    /// got room back.
    pub async fn settle(
        &self,
        reservation: Reservation,
        actual: Demand,
    ) -> Result<Settled, LedgerError> {
        if reservation.buckets.is_empty() {
            return Ok(Settled { freed: false });
        }
        let keys: Vec<BucketKey> = if self.waiting() > 0 {
            reservation.buckets.iter().map(|b| b.key.clone()).collect()
        } else {
            Vec::new()
        };
        let settled = self.ledger.settle(reservation, actual).await?;
        // Every settlement wakes the heads: a refund or a released slot may let them in, and
        // a head that still does not fit goes back to sleep until its exact time.
        for key in &keys {
            self.queue.freed(key);
        }
        Ok(settled)
    }
}

impl Admission {
    /// [`Admission::settle`] as an owned future, for a tail that cannot borrow; a failure is
    /// logged (the reservation then expires with its windows).
    pub fn settle_owned(
        self: Arc<Self>,
        reservation: Reservation,
        actual: Demand,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            if let Err(err) = self.settle(reservation, actual).await {
                tracing::warn!(error = %err, "rate-limit settlement failed");
            }
        })
    }
}

impl Admission {
    /// Settle without waiting: the in-process ledger settles at once; a store that must wait
    /// (a network ledger) finishes on `background` (else the current runtime).
    pub fn settle_detached(
        self: &Arc<Self>,
        reservation: Reservation,
        actual: Demand,
        background: Option<&tokio::runtime::Handle>,
    ) {
        use futures_util::FutureExt;
        let mut settle = self.clone().settle_owned(reservation, actual);
        if (&mut settle).now_or_never().is_some() {
            return;
        }
        match background
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        {
            Some(handle) => {
                handle.spawn(settle);
            }
            None => tracing::warn!("rate-limit settlement dropped: no runtime to finish it"),
        }
    }
}

fn denial(err: LedgerError) -> Result<Denied, Refusal> {
    match err {
        LedgerError::Denied(denied) => Ok(denied),
        LedgerError::BucketCap { cap } => Err(Refusal::BucketCap { cap }),
    }
}

/// Refuse at once when no wait within `max_wait` can help.
fn refuse_unless_waitable(denied: &Denied, max_wait: Duration) -> Result<(), Refusal> {
    let refuse = |reason| {
        Err(Refusal::Limited {
            denied: denied.clone(),
            retry_after: denied.retry_after,
            reason,
        })
    };
    match denied.retry_after {
        None if denied.window != LimitWindow::Concurrency => refuse(RefusalReason::NeverFits),
        _ if max_wait.is_zero() => refuse(RefusalReason::NoQueue),
        Some(wait) if wait > max_wait => refuse(RefusalReason::WaitTooLong),
        _ => Ok(()),
    }
}

fn timed_out(denied: Denied) -> Refusal {
    Refusal::Limited {
        retry_after: denied.retry_after,
        denied,
        reason: RefusalReason::TimedOut,
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
