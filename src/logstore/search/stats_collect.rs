//! The collector behind `/admin/stats`: one pass over the matching documents' fast-field
//! columns, read a block at a time, summing requests, errors, tokens and cost per (interval,
//! group) cell and keeping each cell's latency and first-token values for exact percentiles.
//!
//! Tantivy's generic aggregations (a terms aggregation under a histogram, DDSketch
//! percentiles) took 1.4 s for a 7-day, hourly, by-model query over 1M records; this one
//! reads the same columns with no per-document tree walk. Memory is bounded by the samples
//! kept: past [`MAX_SAMPLES`] matching documents, every k-th document's values are kept
//! (percentiles then come from an even sample; counts and sums stay exact).

use std::collections::HashMap;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// Latency and first-token values kept per query at most (8 bytes each, two series).
pub const MAX_SAMPLES: u64 = 2_000_000;

/// No group: the document lacks the group field (or the query has none).
pub const NO_GROUP: u64 = u64::MAX;

/// One (interval, group) cell's figures.
#[derive(Default)]
pub struct Cell {
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub latency_ms: Vec<f64>,
    pub first_token_ms: Vec<f64>,
}

impl Cell {
    /// Add `other`'s counts and sums (not its values).
    pub fn absorb_sums(&mut self, other: &Cell) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
    }

    fn absorb(&mut self, other: Cell) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self.latency_ms.extend(other.latency_ms);
        self.first_token_ms.extend(other.first_token_ms);
    }
}

/// A group's key: a string field's term, or a numeric field's value (`status`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Text(String),
    Number(u64),
}

/// What to group by.
#[derive(Clone, Copy)]
pub enum GroupField {
    None,
    /// A string fast field (model, provider, feature, user, team).
    Text(&'static str),
    /// A numeric fast field (status).
    Number(&'static str),
}

/// The collector: cells keyed by (interval start in ms, group).
pub struct StatsCollector {
    pub interval_ms: i64,
    pub group: GroupField,
    /// Keep the percentile values of every `stride`-th document (1: all).
    pub stride: u64,
    pub has_first_token: bool,
}

/// The cells of every segment, merged.
pub type Cells = HashMap<(i64, Option<GroupKey>), Cell>;

enum Groups {
    None,
    Text(StrColumn),
    Number(Column<u64>),
}

/// One segment's pass.
pub struct SegmentStats {
    interval_ms: i64,
    stride: u64,
    seen: u64,
    time: Column<i64>,
    status: Column<u64>,
    latency: Column<f64>,
    input: Column<u64>,
    output: Column<u64>,
    cost: Column<f64>,
    first_token: Option<Column<f64>>,
    groups: Groups,
    /// Cells, found by (interval start, segment-local group ordinal or value) in `index`.
    cells: Vec<Cell>,
    index: HashMap<(i64, u64), usize>,
    /// The last document's key and cell: neighbours in a segment mostly share a cell.
    last: Option<((i64, u64), usize)>,
}

/// One segment's cells with their group keys resolved.
pub struct SegmentFruit(Vec<((i64, Option<GroupKey>), Cell)>);

impl Collector for StatsCollector {
    type Fruit = Cells;
    type Child = SegmentStats;

    fn for_segment(
        &self,
        _segment: SegmentOrdinal,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentStats> {
        let fast = reader.fast_fields();
        let groups = match self.group {
            GroupField::None => Groups::None,
            GroupField::Text(field) => match fast.str(field)? {
                Some(column) => Groups::Text(column),
                None => Groups::None,
            },
            GroupField::Number(field) => Groups::Number(fast.u64(field)?),
        };
        Ok(SegmentStats {
            interval_ms: self.interval_ms.max(1),
            stride: self.stride.max(1),
            seen: 0,
            time: fast.i64("time")?,
            status: fast.u64("status")?,
            latency: fast.f64("latency_ms")?,
            input: fast.u64("input_tokens")?,
            output: fast.u64("output_tokens")?,
            cost: fast.f64("cost_usd")?,
            first_token: if self.has_first_token {
                Some(fast.f64("first_token_ms")?)
            } else {
                None
            },
            groups,
            cells: Vec::new(),
            index: HashMap::new(),
            last: None,
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<SegmentFruit>) -> tantivy::Result<Cells> {
        let mut cells = Cells::new();
        for SegmentFruit(fruit) in fruits {
            for (key, cell) in fruit {
                cells.entry(key).or_default().absorb(cell);
            }
        }
        Ok(cells)
    }

    /// As the default, but deleted documents are filtered out a block at a time, so the
    /// columns are still read in blocks.
    fn collect_segment(
        &self,
        weight: &dyn tantivy::query::Weight,
        segment_ord: u32,
        reader: &SegmentReader,
    ) -> tantivy::Result<SegmentFruit> {
        let mut segment = self.for_segment(segment_ord, reader)?;
        match reader.alive_bitset() {
            Some(alive) => {
                let mut kept = Vec::with_capacity(tantivy::COLLECT_BLOCK_BUFFER_LEN);
                weight.for_each_no_score(reader, &mut |docs| {
                    kept.clear();
                    kept.extend(docs.iter().copied().filter(|doc| alive.is_alive(*doc)));
                    segment.collect_block(&kept);
                })?;
            }
            None => weight.for_each_no_score(reader, &mut |docs| segment.collect_block(docs))?,
        }
        Ok(segment.harvest())
    }
}

const BLOCK: usize = tantivy::COLLECT_BLOCK_BUFFER_LEN;

fn read<T: PartialOrd + Copy + std::fmt::Debug + Send + Sync + 'static>(
    column: &Column<T>,
    docs: &[DocId],
    out: &mut [Option<T>; BLOCK],
) {
    out.fill(None);
    column.first_vals(docs, &mut out[..docs.len()]);
}

impl SegmentStats {
    fn cell(&mut self, key: (i64, u64)) -> usize {
        if let Some((last, at)) = self.last {
            if last == key {
                return at;
            }
        }
        let next = self.cells.len();
        let at = *self.index.entry(key).or_insert(next);
        if at == next {
            self.cells.push(Cell::default());
        }
        self.last = Some((key, at));
        at
    }
}

impl SegmentCollector for SegmentStats {
    type Fruit = SegmentFruit;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.collect_block(&[doc]);
    }

    fn collect_block(&mut self, docs: &[DocId]) {
        for chunk in docs.chunks(BLOCK) {
            let mut time = [None; BLOCK];
            let mut status = [None; BLOCK];
            let mut latency = [None; BLOCK];
            let mut input = [None; BLOCK];
            let mut output = [None; BLOCK];
            let mut cost = [None; BLOCK];
            let mut first = [None; BLOCK];
            let mut group = [None; BLOCK];
            read(&self.time, chunk, &mut time);
            read(&self.status, chunk, &mut status);
            read(&self.latency, chunk, &mut latency);
            read(&self.input, chunk, &mut input);
            read(&self.output, chunk, &mut output);
            read(&self.cost, chunk, &mut cost);
            if let Some(column) = &self.first_token {
                read(column, chunk, &mut first);
            }
            match &self.groups {
                Groups::None => {}
                Groups::Text(column) => read(column.ords(), chunk, &mut group),
                Groups::Number(column) => read(column, chunk, &mut group),
            }
            for i in 0..chunk.len() {
                let Some(time) = time[i] else { continue };
                let interval = time.div_euclid(self.interval_ms) * self.interval_ms;
                let key = (interval, group[i].unwrap_or(NO_GROUP));
                let sampled = self.seen % self.stride == 0;
                self.seen += 1;
                let at = self.cell(key);
                let cell = &mut self.cells[at];
                cell.requests += 1;
                cell.errors += u64::from(status[i].unwrap_or(0) >= 400);
                cell.input_tokens += input[i].unwrap_or(0);
                cell.output_tokens += output[i].unwrap_or(0);
                cell.cost_usd += cost[i].unwrap_or(0.0);
                if sampled {
                    if let Some(latency) = latency[i] {
                        cell.latency_ms.push(latency);
                    }
                    if let Some(first) = first[i] {
                        cell.first_token_ms.push(first);
                    }
                }
            }
        }
    }

    fn harvest(self) -> SegmentFruit {
        let groups = self.groups;
        let mut names: HashMap<u64, Option<GroupKey>> = HashMap::new();
        let mut text = String::new();
        let mut cells: Vec<Option<Cell>> = self.cells.into_iter().map(Some).collect();
        let mut fruit = Vec::with_capacity(cells.len());
        for ((interval, group), at) in self.index {
            let Some(cell) = cells.get_mut(at).and_then(Option::take) else {
                continue;
            };
            let key = names
                .entry(group)
                .or_insert_with(|| {
                    if group == NO_GROUP {
                        return None;
                    }
                    match &groups {
                        Groups::None => None,
                        Groups::Number(_) => Some(GroupKey::Number(group)),
                        Groups::Text(column) => {
                            text.clear();
                            match column.ord_to_str(group, &mut text) {
                                Ok(true) => Some(GroupKey::Text(text.clone())),
                                _ => None,
                            }
                        }
                    }
                })
                .clone();
            fruit.push(((interval, key), cell));
        }
        SegmentFruit(fruit)
    }
}

/// The value at percentile `pct` (nearest rank) of `values`, reordering them.
pub fn percentile(values: &mut [f64], pct: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((pct / 100.0) * values.len() as f64).ceil() as usize;
    let index = rank.clamp(1, values.len()) - 1;
    let (_, value, _) = values.select_nth_unstable_by(index, f64::total_cmp);
    Some(*value)
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_is_the_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut values, 50.0), Some(50.0));
        assert_eq!(percentile(&mut values, 90.0), Some(90.0));
        assert_eq!(percentile(&mut values, 99.0), Some(99.0));
        assert_eq!(percentile(&mut values, 100.0), Some(100.0));
        assert_eq!(percentile(&mut [7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&mut [], 50.0), None);
        let mut two = [3.0, 1.0];
        assert_eq!(percentile(&mut two, 50.0), Some(1.0));
        assert_eq!(percentile(&mut two, 99.0), Some(3.0));
    }
}
