//! Log store tests on real Tantivy indexes in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::canonical::{ChatRequest, Message, Role, Usage};
use crate::error::GatewayError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use std::collections::HashSet;
use std::path::Path;

const DAY_MS: i64 = 86_400_000;
/// 2024-05-01T00:00:00Z
const BASE_MS: i64 = 1_714_521_600_000;

/// A minimal record around `request`.
pub(crate) fn record_with(request: ChatRequest) -> LogRecord {
    LogRecord {
        id: uuid::Uuid::new_v4().to_string(),
        started_at: "2024-05-01T00:00:00Z".into(),
        started_ms: BASE_MS,
        finished_at: "2024-05-01T00:00:01Z".into(),
        dialect: "openai".into(),
        endpoint: "chat".into(),
        user: "alice".into(),
        team: Some("support".into()),
        tier: None,
        key_id: "key-1".into(),
        feature: Some("chat".into()),
        requested_model: request.model.clone(),
        served_model: Some(request.model.clone()),
        provider: Some("mock".into()),
        attempts: Vec::new(),
        status: 200,
        error: None,
        request,
        output_text: "all good".into(),
        output_tool_calls: Vec::new(),
        finish_reason: Some("stop".into()),
        usage: Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        },
        cost_usd: 0.001,
        cost_unknown: false,
        latency_ms: 120.0,
        first_token_ms: None,
        stream: false,
        client_disconnected: false,
        policy_version: None,
        replay_of: None,
        correlation_id: None,
        embedding_dimensions: None,
        limits: None,
        budget: None,
        cache: None,
    }
}

fn record(id: &str, started_ms: i64, prompt: &str) -> LogRecord {
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::text(Role::User, prompt)],
        ..ChatRequest::default()
    };
    let mut record = record_with(request);
    record.id = id.into();
    record.started_ms = started_ms;
    record
}

fn config(dir: &Path) -> LogsConfig {
    LogsConfig {
        dir: dir.to_path_buf(),
        fsync_interval_ms: 20,
        commit_interval_ms: 100,
        // The fixed test dates are long past: keep retention from deleting them.
        retention_days: 100 * 365,
        ..LogsConfig::default()
    }
}

fn query(store: &LogStore, query_string: &str) -> SearchResults {
    store
        .search(&SearchParams::from_query(query_string).unwrap())
        .unwrap()
}

fn ids(results: &SearchResults) -> Vec<String> {
    results.hits.iter().map(|h| h.id.clone()).collect()
}

/// Follow `next_cursor` to the end, returning every id in order.
fn all_pages(store: &LogStore, base: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut q = base.to_string();
        if let Some(cursor) = &cursor {
            q.push_str(&format!("&cursor={cursor}"));
        }
        let page = query(store, &q);
        assert!(page.hits.len() <= 10);
        out.extend(ids(&page));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return out,
        }
    }
    panic!("pagination did not end");
}

async fn submit_all(store: &LogStore, records: impl IntoIterator<Item = LogRecord>) {
    let sender = store.sender();
    for record in records {
        sender.submit(record).await;
    }
}

/// Wait (without forcing an fsync) until the writer reports `records` durable.
async fn wait_durable(store: &LogStore, records: u64) {
    for _ in 0..1000 {
        if store.status_json()["journal_records"] == records {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the writer never made {records} records durable");
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn planted_secrets_are_searchable_by_harmless_words_but_never_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    let email = "jane.doe@example.com";
    let card = "4111 1111 1111 1111";
    let key = "sk-proj-Zx81kQ2mN4pL7vB9tR3wY6uE";
    let prompt = format!("Please check my invoice. Mail {email}, card {card}, api key {key}.");
    let mut planted = record("planted", BASE_MS, &prompt);
    planted.output_text = format!("I emailed {email} about the invoice");
    submit_all(
        &store,
        [
            planted,
            record("other", BASE_MS, "unrelated weather question"),
        ],
    )
    .await;
    store.sync().await.unwrap();

    let results = query(&store, "q=invoice");
    assert_eq!(ids(&results), ["planted"]);
    let snippet = results.hits[0].snippets.input.clone().unwrap();
    assert!(snippet.contains("<b>invoice</b>"), "{snippet}");
    assert!(!snippet.contains("jane"), "{snippet}");

    let results = query(&store, "q=emailed");
    let snippets = &results.hits[0].snippets;
    assert!(snippets.input.is_none(), "{snippets:?}");
    assert!(
        snippets
            .output
            .as_deref()
            .unwrap()
            .contains("<b>emailed</b> [EMAIL]"),
        "{snippets:?}"
    );
    assert!(query(&store, "q=user:alice").hits[0].snippets == Snippets::default());

    let stored = store.get("planted").unwrap().unwrap().to_string();
    for placeholder in ["[EMAIL]", "[CARD]", "[SECRET]"] {
        assert!(
            stored.contains(placeholder),
            "{placeholder} missing: {stored}"
        );
    }
    store.shutdown().await;

    let raw_card = card.replace(' ', "");
    for path in files_under(tmp.path()) {
        let bytes = std::fs::read(&path).unwrap();
        for secret in [email, card, raw_card.as_str(), key, "Zx81kQ2mN4pL7vB9"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} found in {}",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn field_filters_and_field_queries_select_matching_records() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    let mut slow_failure = record("slow-failure", BASE_MS, "summarise the report");
    slow_failure.status = 500;
    slow_failure.latency_ms = 2500.0;
    slow_failure.error = Some("upstream timeout from provider".into());
    let mut other_model = record("other-model", BASE_MS + 1, "summarise the report");
    other_model.requested_model = "claude-haiku".into();
    other_model.served_model = Some("claude-haiku".into());
    other_model.user = "bob".into();
    other_model.feature = Some("search".into());
    let mut fallback = record("fallback", BASE_MS + 2, "translate this");
    fallback.requested_model = "claude-haiku".into();
    fallback.served_model = Some("gpt-4o-mini".into());
    submit_all(&store, [slow_failure, other_model, fallback]).await;
    store.sync().await.unwrap();

    assert_eq!(ids(&query(&store, "status=500")), ["slow-failure"]);
    assert_eq!(ids(&query(&store, "user=bob")), ["other-model"]);
    assert_eq!(ids(&query(&store, "feature=search")), ["other-model"]);
    // `model` matches the requested or the served model.
    assert_eq!(
        ids(&query(&store, "model=gpt-4o-mini")),
        ["fallback", "slow-failure"]
    );
    assert_eq!(
        ids(&query(
            &store,
            "q=model:gpt-4o-mini%20status:500%20latency_ms:>1000"
        )),
        ["slow-failure"]
    );
    assert_eq!(
        ids(&query(
            &store,
            "q=served_model:gpt-4o-mini model:claude-haiku"
        )),
        ["fallback"]
    );
    assert_eq!(ids(&query(&store, "q=timeout")), ["slow-failure"]);
    assert_eq!(
        ids(&query(&store, "q=summarise&user=alice")),
        ["slow-failure"]
    );
    assert_eq!(query(&store, "q=summarise").total, 2);
    store.shutdown().await;
}

#[tokio::test]
async fn time_ranges_filter_by_request_start() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    submit_all(
        &store,
        (0..5).map(|day| record(&format!("day{day}"), BASE_MS + day * DAY_MS, "hello")),
    )
    .await;
    store.sync().await.unwrap();

    // 2024-05-02 .. 2024-05-03 inclusive.
    let results = query(&store, "from=2024-05-02T00:00:00Z&to=2024-05-03");
    assert_eq!(ids(&results), ["day2", "day1"]);
    let results = query(&store, &format!("from={}", BASE_MS + 3 * DAY_MS));
    assert_eq!(ids(&results), ["day4", "day3"]);
    let results = query(
        &store,
        "q=time:%5B2024-05-02T00:00:00Z%20TO%202024-05-03T00:00:00Z%5D",
    );
    assert_eq!(ids(&results), ["day2", "day1"]);
    let results = query(&store, &format!("q=hello time:<{}", BASE_MS + DAY_MS));
    assert_eq!(ids(&results), ["day0"]);
    store.shutdown().await;
}

#[tokio::test]
async fn phrase_queries_respect_word_order() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    submit_all(
        &store,
        [
            record("ordered", BASE_MS, "the quick brown fox jumps"),
            record("shuffled", BASE_MS + 1, "the brown quick fox jumps"),
        ],
    )
    .await;
    store.sync().await.unwrap();
    assert_eq!(
        ids(&query(&store, "q=%22quick%20brown%20fox%22")),
        ["ordered"]
    );
    assert_eq!(query(&store, "q=quick brown fox").total, 2);
    store.shutdown().await;
}

#[tokio::test]
async fn pagination_visits_every_record_once_in_both_sorts() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    // Groups of three share a start time, so the tie-break matters.
    let records: Vec<LogRecord> = (0..57)
        .map(|i| {
            record(
                &format!("r{i:02}"),
                BASE_MS + (i / 3) * 1000,
                "paged request",
            )
        })
        .collect();
    let expected: HashSet<String> = records.iter().map(|r| r.id.clone()).collect();
    submit_all(&store, records).await;
    store.sync().await.unwrap();

    for base in [
        "limit=10",
        "limit=10&q=paged",
        "limit=10&sort=score&q=paged",
        "limit=10&sort=score",
    ] {
        let seen = all_pages(&store, base);
        assert_eq!(seen.len(), 57, "{base}");
        let unique: HashSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique, expected, "{base}");
    }
    let newest = all_pages(&store, "limit=10");
    assert_eq!(newest.first().map(String::as_str), Some("r56"));
    assert_eq!(newest.last().map(String::as_str), Some("r00"));
    assert_eq!(query(&store, "limit=10").total, 57);
    store.shutdown().await;
}

#[tokio::test]
async fn new_records_do_not_shift_newest_first_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    submit_all(
        &store,
        (0..6).map(|i| record(&format!("r{i}"), BASE_MS + i, "x")),
    )
    .await;
    store.sync().await.unwrap();
    let first = query(&store, "limit=3");
    assert_eq!(ids(&first), ["r5", "r4", "r3"]);
    submit_all(&store, [record("late", BASE_MS + 100, "x")]).await;
    store.sync().await.unwrap();
    let second = query(
        &store,
        &format!("limit=3&cursor={}", first.next_cursor.unwrap()),
    );
    assert_eq!(ids(&second), ["r2", "r1", "r0"]);
    assert_eq!(second.next_cursor, None);
    store.shutdown().await;
}

#[tokio::test]
async fn an_invalid_query_is_a_bad_query() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    for q in ["nosuchfield:x", "status:abc", "(unclosed"] {
        let params = SearchParams {
            q: Some(q.into()),
            ..SearchParams::default()
        };
        let err = store.search(&params).unwrap_err();
        assert!(matches!(err, LogError::BadQuery(_)), "{q}: {err:?}");
        assert_eq!(err.status(), 400);
    }
    let params = SearchParams {
        cursor: Some("garbage!".into()),
        ..SearchParams::default()
    };
    assert_eq!(store.search(&params).unwrap_err().status(), 400);
    store.shutdown().await;
}

#[tokio::test]
async fn a_crash_after_fsync_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    // The index never commits before the crash: only the journal holds the records.
    cfg.commit_interval_ms = 600_000;
    cfg.commit_every_records = 1_000_000;
    let store = LogStore::open(&cfg, None).unwrap();
    submit_all(
        &store,
        (0..40).map(|i| record(&format!("c{i}"), BASE_MS + i, "crash test")),
    )
    .await;
    // Past the fsync window: the writer has made all 40 durable on its own.
    wait_durable(&store, 40).await;
    store.simulate_crash();
    drop(store);

    let store = LogStore::open(&cfg, None).unwrap();
    store.sync().await.unwrap();
    let results = query(&store, "q=crash&limit=200");
    assert_eq!(results.total, 40);
    assert_eq!(store.status_json()["journal_records"], 40);
    store.shutdown().await;
}

#[tokio::test]
async fn a_crash_between_commits_indexes_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.commit_interval_ms = 600_000;
    cfg.commit_every_records = 1_000_000;
    let store = LogStore::open(&cfg, None).unwrap();
    submit_all(
        &store,
        (0..25).map(|i| record(&format!("a{i}"), BASE_MS + i, "twice")),
    )
    .await;
    store.sync().await.unwrap();
    submit_all(
        &store,
        (0..15).map(|i| record(&format!("b{i}"), BASE_MS + 100 + i, "twice")),
    )
    .await;
    wait_durable(&store, 40).await;
    store.simulate_crash();
    drop(store);

    let store = LogStore::open(&cfg, None).unwrap();
    store.sync().await.unwrap();
    let seen = all_pages(&store, "q=twice&limit=10");
    assert_eq!(seen.len(), 40);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 40);
    store.shutdown().await;
}

#[tokio::test]
async fn a_clean_shutdown_and_reopen_keeps_every_record_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let store = LogStore::open(&cfg, None).unwrap();
    submit_all(
        &store,
        (0..30).map(|i| record(&format!("s{i}"), BASE_MS + i, "restart")),
    )
    .await;
    // No sync: shutdown alone must drain, fsync and commit.
    store.shutdown().await;
    store
        .sender()
        .submit(record("after", BASE_MS, "restart"))
        .await;
    assert_eq!(store.status_json()["dropped_records"], 1);
    drop(store);

    let store = LogStore::open(&cfg, None).unwrap();
    assert_eq!(query(&store, "q=restart").total, 30);
    submit_all(&store, [record("s30", BASE_MS + 30, "restart")]).await;
    store.sync().await.unwrap();
    assert_eq!(query(&store, "q=restart").total, 31);
    let status = store.status_json();
    assert_eq!(status["journal_records"], 31);
    assert_eq!(status["indexed_records"], 31);
    assert_eq!(status["lag_records"], 0);
    assert_eq!(status["index_docs"], 31);
    store.shutdown().await;
}

#[tokio::test]
async fn a_torn_journal_tail_is_skipped_and_writing_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let store = LogStore::open(&cfg, None).unwrap();
    submit_all(
        &store,
        (0..5).map(|i| record(&format!("t{i}"), BASE_MS + i, "torn")),
    )
    .await;
    store.shutdown().await;
    drop(store);
    // A crash in the middle of appending a sixth record.
    let journal_dir = tmp.path().join("journal");
    let last = *journal::list_segments(&journal_dir)
        .unwrap()
        .last()
        .unwrap();
    let path = journal_dir.join(journal::segment_file_name(last));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 6, 0, 0, 0, 0, 0, 0, 0, b'{', b'"']);
    std::fs::write(&path, bytes).unwrap();

    let store = LogStore::open(&cfg, None).unwrap();
    submit_all(&store, [record("t5", BASE_MS + 5, "torn")]).await;
    store.sync().await.unwrap();
    assert_eq!(query(&store, "q=torn").total, 6);
    assert_eq!(store.status_json()["journal_records"], 6);
    store.shutdown().await;
}

#[tokio::test]
async fn retention_deletes_expired_records_and_indexed_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.segment_bytes = 4096;
    cfg.retention_days = 7;
    let store = LogStore::open(&cfg, None).unwrap();
    let now = now_ms();
    let long = "retained ".repeat(100);
    submit_all(
        &store,
        (0..10).map(|i| record(&format!("old{i}"), now - 30 * DAY_MS + i, &long)),
    )
    .await;
    submit_all(
        &store,
        (0..3).map(|i| record(&format!("new{i}"), now - DAY_MS + i, &long)),
    )
    .await;
    store.sync().await.unwrap();
    assert_eq!(query(&store, "q=retained").total, 13);

    let journal_dir = tmp.path().join("journal");
    let segments = journal::list_segments(&journal_dir).unwrap();
    assert!(segments.len() > 3, "{segments:?}");
    let month_ago = std::time::SystemTime::now() - Duration::from_secs(30 * 86_400);
    for &segment in &segments[..segments.len() - 2] {
        let file = std::fs::File::options()
            .write(true)
            .open(journal_dir.join(journal::segment_file_name(segment)))
            .unwrap();
        file.set_modified(month_ago).unwrap();
    }

    let report = store.run_retention().await.unwrap();
    assert_eq!(report.deleted_records, 10);
    assert_eq!(report.deleted_segments, segments.len() - 2);
    let results = query(&store, "q=retained");
    assert_eq!(results.total, 3);
    assert!(ids(&results).iter().all(|id| id.starts_with("new")));
    assert_eq!(journal::list_segments(&journal_dir).unwrap().len(), 2);
    store.shutdown().await;

    // Reopening after segments were deleted keeps counting from the index.
    let store = LogStore::open(&cfg, None).unwrap();
    submit_all(&store, [record("new3", now, &long)]).await;
    store.sync().await.unwrap();
    assert_eq!(query(&store, "q=retained").total, 4);
    store.shutdown().await;
}

#[tokio::test]
async fn a_full_channel_waits_instead_of_dropping() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.channel_capacity = 1;
    let store = LogStore::open(&cfg, None).unwrap();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let sender = store.sender();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                sender
                    .submit(record(&format!("bp{task}-{i}"), BASE_MS + i, "pressure"))
                    .await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    store.sync().await.unwrap();
    assert_eq!(query(&store, "q=pressure").total, 200);
    let status = store.status_json();
    assert!(
        status["backpressure_waits"].as_u64().unwrap() > 0,
        "{status}"
    );
    assert_eq!(status["dropped_records"], 0);
    store.shutdown().await;
}

#[tokio::test]
async fn the_policy_hook_redacts_before_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let hook: RedactHook = Arc::new(|text: &str| {
        text.contains("Falcon")
            .then(|| text.replace("Falcon", "[CODENAME]"))
    });
    let store = LogStore::open(&config(tmp.path()), Some(hook)).unwrap();
    submit_all(
        &store,
        [record("hooked", BASE_MS, "status of Falcon launch")],
    )
    .await;
    store.shutdown().await;
    let journal = std::fs::read(
        tmp.path()
            .join("journal")
            .join(journal::segment_file_name(1)),
    )
    .unwrap();
    assert!(!journal.windows(6).any(|w| w == b"Falcon"));
}

#[tokio::test]
async fn status_reports_lag_until_the_indexer_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.commit_interval_ms = 600_000;
    cfg.commit_every_records = 1_000_000;
    let store = LogStore::open(&cfg, None).unwrap();
    submit_all(
        &store,
        (0..4).map(|i| record(&format!("l{i}"), BASE_MS, "lag")),
    )
    .await;
    wait_durable(&store, 4).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let status = store.status_json();
    assert_eq!(status["journal_records"], 4);
    assert_eq!(status["lag_records"], 4);
    assert!(status["lag_ms"].as_i64().unwrap() > 0, "{status}");
    assert!(status["journal_bytes"].as_u64().unwrap() > 0);
    assert!(status["last_commit_at"].is_null());
    store.sync().await.unwrap();
    let status = store.status_json();
    assert_eq!(status["lag_records"], 0);
    assert_eq!(status["lag_ms"], 0);
    assert!(status["last_commit_at"].is_string());
    store.shutdown().await;
}

#[tokio::test]
async fn get_returns_none_for_an_unknown_id() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    assert_eq!(store.get("missing").unwrap(), None);
    store.shutdown().await;
}

#[test]
fn invalid_logs_config_is_rejected_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.fsync_interval_ms = 1000;
    let err = LogStore::open(&cfg, None).unwrap_err();
    assert!(err.to_string().contains("fsync_interval_ms"), "{err}");
}

#[tokio::test]
async fn a_purely_negative_query_matches_everything_else() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    submit_all(
        &store,
        [
            record("keep", BASE_MS, "sunny day"),
            record("drop", BASE_MS, "rainy weather"),
        ],
    )
    .await;
    store.sync().await.unwrap();
    assert_eq!(ids(&query(&store, "q=-weather")), ["keep"]);
    assert_eq!(ids(&query(&store, "q=-weather&user=alice")), ["keep"]);
    store.shutdown().await;
}

#[test]
fn a_record_of_another_shape_is_still_indexed_by_id_and_time() {
    let schema = LogSchema::from_schema(&indexer::build_schema()).unwrap();
    let payload = br#"{"id":"old-1","started_ms":5,"user":"u","status":200,"renamed":true}"#;
    let doc = schema.fallback_document(payload, 9).unwrap();
    let index = Index::create_in_ram(indexer::build_schema());
    let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
    writer.add_document(doc).unwrap();
    writer.commit().unwrap();
    let searcher = index.reader().unwrap().searcher();
    let query = tantivy::query::TermQuery::new(
        tantivy::Term::from_field_text(schema.id, "old-1"),
        tantivy::schema::IndexRecordOption::Basic,
    );
    assert_eq!(
        searcher.search(&query, &tantivy::collector::Count).unwrap(),
        1
    );
    assert!(schema.fallback_document(b"[1,2]", 1).is_none());
}

/// A redact hook that blocks every call while its gate is closed and records that it ran.
struct GatedHook {
    hook: RedactHook,
    open: Arc<AtomicBool>,
    entered: Arc<AtomicBool>,
}

fn gated_hook() -> GatedHook {
    let open = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicBool::new(false));
    let (gate, seen) = (open.clone(), entered.clone());
    let hook: RedactHook = Arc::new(move |_text: &str| {
        seen.store(true, Ordering::SeqCst);
        while !gate.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        None
    });
    GatedHook {
        hook,
        open,
        entered,
    }
}

async fn wait_for(flag: &AtomicBool) {
    for _ in 0..2000 {
        if flag.load(Ordering::SeqCst) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("flag never set");
}

#[tokio::test]
async fn hand_off_gives_the_record_back_once_the_waiting_bound_is_reached() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.channel_capacity = 1;
    cfg.max_pending_hand_offs = 2;
    let gate = gated_hook();
    let store = LogStore::open(&cfg, Some(gate.hook.clone())).unwrap();
    let sender = store.sender();
    // The writer takes the first record and blocks in the hook.
    sender.hand_off(record("h0", BASE_MS, "bounded")).unwrap();
    wait_for(&gate.entered).await;
    // One fits in the channel, two wait in background hand-offs…
    for id in ["h1", "h2", "h3"] {
        sender.hand_off(record(id, BASE_MS, "bounded")).unwrap();
    }
    assert_eq!(store.status_json()["pending_hand_offs"], 2);
    // …and the next one is given back instead of spawning another wait.
    let back = sender
        .hand_off(record("h4", BASE_MS, "bounded"))
        .unwrap_err();
    assert_eq!(back.id, "h4");
    assert_eq!(store.status_json()["pending_hand_offs"], 2);
    gate.open.store(true, Ordering::SeqCst);
    sender.submit(back).await;
    store.sync().await.unwrap();
    let status = store.status_json();
    assert_eq!(status["pending_hand_offs"], 0, "{status}");
    assert_eq!(status["hand_offs_refused"], 1, "{status}");
    assert_eq!(status["dropped_records"], 0, "{status}");
    assert_eq!(query(&store, "q=bounded").total, 5);
    store.shutdown().await;
}

#[tokio::test]
async fn blocking_submit_waits_for_room_outside_a_runtime_and_works_inside_one() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.channel_capacity = 1;
    cfg.max_pending_hand_offs = 0;
    let gate = gated_hook();
    let store = LogStore::open(&cfg, Some(gate.hook.clone())).unwrap();
    let sender = store.sender();
    sender.hand_off(record("b0", BASE_MS, "blocking")).unwrap();
    wait_for(&gate.entered).await;
    sender.hand_off(record("b1", BASE_MS, "blocking")).unwrap();
    // The channel is full and no hand-off may wait: a plain thread blocks until room.
    let done = Arc::new(AtomicBool::new(false));
    let thread = {
        let (sender, done) = (sender.clone(), done.clone());
        std::thread::spawn(move || {
            sender.blocking_submit(record("b2", BASE_MS, "blocking"));
            done.store(true, Ordering::SeqCst);
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        !done.load(Ordering::SeqCst),
        "blocking_submit returned with no room"
    );
    gate.open.store(true, Ordering::SeqCst);
    wait_for(&done).await;
    thread.join().unwrap();
    // Inside a runtime it must not panic (tokio's blocking_send would).
    sender.blocking_submit(record("b3", BASE_MS, "blocking"));
    store.sync().await.unwrap();
    let status = store.status_json();
    assert!(
        status["backpressure_waits"].as_u64().unwrap() >= 1,
        "{status}"
    );
    assert_eq!(status["dropped_records"], 0, "{status}");
    assert_eq!(query(&store, "q=blocking").total, 4);
    store.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_slow_hook_finishes_in_its_budget_and_journals_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.shutdown_timeout_ms = 2_000;
    // 20 ms per hooked string: a few hundred records take minutes with the hook.
    let hook: RedactHook = Arc::new(|text: &str| {
        std::thread::sleep(Duration::from_millis(20));
        text.contains("Falcon")
            .then(|| text.replace("Falcon", "[CODENAME]"))
    });
    let store = LogStore::open(&cfg, Some(hook)).unwrap();
    let sender = store.sender();
    for i in 0..400 {
        let prompt = format!("drain Falcon mail user{i}@example.com");
        sender
            .hand_off(record(&format!("s{i}"), BASE_MS + i, &prompt))
            .unwrap();
    }
    let started = std::time::Instant::now();
    store.shutdown().await;
    let elapsed = started.elapsed();
    eprintln!("shutdown took {elapsed:?}");
    assert!(
        elapsed < Duration::from_millis(4_500),
        "shutdown took {elapsed:?}"
    );
    assert_eq!(store.status_json()["dropped_records"], 0);
    drop(store);

    let store = LogStore::open(&cfg, None).unwrap();
    store.sync().await.unwrap();
    assert_eq!(query(&store, "q=drain").total, 400);
    store.shutdown().await;
    // Under shutdown pressure the built-in detectors still ran on every record.
    for path in files_under(tmp.path()) {
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(12).any(|w| w == b"@example.com"),
            "an e-mail address reached {}",
            path.display()
        );
    }
}

/// Unmounts a test tmpfs when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Mount a tmpfs of `size` at `dir`; `None` (with a message) when this machine cannot.
fn small_tmpfs(dir: &Path, size: &str) -> Option<Unmount> {
    std::fs::create_dir_all(dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !mounted {
        eprintln!(
            "skipped: cannot mount a tmpfs at {} (needs root)",
            dir.display()
        );
        return None;
    }
    Some(Unmount(dir.to_path_buf()))
}

/// Fill the file system holding `dir` with one file; returns its path.
fn fill_disk(dir: &Path) -> std::path::PathBuf {
    use std::io::Write as _;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
    path
}

async fn wait_status(store: &LogStore, field: &str, value: serde_json::Value) {
    for _ in 0..1000 {
        if store.status_json()[field] == value {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "status {field} never became {value}: {}",
        store.status_json()
    );
}

#[tokio::test]
async fn a_full_disk_keeps_records_and_journals_them_once_space_is_freed() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = tmp.path().join("small");
    let Some(_unmount) = small_tmpfs(&mount, "2m") else {
        return;
    };
    // The journal lives on the small file system, the index on the normal one.
    std::os::unix::fs::symlink(&mount, tmp.path().join("journal")).unwrap();
    let mut cfg = config(tmp.path());
    cfg.segment_bytes = 128 * 1024;
    let filler_text = "padding ".repeat(250);
    let make = |word: &str, i: i64| {
        record(
            &format!("{word}{i}"),
            BASE_MS + i,
            &format!("{word} {filler_text}"),
        )
    };
    {
        let store = LogStore::open(&cfg, None).unwrap();
        submit_all(&store, (0..20).map(|i| make("before", i))).await;
        store.sync().await.unwrap();

        let filler = fill_disk(&mount);
        submit_all(&store, (0..50).map(|i| make("during", i))).await;
        wait_status(&store, "journal_failing", true.into()).await;
        let err = store.sync().await.unwrap_err();
        assert!(
            err.to_string().contains(".seg"),
            "the error names the file: {err}"
        );
        assert_eq!(query(&store, "q=during").total, 0);

        std::fs::remove_file(filler).unwrap();
        submit_all(&store, (0..20).map(|i| make("after", i))).await;
        wait_status(&store, "journal_failing", false.into()).await;
        store.sync().await.unwrap();
        for (word, n) in [("before", 20), ("during", 50), ("after", 20)] {
            assert_eq!(query(&store, &format!("q={word}")).total, n, "{word}");
        }
        let status = store.status_json();
        assert_eq!(status["unjournaled_records"], 0, "{status}");
        assert_eq!(status["dropped_records"], 0, "{status}");
        assert!(status["journal_write_failures"].as_u64().unwrap() > 0);
        store.shutdown().await;
    }
    // A restart (with the index rebuilt from the journal alone) keeps every record once.
    std::fs::remove_dir_all(tmp.path().join("index")).unwrap();
    let store = LogStore::open(&cfg, None).unwrap();
    store.sync().await.unwrap();
    for (word, n) in [("before", 20), ("during", 50), ("after", 20)] {
        assert_eq!(
            query(&store, &format!("q={word}")).total,
            n,
            "{word} after restart"
        );
    }
    assert_eq!(store.status_json()["journal_records"], 90);
    store.shutdown().await;
}

#[tokio::test]
async fn queries_too_long_deep_or_wide_are_refused_with_400() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    submit_all(&store, [record("q1", BASE_MS, "alpha beta")]).await;
    store.sync().await.unwrap();
    let deep = format!("{}alpha{}", "(".repeat(40), ")".repeat(40));
    let wide = (0..100)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" OR ");
    let prefixes = r#""a"* OR "b"* OR "c"* OR "d"* OR "e"* OR "f"*"#.to_string();
    let long = "alpha ".repeat(1000);
    for q in [deep, wide, prefixes, long] {
        let params = SearchParams {
            q: Some(q.clone()),
            ..SearchParams::default()
        };
        let Err(err) = store.search(&params) else {
            panic!(
                "{q:.80} was accepted: {:?}",
                tantivy::query_grammar::parse_query_lenient(&q).0
            );
        };
        assert!(matches!(err, LogError::BadQuery(_)), "{q:.60}: {err}");
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains("too complex"), "{err}");
    }
    // Ordinary queries still run.
    assert_eq!(query(&store, "q=alpha+AND+(beta+OR+gamma)").total, 1);
    assert_eq!(query(&store, "q=%22alpha+bet%22*").total, 1);
    store.shutdown().await;
}

#[tokio::test]
async fn a_search_past_its_deadline_stops_with_a_503_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    submit_all(
        &store,
        (0..50).map(|i| record(&format!("d{i}"), BASE_MS + i, "slow search")),
    )
    .await;
    store.sync().await.unwrap();
    let params = SearchParams::from_query("q=slow").unwrap();
    let err = store
        .search_until(&params, std::time::Instant::now())
        .unwrap_err();
    assert!(matches!(err, LogError::Timeout(_)), "{err}");
    assert_eq!(err.status(), 503);
    assert_eq!(GatewayError::from(err).code.status(), 503);
    // With time left it answers.
    assert_eq!(store.search(&params).unwrap().total, 50);
    store.shutdown().await;
}

#[tokio::test]
async fn a_cursor_out_of_range_is_a_400_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    submit_all(&store, [record("c1", BASE_MS, "cursor")]).await;
    store.sync().await.unwrap();
    for offset in ["18446744073709551615", "5000000000", "10001"] {
        let cursor = URL_SAFE_NO_PAD.encode(format!("o:{offset}"));
        let params =
            SearchParams::from_query(&format!("q=cursor&sort=score&cursor={cursor}")).unwrap();
        let err = store.search(&params).unwrap_err();
        assert!(matches!(err, LogError::BadRequest(_)), "{offset}: {err}");
        assert!(err.to_string().contains("cursor"), "{err}");
    }
    store.shutdown().await;
}

#[tokio::test]
async fn a_record_nested_too_deep_is_stored_reduced_and_found() {
    let tmp = tempfile::tempdir().unwrap();
    let store = LogStore::open(&config(tmp.path()), None).unwrap();
    let mut deep = serde_json::json!("bottom");
    for _ in 0..200 {
        deep = serde_json::json!({ "type": "object", "properties": { "x": deep } });
    }
    let request = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::text(Role::User, "nested schema question")],
        tools: vec![crate::canonical::Tool {
            name: "deep".into(),
            description: None,
            parameters: deep,
        }],
        ..ChatRequest::default()
    };
    let mut deep_record = record_with(request);
    deep_record.id = "deep-1".into();
    submit_all(&store, [deep_record]).await;
    store.sync().await.unwrap();
    assert_eq!(ids(&query(&store, "q=nested")), ["deep-1"]);
    let stored = store.get("deep-1").unwrap().unwrap();
    assert!(stored.to_string().contains("[TRUNCATED"), "{stored}");
    assert_eq!(stored["request"]["tools"][0]["name"], "deep");
    store.shutdown().await;
}
