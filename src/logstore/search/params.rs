//! The admin search's parameters: parsing and validating the query string.

use super::*;

/// What `GET /admin/logs` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParams {
    /// Tantivy query syntax; `None` matches everything.
    pub q: Option<String>,
    /// Earliest request start, epoch ms (inclusive).
    pub from: Option<i64>,
    /// Latest request start, epoch ms (inclusive).
    pub to: Option<i64>,
    /// Requested or served model.
    pub model: Option<String>,
    /// The principal's user name.
    pub user: Option<String>,
    /// The product feature.
    pub feature: Option<String>,
    /// HTTP status returned to the client.
    pub status: Option<u16>,
    /// Page size, 1..=200.
    pub limit: usize,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Newest first (default) or best match first.
    pub sort: SearchSort,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            q: None,
            from: None,
            to: None,
            model: None,
            user: None,
            feature: None,
            status: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
            sort: SearchSort::Newest,
        }
    }
}

impl SearchParams {
    /// Parse a URL query string (`q=…&from=…&limit=…`, percent-encoded, `+` for space).
    /// `from`/`to` take RFC 3339, a date (`2024-05-01`, UTC midnight) or epoch ms. Empty
    /// values count as absent; unknown parameters are ignored; a bad value is a
    /// [`LogError::BadRequest`] naming the parameter.
    pub fn from_query(query_string: &str) -> Result<SearchParams, LogError> {
        let mut params = SearchParams::default();
        for pair in query_string.trim_start_matches('?').split('&') {
            if pair.is_empty() {
                continue;
            }
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = percent_decode(raw_key)
                .ok_or_else(|| bad("query string", "bad percent-encoding"))?;
            let value =
                percent_decode(raw_value).ok_or_else(|| bad(&key, "bad percent-encoding"))?;
            if value.trim().is_empty() {
                continue;
            }
            match key.as_str() {
                "q" => params.q = Some(value),
                "from" => {
                    params.from = Some(parse_time(&value).ok_or_else(|| bad("from", TIME_HINT))?)
                }
                "to" => params.to = Some(parse_time(&value).ok_or_else(|| bad("to", TIME_HINT))?),
                "model" => params.model = Some(value),
                "user" => params.user = Some(value),
                "feature" => params.feature = Some(value),
                "status" => {
                    let status = value
                        .trim()
                        .parse::<u16>()
                        .ok()
                        .filter(|s| (100..=599).contains(s));
                    params.status =
                        Some(status.ok_or_else(|| bad("status", "must be an HTTP status code"))?);
                }
                "limit" => {
                    let limit = value.trim().parse::<usize>().ok().filter(|&l| l > 0);
                    params.limit = limit
                        .ok_or_else(|| bad("limit", "must be a positive integer"))?
                        .min(MAX_LIMIT);
                }
                "cursor" => params.cursor = Some(value),
                "sort" => {
                    params.sort = match value.trim() {
                        "newest" | "time" => SearchSort::Newest,
                        "score" | "relevance" => SearchSort::Score,
                        _ => return Err(bad("sort", "must be `newest` or `score`")),
                    }
                }
                _ => {}
            }
        }
        if let (Some(from), Some(to)) = (params.from, params.to) {
            if from > to {
                return Err(bad("from", "must not be after `to`"));
            }
        }
        Ok(params)
    }
}

pub(super) const TIME_HINT: &str =
    "must be RFC 3339 (2024-05-01T12:00:00Z), a date (2024-05-01) or epoch milliseconds";

pub(super) fn bad(param: &str, reason: &str) -> LogError {
    LogError::BadRequest(format!("parameter `{param}`: {reason}"))
}

use crate::http::percent_decode;

/// Epoch ms from RFC 3339, a bare date, a zone-less date-time (UTC) or an integer.
pub(super) fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(time.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(time) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return Some(time.and_utc().timestamp_millis());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|time| time.and_utc().timestamp_millis())
}

pub(super) const TIMESTAMP: &str =
    r"\d{4}-\d{2}-\d{2}(?:[Tt]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:[Zz]|[+\-]\d{2}:\d{2})?)?";

static TIME_CLAUSE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(&format!(
        r"\btime:(?:(?P<open>[\[{{])\s*(?P<lo>{TIMESTAMP}|\*)\s+TO\s+(?P<hi>{TIMESTAMP}|\*)\s*(?P<close>[\]}}])|(?P<op>>=|<=|>|<)?(?P<at>{TIMESTAMP}))"
    ))
    .ok()
});

/// Turn RFC 3339 times inside `time:` clauses into epoch ms, which the `time` field holds.
pub(super) fn rewrite_time_clauses(q: &str) -> std::borrow::Cow<'_, str> {
    let Some(regex) = TIME_CLAUSE.as_ref() else {
        return q.into();
    };
    regex.replace_all(q, |caps: &Captures| {
        let ms = |name: &str| {
            let text = caps.name(name).map(|m| m.as_str()).unwrap_or("*");
            match text {
                "*" => "*".to_string(),
                other => parse_time(other).map_or_else(|| other.to_string(), |ms| ms.to_string()),
            }
        };
        let part = |name: &str| caps.name(name).map(|m| m.as_str()).unwrap_or("");
        if caps.name("open").is_some() {
            format!(
                "time:{}{} TO {}{}",
                part("open"),
                ms("lo"),
                ms("hi"),
                part("close")
            )
        } else {
            format!("time:{}{}", part("op"), ms("at"))
        }
    })
}
