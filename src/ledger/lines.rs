//! The lines of the fair queue: per bucket, two lanes (interactive, batch), each taking turns
//! between owners. Only [`super::queue::Admission`] uses them.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::queue::{LineStatus, Waiting};
use super::{BucketKey, BucketLimit, Denied, LimitWindow};
use crate::config::Priority;

/// One waiter in a lane.
struct Waiter {
    id: u64,
    wake: Arc<Notify>,
    since: Instant,
}

/// One lane: owners in round-robin order, each with its waiters in arrival order.
#[derive(Default)]
struct Lane {
    owners: VecDeque<Arc<str>>,
    waiters: HashMap<Arc<str>, VecDeque<Waiter>>,
}

impl Lane {
    fn head(&self) -> Option<&Waiter> {
        let owner = self.owners.front()?;
        self.waiters.get(owner)?.front()
    }

    fn push(&mut self, owner: Arc<str>, waiter: Waiter) {
        let queue = self.waiters.entry(owner.clone()).or_default();
        if queue.is_empty() {
            self.owners.push_back(owner);
        }
        queue.push_back(waiter);
    }

    /// Remove a waiter; when it was the head, its owner's turn passes to the next owner.
    fn remove(&mut self, owner: &Arc<str>, id: u64) -> bool {
        let was_head = self.head().is_some_and(|w| w.id == id);
        let Some(queue) = self.waiters.get_mut(owner) else {
            return false;
        };
        let Some(position) = queue.iter().position(|w| w.id == id) else {
            return false;
        };
        queue.remove(position);
        let emptied = queue.is_empty();
        if emptied {
            self.waiters.remove(owner);
            self.owners.retain(|o| o != owner);
        } else if was_head {
            // Round-robin: the owner goes to the back of the lane.
            self.owners.rotate_left(1);
        }
        true
    }

    fn len(&self) -> usize {
        self.waiters.values().map(VecDeque::len).sum()
    }

    fn oldest(&self) -> Option<Instant> {
        self.waiters
            .values()
            .filter_map(|q| q.front().map(|w| w.since))
            .min()
    }
}

/// The waiters for one bucket.
struct Line {
    lanes: [Lane; 2],
    /// The window its head was last refused on (named when a newcomer times out behind it).
    window: LimitWindow,
}

impl Line {
    fn lane(&mut self, priority: Priority) -> &mut Lane {
        match priority {
            Priority::Interactive => &mut self.lanes[0],
            Priority::Batch => &mut self.lanes[1],
        }
    }

    fn head(&self) -> Option<&Waiter> {
        self.lanes[0].head().or_else(|| self.lanes[1].head())
    }

    fn is_empty(&self) -> bool {
        self.lanes.iter().all(|lane| lane.owners.is_empty())
    }
}

/// The lines of every bucket with waiters.
pub(super) struct FairQueue {
    lines: Mutex<HashMap<BucketKey, Line>>,
    /// Waiters over every line: zero on the fast path, which then never takes the lock.
    pub(super) waiting: AtomicUsize,
    pub(super) max_waiters: usize,
    pub(super) next_id: AtomicU64,
}

impl FairQueue {
    /// An empty queue holding at most `max_waiters`.
    pub(super) fn new(max_waiters: usize) -> FairQueue {
        FairQueue {
            lines: Mutex::new(HashMap::new()),
            waiting: AtomicUsize::new(0),
            max_waiters,
            next_id: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<BucketKey, Line>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The first of `buckets` that has a line, with the window its head waits on.
    pub(super) fn line_among(&self, buckets: &[BucketLimit]) -> Option<(BucketKey, LimitWindow)> {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return None;
        }
        let lines = self.lock();
        buckets
            .iter()
            .find_map(|b| lines.get(&b.key).map(|line| (b.key.clone(), line.window)))
    }

    /// Join the line of the bucket `denied` names; `None` when the queue is full.
    pub(super) fn join(&self, denied: &Denied, waiting: &Waiting) -> Option<Place> {
        let mut lines = self.lock();
        if self.waiting.load(Ordering::Acquire) >= self.max_waiters {
            return None;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let key = &denied.key;
        let line = lines.entry(key.clone()).or_insert_with(|| Line {
            lanes: Default::default(),
            window: denied.window,
        });
        line.lane(waiting.priority).push(
            waiting.owner.clone(),
            Waiter {
                id,
                wake: wake.clone(),
                since: Instant::now(),
            },
        );
        Some(Place {
            key: key.clone(),
            owner: waiting.owner.clone(),
            priority: waiting.priority,
            id,
            wake,
        })
    }

    /// The head of `place`'s line was refused on `window`.
    pub(super) fn refused_on(&self, place: &Place, window: LimitWindow) {
        if let Some(line) = self.lock().get_mut(&place.key) {
            line.window = window;
        }
    }

    pub(super) fn is_head(&self, place: &Place) -> bool {
        self.lock()
            .get(&place.key)
            .and_then(Line::head)
            .is_some_and(|w| w.id == place.id)
    }

    /// Leave a line (admitted, refused or gone) and wake its new head.
    pub(super) fn leave(&self, place: &Place) {
        let mut lines = self.lock();
        let Some(line) = lines.get_mut(&place.key) else {
            return;
        };
        if line.lane(place.priority).remove(&place.owner, place.id) {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        if line.is_empty() {
            lines.remove(&place.key);
        } else if let Some(head) = line.head() {
            head.wake.notify_one();
        }
    }

    /// Room freed on `key` (a settlement): wake its line's head to try again.
    pub(super) fn freed(&self, key: &BucketKey) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(head) = self.lock().get(key).and_then(Line::head) {
            head.wake.notify_one();
        }
    }

    pub(super) fn status(&self, key: &BucketKey) -> Option<LineStatus> {
        let lines = self.lock();
        let line = lines.get(key)?;
        let now = Instant::now();
        Some(LineStatus {
            depth: line.lanes.iter().map(Lane::len).sum(),
            oldest_wait: line
                .lanes
                .iter()
                .filter_map(Lane::oldest)
                .min()
                .map_or(Duration::ZERO, |since| now.saturating_duration_since(since)),
        })
    }
}

/// A waiter's place in a line.
pub(super) struct Place {
    pub(super) key: BucketKey,
    pub(super) owner: Arc<str>,
    pub(super) priority: Priority,
    pub(super) id: u64,
    pub(super) wake: Arc<Notify>,
}

/// Leaves the line when dropped: a client that disconnects while queued frees its place at
/// once, and the next head is woken.
pub(super) struct PlaceGuard<'a> {
    pub(super) queue: &'a FairQueue,
    pub(super) place: Place,
}

impl Drop for PlaceGuard<'_> {
    fn drop(&mut self) {
        self.queue.leave(&self.place);
    }
}
