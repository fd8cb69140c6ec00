//! An incremental Server-Sent Events parser for upstream streams.
//!
//! Bytes arrive in arbitrary pieces; [`SseParser::push`] returns every event completed by
//! them. Handles `\n`, `\r\n` and `\r` line ends, multi-line `data:`, comments and `event:`.
//! One event (its unfinished line, `event:` and `data:` so far) may hold at most
//! [`MAX_EVENT_BYTES`]: an upstream that never ends an event cannot grow memory without end.

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, empty when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
    skip_lf: bool,
}

/// The most one event may hold (its pending line, name and data) before the stream is
/// refused. Text and tool-call deltas are a few hundred bytes; 4 MiB leaves room for an
/// inline image in one Gemini chunk.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; complete events are appended to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<SseEvent>) -> Result<(), String> {
        for &b in bytes {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\n' | b'\r' => {
                    self.skip_lf = b == b'\r';
                    let line = std::mem::take(&mut self.buf);
                    self.line(&line, out);
                }
                _ => {
                    if self.buf.len() + self.data.len() + self.event.len() >= MAX_EVENT_BYTES {
                        return Err(format!("stream event larger than {MAX_EVENT_BYTES} bytes"));
                    }
                    self.buf.push(b);
                }
            }
        }
        Ok(())
    }

    /// The stream ended: flush an event that lacked its final blank line.
    pub fn finish(&mut self, out: &mut Vec<SseEvent>) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.line(&line, out);
        }
        self.dispatch(out);
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if line[0] == b':' {
            return;
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.find(':') {
            Some(i) => {
                let value = &text[i + 1..];
                (&text[..i], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (&text[..], ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        if self.has_data {
            out.push(SseEvent {
                event: std::mem::take(&mut self.event),
                data: std::mem::take(&mut self.data),
            });
        } else {
            self.event.clear();
        }
        self.has_data = false;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            parser.push(c, &mut out).unwrap();
        }
        parser.finish(&mut out);
        out
    }

    #[test]
    fn parses_named_events_split_anywhere() {
        let events = parse_all(&[
            b"event: message_start\nda",
            b"ta: {\"a\":1}\n",
            b"\n: ping\n\ndata: x\r\n\r\n",
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event, "message_start");
        assert_eq!(events[0].data, "{\"a\":1}");
        assert_eq!(events[1].event, "");
        assert_eq!(events[1].data, "x");
    }

    #[test]
    fn joins_multi_line_data() {
        let events = parse_all(&[b"data: a\ndata: b\n\n"]);
        assert_eq!(events[0].data, "a\nb");
    }

    #[test]
    fn flushes_an_unterminated_last_event() {
        let events = parse_all(&[b"data: [DONE]"]);
        assert_eq!(events[0].data, "[DONE]");
    }

    #[test]
    fn an_event_that_never_ends_is_refused_at_the_cap() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let line = format!("data: {}\n", "x".repeat(1000));
        let mut refused = None;
        for sent in 0..(2 * MAX_EVENT_BYTES / line.len()) {
            if let Err(msg) = parser.push(line.as_bytes(), &mut out) {
                refused = Some((sent, msg));
                break;
            }
        }
        let (sent, msg) = refused.expect("an endless event was never refused");
        assert!(sent <= MAX_EVENT_BYTES / 1000 + 1, "{sent} lines held");
        assert_eq!(
            msg,
            format!("stream event larger than {MAX_EVENT_BYTES} bytes")
        );
        assert!(out.is_empty());
    }

    #[test]
    fn an_unterminated_line_is_refused_at_the_cap() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let chunk = vec![b'x'; 64 * 1024];
        let refused = (0..(2 * MAX_EVENT_BYTES / chunk.len()))
            .any(|_| parser.push(&chunk, &mut out).is_err());
        assert!(refused);
    }

    #[test]
    fn many_events_below_the_cap_pass() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let event = format!("data: {}\n\n", "x".repeat(1000));
        for _ in 0..(2 * MAX_EVENT_BYTES / event.len()) {
            parser.push(event.as_bytes(), &mut out).unwrap();
        }
        assert_eq!(out.len(), 2 * MAX_EVENT_BYTES / event.len());
    }

    proptest! {
        #[test]
        fn splitting_never_changes_the_events(split in 0usize..64) {
            let text: &[u8] = b"event: a\ndata: one\n\ndata: two\r\ndata: three\r\n\r\n: c\n\nevent: b\ndata: {}\n\n";
            let split = split.min(text.len());
            let whole = parse_all(&[text]);
            let parts = parse_all(&[&text[..split], &text[split..]]);
            prop_assert_eq!(whole, parts);
        }
    }
}
