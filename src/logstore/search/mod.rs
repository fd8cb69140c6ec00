//! Search over logged requests: query parameters, Tantivy queries, cursors, snippets.
//!
//! `q` is Tantivy query syntax over `input`, `output` and `error` (terms AND-ed by default);
//! the other indexed fields are addressable as `field:value` (`model:gpt-4o-mini status:500
//! latency_ms:>1000 time:[2024-05-01T00:00:00Z TO *]`; RFC 3339 times inside a `time:` clause
//! are turned into epoch milliseconds). The filter parameters are AND-ed with it.
//!
//! Newest-first pages use a cursor holding the last hit's sort key (time, journal seq): the
//! next page is the documents strictly older than it, so pages never overlap or skip, even
//! while new records arrive. Score-sorted pages use an offset cursor.

use super::indexer::{input_text, output_text};
use super::record::LogRecord;
use super::search_limits::{check_query, is_deadline, WithDeadline, MAX_OFFSET};
use super::{LogError, LogStore};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use regex::{Captures, Regex};
use serde::Serialize;
use std::ops::Bound;
use std::sync::LazyLock;
use std::time::Instant;
use tantivy::collector::{Count, CustomScorer, CustomSegmentScorer, TopDocs};
use tantivy::columnar::Column;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query, QueryParser, QueryParserError, RangeQuery, TermQuery,
};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::{
    DocAddress, DocId, Searcher, SegmentReader, SnippetGenerator, TantivyDocument, Term,
};

/// Hits per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 20;
/// The largest page; larger `limit`s are capped.
pub const MAX_LIMIT: usize = 200;
const SNIPPET_CHARS: usize = 200;

/// The order of hits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchSort {
    /// Newest first (by request start time).
    #[default]
    Newest,
    /// Best match first.
    Score,
}

mod params;
mod stats;
mod stats_collect;

pub use params::SearchParams;
use params::*;
pub use stats::{StatsInterval, StatsQuery};

/// Snippets with the matched terms in `<b>…</b>` (HTML-escaped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snippets {
    /// From the request's message text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// From the output text and tool calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// One search result: the record's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// Request id (use `GET /admin/logs/{id}` for the whole record).
    pub id: String,
    /// Request start, epoch ms.
    pub time: i64,
    /// Request start, RFC 3339.
    pub started_at: String,
    /// The model the client asked for.
    pub model: String,
    /// The model that answered, if any did.
    pub served_model: Option<String>,
    /// The principal's user name.
    pub user: String,
    /// The product feature.
    pub feature: Option<String>,
    /// HTTP status returned to the client.
    pub status: u16,
    /// Total latency.
    pub latency_ms: f64,
    /// Cost in USD.
    pub cost_usd: f64,
    /// Relevance, when sorted by score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// Highlighted matches of `q` (empty without `q`).
    pub snippets: Snippets,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchResults {
    /// This page's hits, in sort order.
    pub hits: Vec<SearchHit>,
    /// How many records match in all (every page).
    pub total: usize,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// The newest-first sort key: (start time ms, journal seq).
type SortKey = (i64, u64);

/// One page: the total match count, the hits (with scores when score-sorted), the next cursor.
type Page = (usize, Vec<(DocAddress, Option<f32>)>, Option<String>);

fn encode_cursor(text: &str) -> String {
    URL_SAFE_NO_PAD.encode(text)
}

fn decode_cursor(cursor: &str) -> Result<String, LogError> {
    URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| bad("cursor", "not a cursor from a previous page"))
}

fn newest_cursor(cursor: &str) -> Result<SortKey, LogError> {
    let text = decode_cursor(cursor)?;
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("t"), Some(time), Some(seq), None) => time
            .parse()
            .ok()
            .zip(seq.parse().ok())
            .ok_or_else(|| bad("cursor", "not a cursor from a previous page")),
        _ => Err(bad("cursor", "not a cursor of a newest-first search")),
    }
}

fn offset_cursor(cursor: &str) -> Result<usize, LogError> {
    let text = decode_cursor(cursor)?;
    let offset: usize = text
        .strip_prefix("o:")
        .and_then(|offset| offset.parse().ok())
        .ok_or_else(|| bad("cursor", "not a cursor of a score-sorted search"))?;
    if offset > MAX_OFFSET {
        return Err(bad(
            "cursor",
            &format!(
                "out of range (score-sorted pages end at {MAX_OFFSET} hits; narrow the query)"
            ),
        ));
    }
    Ok(offset)
}

/// Scores documents by (time, seq), or `None` for those not strictly before the cursor.
struct NewestFirst {
    before: Option<SortKey>,
}

struct NewestFirstSegment {
    time: Column<i64>,
    seq: Column<u64>,
    before: Option<SortKey>,
}

impl CustomScorer<Option<SortKey>> for NewestFirst {
    type Child = NewestFirstSegment;

    fn segment_scorer(
        &self,
        segment_reader: &SegmentReader,
    ) -> tantivy::Result<NewestFirstSegment> {
        Ok(NewestFirstSegment {
            time: segment_reader.fast_fields().i64("time")?,
            seq: segment_reader.fast_fields().u64("seq")?,
            before: self.before,
        })
    }
}

impl CustomSegmentScorer<Option<SortKey>> for NewestFirstSegment {
    fn score(&mut self, doc: DocId) -> Option<SortKey> {
        let key = (self.time.first(doc)?, self.seq.first(doc)?);
        match self.before {
            Some(before) if key >= before => None,
            _ => Some(key),
        }
    }
}

impl LogStore {
    /// Search the log. Sees what the last index commit holds (see [`LogStore::sync`]).
    /// A query too long or complex is a [`LogError::BadQuery`]; a search still running after
    /// `search_timeout_ms` stops with [`LogError::Timeout`].
    pub fn search(&self, params: &SearchParams) -> Result<SearchResults, LogError> {
        self.search_until(params, Instant::now() + self.search_timeout)
    }

    /// [`LogStore::search`] with an explicit deadline.
    pub(crate) fn search_until(
        &self,
        params: &SearchParams,
        deadline: Instant,
    ) -> Result<SearchResults, LogError> {
        let timeout_ms = self.search_timeout.as_millis() as u64;
        let timed_out = |err: tantivy::TantivyError| {
            if is_deadline(&err) {
                LogError::Timeout(timeout_ms)
            } else {
                LogError::from(err)
            }
        };
        let fields = &self.schema;
        let limit = params.limit.clamp(1, MAX_LIMIT);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut text_query: Option<Box<dyn Query>> = None;
        if let Some(q) = params.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
            check_query(q)?;
            let mut parser = QueryParser::for_index(
                &self.index,
                vec![fields.input, fields.output, fields.error],
            );
            parser.set_conjunction_by_default();
            let q = rewrite_time_clauses(q);
            let parsed = match parser.parse_query(&q) {
                // `-weather` alone means everything but weather.
                Err(QueryParserError::AllButQueryForbidden) => {
                    parser.parse_query(&format!("* {q}"))
                }
                other => other,
            }
            .map_err(|err| LogError::BadQuery(err.to_string()))?;
            text_query = Some(parsed.box_clone());
            clauses.push((Occur::Must, parsed));
        }
        if params.from.is_some() || params.to.is_some() {
            let bound = |value: Option<i64>| value.map_or(Bound::Unbounded, Bound::Included);
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new_i64_bounds(
                    "time".into(),
                    bound(params.from),
                    bound(params.to),
                )),
            ));
        }
        let term = |field, value: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        if let Some(model) = &params.model {
            let either = BooleanQuery::new(vec![
                (Occur::Should, term(fields.model, model)),
                (Occur::Should, term(fields.served_model, model)),
            ]);
            clauses.push((Occur::Must, Box::new(either)));
        }
        if let Some(user) = &params.user {
            clauses.push((Occur::Must, term(fields.user, user)));
        }
        if let Some(feature) = &params.feature {
            clauses.push((Occur::Must, term(fields.feature, feature)));
        }
        if let Some(status) = params.status {
            let status = Term::from_field_u64(fields.status, u64::from(status));
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(status, IndexRecordOption::Basic)),
            ));
        }
        let query: Box<dyn Query> = if clauses.is_empty() {
            Box::new(AllQuery)
        } else {
            Box::new(BooleanQuery::new(clauses))
        };

        let searcher = self.reader.searcher();
        let (total, found, next_cursor): Page = match params.sort {
            SearchSort::Newest => {
                let before = params.cursor.as_deref().map(newest_cursor).transpose()?;
                let collector = WithDeadline::new(
                    (
                        Count,
                        TopDocs::with_limit(limit + 1).custom_score(NewestFirst { before }),
                    ),
                    deadline,
                );
                let (total, top) = searcher.search(&query, &collector).map_err(timed_out)?;
                let mut top: Vec<(SortKey, DocAddress)> = top
                    .into_iter()
                    .filter_map(|(key, address)| key.map(|key| (key, address)))
                    .collect();
                let more = top.len() > limit;
                top.truncate(limit);
                let next = top
                    .last()
                    .filter(|_| more)
                    .map(|((time, seq), _)| encode_cursor(&format!("t:{time}:{seq}")));
                let hits = top.into_iter().map(|(_, address)| (address, None));
                (total, hits.collect(), next)
            }
            SearchSort::Score => {
                let offset = params
                    .cursor
                    .as_deref()
                    .map(offset_cursor)
                    .transpose()?
                    .unwrap_or(0);
                let collector = WithDeadline::new(
                    (Count, TopDocs::with_limit(limit + 1).and_offset(offset)),
                    deadline,
                );
                let (total, top) = searcher.search(&query, &collector).map_err(timed_out)?;
                let more = top.len() > limit;
                let next = more.then(|| encode_cursor(&format!("o:{}", offset + limit)));
                let hits = top
                    .into_iter()
                    .take(limit)
                    .map(|(score, address)| (address, Some(score)));
                (total, hits.collect(), next)
            }
        };

        // Snippets only for the fields `q` has words in.
        let mut snippet_fields = (false, false);
        if let Some(query) = &text_query {
            query.query_terms(&mut |term, _| {
                snippet_fields.0 |= term.field() == fields.input;
                snippet_fields.1 |= term.field() == fields.output;
            });
        }
        let generator = |wanted: bool, field| match (&text_query, wanted) {
            (Some(query), true) => snippet_generator(&searcher, query.as_ref(), field).map(Some),
            _ => Ok(None),
        };
        let input_snippets = generator(snippet_fields.0, fields.input)?;
        let output_snippets = generator(snippet_fields.1, fields.output)?;
        let mut hits = Vec::with_capacity(found.len());
        for (address, score) in found {
            if Instant::now() >= deadline {
                return Err(LogError::Timeout(timeout_ms));
            }
            let Some(json) = self.stored_json(&searcher, address)? else {
                continue;
            };
            let mut hit = match serde_json::from_str::<HitFields>(&json) {
                Ok(fields) => fields.into_hit(),
                Err(err) => {
                    tracing::warn!(error = %err, "stored log record has an unexpected shape");
                    continue;
                }
            };
            hit.score = score;
            if input_snippets.is_some() || output_snippets.is_some() {
                if let Ok(record) = serde_json::from_str::<LogRecord>(&json) {
                    if let Some(generator) = &input_snippets {
                        hit.snippets.input = highlighted(generator, &input_text(&record));
                    }
                    if let Some(generator) = &output_snippets {
                        hit.snippets.output = highlighted(generator, &output_text(&record));
                    }
                }
            }
            hits.push(hit);
        }
        Ok(SearchResults {
            hits,
            total,
            next_cursor,
        })
    }

    /// The whole stored (redacted) record with this id, if it is indexed.
    pub fn get(&self, id: &str) -> Result<Option<serde_json::Value>, LogError> {
        let searcher = self.reader.searcher();
        let query = TermQuery::new(
            Term::from_field_text(self.schema.id, id),
            IndexRecordOption::Basic,
        );
        let top = searcher.search(&query, &TopDocs::with_limit(1))?;
        match top.first() {
            Some(&(_, address)) => match self.stored_json(&searcher, address)? {
                Some(json) => Ok(Some(serde_json::from_str(&json)?)),
                None => Ok(None),
            },
            None => Ok(None),
        }
    }

    /// The stored record JSON of one document.
    fn stored_json(
        &self,
        searcher: &Searcher,
        address: DocAddress,
    ) -> Result<Option<String>, LogError> {
        let doc: TantivyDocument = searcher.doc(address)?;
        Ok(doc
            .get_first(self.schema.record)
            .and_then(|value| value.as_str())
            .map(str::to_string))
    }
}

fn snippet_generator(
    searcher: &Searcher,
    query: &dyn Query,
    field: tantivy::schema::Field,
) -> Result<SnippetGenerator, LogError> {
    let mut generator = SnippetGenerator::create(searcher, query, field)?;
    generator.set_max_num_chars(SNIPPET_CHARS);
    Ok(generator)
}

fn highlighted(generator: &SnippetGenerator, text: &str) -> Option<String> {
    let snippet = generator.snippet(text);
    (!snippet.highlighted().is_empty()).then(|| snippet.to_html())
}

/// The hit fields of a stored record; everything else in the JSON is skipped unparsed.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct HitFields {
    id: String,
    started_ms: i64,
    started_at: String,
    requested_model: String,
    served_model: Option<String>,
    user: String,
    feature: Option<String>,
    status: u16,
    latency_ms: f64,
    cost_usd: f64,
}

impl HitFields {
    fn into_hit(self) -> SearchHit {
        SearchHit {
            id: self.id,
            time: self.started_ms,
            started_at: self.started_at,
            model: self.requested_model,
            served_model: self.served_model,
            user: self.user,
            feature: self.feature,
            status: self.status,
            latency_ms: self.latency_ms,
            cost_usd: self.cost_usd,
            score: None,
            snippets: Snippets::default(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let params = SearchParams::from_query(
            "q=hello+world%21&model=gpt-4o-mini&status=500&limit=500&sort=score",
        )
        .unwrap();
        assert_eq!(params.q.as_deref(), Some("hello world!"));
        assert_eq!(params.model.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(params.status, Some(500));
        assert_eq!(params.limit, MAX_LIMIT);
        assert_eq!(params.sort, SearchSort::Score);
    }

    #[test]
    fn from_and_to_accept_rfc3339_dates_and_epoch_ms() {
        let params =
            SearchParams::from_query("from=2024-05-01T00:00:00Z&to=1714608000000").unwrap();
        assert_eq!(params.from, Some(1_714_521_600_000));
        assert_eq!(params.to, Some(1_714_608_000_000));
        let params =
            SearchParams::from_query("from=2024-05-01&to=2024-05-01T12:00:00%2B02:00").unwrap();
        assert_eq!(params.from, Some(1_714_521_600_000));
        assert_eq!(params.to, Some(1_714_557_600_000));
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (query, param) in [
            ("from=yesterday", "`from`"),
            ("to=2024-13-01", "`to`"),
            ("status=abc", "`status`"),
            ("limit=0", "`limit`"),
            ("sort=oldest", "`sort`"),
            ("q=%zz", "`q`"),
            ("from=2&to=1", "`from`"),
        ] {
            let err = SearchParams::from_query(query).unwrap_err();
            assert!(matches!(err, LogError::BadRequest(_)), "{query}");
            assert!(err.to_string().contains(param), "{query}: {err}");
            assert_eq!(err.status(), 400);
        }
    }

    #[test]
    fn empty_and_unknown_parameters_are_ignored() {
        let params = SearchParams::from_query("?q=&model=&foo=bar&&limit=5").unwrap();
        assert_eq!(
            params,
            SearchParams {
                limit: 5,
                ..SearchParams::default()
            }
        );
    }

    #[test]
    fn time_clauses_with_rfc3339_become_epoch_ms() {
        assert_eq!(
            rewrite_time_clauses("error time:[2024-05-01T00:00:00Z TO *] status:500"),
            "error time:[1714521600000 TO *] status:500"
        );
        assert_eq!(
            rewrite_time_clauses("time:>=2024-05-01"),
            "time:>=1714521600000"
        );
        assert_eq!(rewrite_time_clauses("time:>1000"), "time:>1000");
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = encode_cursor("t:1714521600000:42");
        assert_eq!(newest_cursor(&cursor).unwrap(), (1_714_521_600_000, 42));
        assert!(newest_cursor("not-a-cursor!").is_err());
        assert!(offset_cursor(&cursor).is_err());
        assert_eq!(offset_cursor(&encode_cursor("o:20")).unwrap(), 20);
    }
}
