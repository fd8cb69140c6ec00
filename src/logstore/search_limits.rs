//! Bounds on what one admin search may cost: query size and shape (checked before Tantivy
//! parses or runs anything), page offsets, and a deadline enforced while documents are
//! collected.
//!
//! Tantivy has no cancellation, so [`WithDeadline`] wraps a collector and walks each
//! segment's matches itself, checking the clock before every segment and every
//! [`CHECK_EVERY_DOCS`] documents; past the deadline the search stops with an error that
//! [`LogStore::search`](super::LogStore::search) turns into [`LogError::Timeout`].

use super::LogError;
use std::time::Instant;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::query::Weight;
use tantivy::query_grammar::{UserInputAst, UserInputLeaf};
use tantivy::{DocSet, SegmentOrdinal, SegmentReader, TantivyError, TERMINATED};

/// Longest `q`, in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Deepest nesting of groups in `q`.
pub const MAX_QUERY_DEPTH: usize = 8;
/// Most words, phrase words, ranges and set elements in `q`.
pub const MAX_QUERY_CLAUSES: usize = 64;
/// Most term-expanding clauses (prefix `*`, sloppy phrases, ranges over text, `IN` sets,
/// existence tests) in `q`.
pub const MAX_EXPENSIVE_CLAUSES: usize = 4;
/// The largest offset a score-sorted cursor may hold (deeper pages: narrow the query).
pub const MAX_OFFSET: usize = 10_000;
/// How many documents are collected between two looks at the clock.
pub const CHECK_EVERY_DOCS: u32 = 4096;

const DEADLINE_PASSED: &str = "search deadline passed";

fn too_complex(reason: &str) -> LogError {
    LogError::BadQuery(format!("query too complex: {reason}"))
}

/// Refuse a `q` too long, too deep or with too many (expensive) clauses, before parsing.
pub fn check_query(q: &str) -> Result<(), LogError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(too_complex(&format!("longer than {MAX_QUERY_BYTES} bytes")));
    }
    // Groups first, on the raw text: the parser recurses once per level.
    let (mut depth, mut deepest, mut quoted, mut escaped) = (0usize, 0usize, false, false);
    for c in q.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' | '{' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_QUERY_DEPTH {
        return Err(too_complex(&format!(
            "nested deeper than {MAX_QUERY_DEPTH} levels"
        )));
    }
    let (ast, _errors) = tantivy::query_grammar::parse_query_lenient(q);
    let mut cost = Cost::default();
    cost.add(&ast, 0);
    if cost.depth > 2 * MAX_QUERY_DEPTH {
        return Err(too_complex(&format!(
            "nested deeper than {MAX_QUERY_DEPTH} levels"
        )));
    }
    if cost.clauses > MAX_QUERY_CLAUSES {
        return Err(too_complex(&format!("more than {MAX_QUERY_CLAUSES} terms")));
    }
    if cost.expensive > MAX_EXPENSIVE_CLAUSES {
        return Err(too_complex(&format!(
            "more than {MAX_EXPENSIVE_CLAUSES} prefix, range, set or sloppy phrase terms"
        )));
    }
    Ok(())
}

#[derive(Default)]
struct Cost {
    clauses: usize,
    expensive: usize,
    depth: usize,
}

impl Cost {
    fn add(&mut self, ast: &UserInputAst, depth: usize) {
        self.depth = self.depth.max(depth);
        if depth > 4 * MAX_QUERY_DEPTH {
            return; // already refused; do not recurse further
        }
        match ast {
            UserInputAst::Clause(children) => {
                for (_, child) in children {
                    self.add(child, depth + 1);
                }
            }
            UserInputAst::Boost(child, _) => self.add(child, depth + 1),
            UserInputAst::Leaf(leaf) => self.add_leaf(leaf),
        }
    }

    fn add_leaf(&mut self, leaf: &UserInputLeaf) {
        let on_text = |field: &Option<String>| {
            field
                .as_deref()
                .is_none_or(|f| matches!(f, "input" | "output" | "error"))
        };
        match leaf {
            UserInputLeaf::Literal(literal) => {
                self.clauses += literal.phrase.split_whitespace().count().max(1);
                if literal.prefix || literal.slop > 0 {
                    self.expensive += 1;
                }
            }
            UserInputLeaf::All => self.clauses += 1,
            UserInputLeaf::Range { field, .. } => {
                self.clauses += 1;
                if on_text(field) {
                    self.expensive += 1;
                }
            }
            UserInputLeaf::Set { elements, .. } => {
                self.clauses += elements.len().max(1);
                self.expensive += 1;
            }
            UserInputLeaf::Exists { .. } => {
                self.clauses += 1;
                self.expensive += 1;
            }
        }
    }
}

/// A collector that stops at a deadline (see the module doc).
pub struct WithDeadline<C> {
    inner: C,
    deadline: Instant,
}

impl<C> WithDeadline<C> {
    /// Wrap `inner` so that collecting stops at `deadline`.
    pub fn new(inner: C, deadline: Instant) -> Self {
        WithDeadline { inner, deadline }
    }

    fn check(&self) -> tantivy::Result<()> {
        if Instant::now() >= self.deadline {
            return Err(TantivyError::InternalError(DEADLINE_PASSED.to_string()));
        }
        Ok(())
    }
}

/// Whether a Tantivy error is [`WithDeadline`] stopping a search.
pub fn is_deadline(err: &TantivyError) -> bool {
    matches!(err, TantivyError::InternalError(message) if message == DEADLINE_PASSED)
}

impl<C: Collector> Collector for WithDeadline<C> {
    type Fruit = C::Fruit;
    type Child = C::Child;

    fn for_segment(
        &self,
        segment_local_id: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<C::Child> {
        self.inner.for_segment(segment_local_id, segment)
    }

    fn requires_scoring(&self) -> bool {
        self.inner.requires_scoring()
    }

    fn merge_fruits(
        &self,
        segment_fruits: Vec<<C::Child as SegmentCollector>::Fruit>,
    ) -> tantivy::Result<C::Fruit> {
        self.inner.merge_fruits(segment_fruits)
    }

    fn collect_segment(
        &self,
        weight: &dyn Weight,
        segment_ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<<C::Child as SegmentCollector>::Fruit> {
        self.check()?;
        let mut collector = self.inner.for_segment(segment_ord, reader)?;
        let mut scorer = weight.scorer(reader, 1.0)?;
        self.check()?;
        let alive = reader.alive_bitset();
        let scoring = self.inner.requires_scoring();
        let mut seen = 0u32;
        let mut doc = scorer.doc();
        while doc != TERMINATED {
            seen = seen.wrapping_add(1);
            if seen % CHECK_EVERY_DOCS == 0 {
                self.check()?;
            }
            if alive.is_none_or(|alive| alive.is_alive(doc)) {
                let score = if scoring { scorer.score() } else { 0.0 };
                collector.collect(doc, score);
            }
            doc = scorer.advance();
        }
        Ok(collector.harvest())
    }
}
