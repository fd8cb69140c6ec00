//! Response bodies of the mock server: whole JSON bodies and paced SSE streams that count how
//! they ended.

use super::Shared;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// A mock response body: all at once, or an SSE stream.
pub(super) enum MockBody {
    /// The whole body (taken when sent).
    Full(Option<Bytes>),
    /// A paced event stream.
    Sse(SseBody),
}

impl MockBody {
    /// A body holding `bytes`.
    pub(super) fn full(bytes: impl Into<Bytes>) -> MockBody {
        MockBody::Full(Some(bytes.into()))
    }

    /// A body holding `value` as JSON.
    pub(super) fn json(value: &Value) -> MockBody {
        MockBody::full(serde_json::to_vec(value).unwrap_or_default())
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            MockBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Sse(sse) => sse.poll_next(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            MockBody::Full(bytes) => bytes.is_none(),
            MockBody::Sse(sse) => sse.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Sse(_) => SizeHint::default(),
        }
    }
}

/// Builds the frames of an SSE stream in one buffer; frames are slices of it (no copies).
pub(super) struct SseWriter {
    buf: Vec<u8>,
    /// End offset of each frame and whether it is a paced content frame.
    frames: Vec<(usize, bool)>,
    line_end: &'static [u8],
}

impl SseWriter {
    /// A writer ending lines with `\n` (OpenAI, Anthropic) or `\r\n` (Gemini).
    pub(super) fn new(crlf: bool) -> SseWriter {
        SseWriter {
            buf: Vec::with_capacity(2048),
            frames: Vec::with_capacity(16),
            line_end: if crlf { b"\r\n" } else { b"\n" },
        }
    }

    /// One event; `paced` marks content frames that wait `chunk_interval_ms` between them.
    pub(super) fn event(&mut self, name: Option<&str>, data: &Value, paced: bool) {
        if let Some(name) = name {
            self.buf.extend_from_slice(b"event: ");
            self.buf.extend_from_slice(name.as_bytes());
            self.buf.extend_from_slice(self.line_end);
        }
        self.buf.extend_from_slice(b"data: ");
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, data);
        self.end(paced);
    }

    /// One `data:` event with literal text (OpenAI's `[DONE]`).
    pub(super) fn raw_data(&mut self, data: &str) {
        self.buf.extend_from_slice(b"data: ");
        self.buf.extend_from_slice(data.as_bytes());
        self.end(false);
    }

    fn end(&mut self, paced: bool) {
        self.buf.extend_from_slice(self.line_end);
        self.buf.extend_from_slice(self.line_end);
        self.frames.push((self.buf.len(), paced));
    }

    /// The frames with the wait before each: `first_delay` before the first, `interval`
    /// between paced frames. Without waits the whole stream is one frame.
    fn into_frames(self, first_delay: Duration, interval: Duration) -> Vec<(Bytes, Duration)> {
        let all = Bytes::from(self.buf);
        if first_delay.is_zero() && interval.is_zero() {
            return vec![(all, Duration::ZERO)];
        }
        let mut out = Vec::with_capacity(self.frames.len());
        let mut from = 0;
        let mut seen_paced = false;
        for (i, (end, paced)) in self.frames.into_iter().enumerate() {
            let mut wait = if i == 0 { first_delay } else { Duration::ZERO };
            if paced && seen_paced {
                wait += interval;
            }
            seen_paced |= paced;
            out.push((all.slice(from..end), wait));
            from = end;
        }
        out
    }
}

/// Counts a stream as completed when its last frame is handed out, or as cancelled when it is
/// dropped before (the client went away).
struct StreamGuard {
    shared: Arc<Shared>,
    completed: bool,
}

impl StreamGuard {
    fn complete(&mut self) {
        if !self.completed {
            self.completed = true;
            self.shared
                .stats
                .streams_completed
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.completed {
            self.shared
                .stats
                .streams_cancelled
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An SSE stream sending prepared frames at their pace.
pub(super) struct SseBody {
    frames: std::vec::IntoIter<(Bytes, Duration)>,
    waiting: Option<(Bytes, Pin<Box<Sleep>>)>,
    guard: StreamGuard,
}

impl SseBody {
    /// A stream of `writer`'s frames, counted in `shared`'s stats as started now.
    pub(super) fn new(
        shared: Arc<Shared>,
        writer: SseWriter,
        first_delay: Duration,
        interval: Duration,
    ) -> SseBody {
        shared.stats.streams_started.fetch_add(1, Ordering::Relaxed);
        SseBody {
            frames: writer.into_frames(first_delay, interval).into_iter(),
            waiting: None,
            guard: StreamGuard {
                shared,
                completed: false,
            },
        }
    }

    fn is_done(&self) -> bool {
        self.waiting.is_none() && self.frames.len() == 0
    }

    fn emit(&mut self, bytes: Bytes) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.frames.len() == 0 {
            self.guard.complete();
        }
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some((_, sleep)) = self.waiting.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            return match self.waiting.take() {
                Some((bytes, _)) => self.emit(bytes),
                None => Poll::Ready(None),
            };
        }
        match self.frames.next() {
            None => {
                self.guard.complete();
                Poll::Ready(None)
            }
            Some((bytes, wait)) if wait.is_zero() => self.emit(bytes),
            Some((bytes, wait)) => {
                let mut sleep = Box::pin(tokio::time::sleep(wait));
                if sleep.as_mut().poll(cx).is_ready() {
                    return self.emit(bytes);
                }
                self.waiting = Some((bytes, sleep));
                Poll::Pending
            }
        }
    }
}
