//! Report tests: totals against the recorded events, group-by and interval combinations,
//! bounds.

use proptest::prelude::*;

use super::*;

fn query(
    from_ms: i64,
    to_ms: i64,
    interval: SpendInterval,
    group_by: Vec<Dimension>,
) -> SpendQuery {
    SpendQuery {
        from_ms,
        to_ms,
        interval,
        group_by,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[tokio::test]
async fn rows_are_sorted_by_period_then_group_with_totals_and_unpriced_models() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    let day0 = NOON - DAY_MS;
    ledger.record(event(NOON, "bob", "gpt-4o", Some(5))).await;
    ledger.record(event(day0, "bob", "gpt-4o", Some(1))).await;
    ledger.record(event(NOON, "alice", "mystery", None)).await;
    ledger
        .record(event(NOON + 1, "alice", "gpt-4o", Some(2)))
        .await;
    let mut late = event(NOON + 2, "alice", "gpt-4o", Some(4));
    late.feature = None;
    ledger.record(late).await;

    let by_day = ledger
        .report(query(
            day0,
            NOON + DAY_MS,
            SpendInterval::Day,
            vec![Dimension::User, Dimension::Feature],
        ))
        .await
        .unwrap();
    let keys: Vec<(String, Vec<Option<String>>, u64)> = by_day
        .rows
        .iter()
        .map(|r| (r.period.clone(), r.group.clone(), r.requests))
        .collect();
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        keys,
        [
            ("2024-05-16".into(), vec![some("bob"), some("chat")], 1),
            ("2024-05-17".into(), vec![some("alice"), None], 1),
            ("2024-05-17".into(), vec![some("alice"), some("chat")], 2),
            ("2024-05-17".into(), vec![some("bob"), some("chat")], 1),
        ]
    );
    assert_eq!(by_day.totals.requests, 5);
    assert_eq!(by_day.totals.cost, Usd(12));
    assert_eq!(by_day.totals.unpriced_requests, 1);
    assert_eq!(by_day.unpriced_models, ["mystery"]);
    let alice_chat = &by_day.rows[2];
    assert_eq!((alice_chat.cost, alice_chat.unpriced_requests), (Usd(2), 1));
    assert_eq!(alice_chat.input_tokens, 200);

    let by_month = ledger
        .report(query(0, i64::MAX, SpendInterval::Month, vec![]))
        .await
        .unwrap();
    assert_eq!(by_month.rows.len(), 1);
    assert_eq!(by_month.rows[0].period, "2024-05");
    assert_eq!(by_month.rows[0].cost, Usd(12));

    let by_model = ledger
        .report(query(
            NOON,
            NOON + 2,
            SpendInterval::Day,
            vec![Dimension::Model],
        ))
        .await
        .unwrap();
    assert_eq!(by_model.totals.requests, 3, "to_ms is exclusive");
    let models: Vec<_> = by_model.rows.iter().map(|r| r.group[0].clone()).collect();
    assert_eq!(models, [some("gpt-4o"), some("mystery")]);
    ledger.shutdown().await;
}

#[tokio::test]
async fn report_periods_follow_the_configured_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = CostConfig {
        timezone: "-05:00".into(),
        ..config(tmp.path())
    };
    let ledger = SpendLedger::open_with(&cfg, SpendLimits::default(), NOON).unwrap();
    // 2024-06-01T03:00Z is still May 31st at -05:00.
    let june_utc = 1_717_210_800_000;
    ledger
        .record(event(june_utc, "alice", "gpt-4o", Some(1)))
        .await;
    ledger
        .record(event(june_utc + 3 * 3_600_000, "alice", "gpt-4o", Some(1)))
        .await;
    let report = ledger
        .report(query(0, i64::MAX, SpendInterval::Month, vec![]))
        .await
        .unwrap();
    let periods: Vec<&str> = report.rows.iter().map(|r| r.period.as_str()).collect();
    assert_eq!(periods, ["2024-05", "2024-06"]);
    let report = ledger
        .report(query(
            0,
            i64::MAX,
            SpendInterval::Day,
            vec![Dimension::Tier],
        ))
        .await
        .unwrap();
    let periods: Vec<&str> = report.rows.iter().map(|r| r.period.as_str()).collect();
    assert_eq!(periods, ["2024-05-31", "2024-06-01"]);
    assert_eq!(report.rows[0].group, [None]);
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_report_past_the_row_bound_fails_and_asks_to_narrow_the_query() {
    let tmp = tempfile::tempdir().unwrap();
    let limits = SpendLimits {
        max_report_rows: 3,
        ..SpendLimits::default()
    };
    let ledger = SpendLedger::open_with(&config(tmp.path()), limits, NOON).unwrap();
    for user in ["a", "b", "c", "d"] {
        ledger.record(event(NOON, user, "gpt-4o", Some(1))).await;
    }
    let err = ledger
        .report(query(
            0,
            i64::MAX,
            SpendInterval::Day,
            vec![Dimension::User],
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, SpendError::TooManyRows { max: 3 }), "{err}");
    assert!(err.to_string().contains("narrow"));
    assert_eq!(err.status(), 400);
    let gateway = crate::error::GatewayError::from(err);
    assert_eq!(gateway.status(), 400);
    let ok = ledger
        .report(query(
            0,
            i64::MAX,
            SpendInterval::Day,
            vec![Dimension::Model],
        ))
        .await
        .unwrap();
    assert_eq!(ok.rows.len(), 1);
    let bad = ledger
        .report(query(10, 10, SpendInterval::Day, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(bad, SpendError::BadQuery(_)));
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_report_csv_round_trips_the_rows_in_column_order() {
    let tmp = tempfile::tempdir().unwrap();
    let ledger = open(tmp.path());
    ledger
        .record(event(NOON, "=cmd|' /C calc'!A0", "gpt-4o", Some(123_450)))
        .await;
    let report = ledger
        .report(query(
            0,
            i64::MAX,
            SpendInterval::Day,
            vec![Dimension::Provider, Dimension::User],
        ))
        .await
        .unwrap();
    let csv = report.to_csv();
    let mut lines = csv.split("\r\n");
    assert_eq!(
        lines.next().unwrap(),
        "period,provider,user,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd,unpriced_requests"
    );
    assert_eq!(
        lines.next().unwrap(),
        "2024-05-17,openai,'=cmd|' /C calc'!A0,1,100,10,20,0.00012345,0"
    );
    ledger.shutdown().await;
}

fn arb_event() -> impl Strategy<Value = SpendEvent> {
    (
        0i64..40 * DAY_MS,
        0usize..4,
        0usize..3,
        prop::option::of(0i64..5_000_000_000),
        0u64..10_000,
        0u64..10_000,
        any::<bool>(),
    )
        .prop_map(|(offset, user, model, cost, input, output, has_team)| {
            let mut e = event(
                NOON - 20 * DAY_MS + offset,
                ["alice", "bob", "carol", "dave"][user],
                ["gpt-4o", "claude", "mystery"][model],
                cost,
            );
            e.input_tokens = input;
            e.output_tokens = output;
            e.team = has_team.then(|| "core".to_string());
            e
        })
}

fn arb_group_by() -> impl Strategy<Value = Vec<Dimension>> {
    prop::sample::subsequence(Dimension::ALL.to_vec(), 0..=3).prop_shuffle()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn report_totals_equal_the_sum_of_the_recorded_events(
        events in prop::collection::vec(arb_event(), 0..60),
        group_by in arb_group_by(),
        monthly in any::<bool>(),
        zone in prop::sample::select(vec!["UTC", "+05:30", "-08:00"]),
        window in (0i64..40 * DAY_MS, 0i64..40 * DAY_MS),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = CostConfig { timezone: zone.into(), ..config(tmp.path()) };
        let (from_ms, to_ms) = {
            let (a, b) = window;
            let base = NOON - 20 * DAY_MS;
            (base + a.min(b), base + a.max(b) + 1)
        };
        let interval = if monthly { SpendInterval::Month } else { SpendInterval::Day };
        let rt = runtime();
        let report = rt.block_on(async {
            let ledger = SpendLedger::open_with(&cfg, SpendLimits::default(), NOON).unwrap();
            let half = events.len() / 2;
            for e in &events[..half] {
                ledger.record(e.clone()).await;
            }
            ledger.flush().await.unwrap();
            for e in &events[half..] {
                ledger.record(e.clone()).await;
            }
            let report = ledger
                .report(query(from_ms, to_ms, interval, group_by.clone()))
                .await
                .unwrap();
            ledger.shutdown().await;
            report
        });
        let mut expected = SpendUsage::default();
        let mut unpriced = std::collections::BTreeSet::new();
        for e in events.iter().filter(|e| (from_ms..to_ms).contains(&e.ts_ms)) {
            expected.add(e);
            if e.cost.is_none() {
                unpriced.insert(e.model.clone());
            }
        }
        prop_assert_eq!(report.totals, expected);
        let mut summed = SpendUsage::default();
        for row in &report.rows {
            summed.merge(&row.usage());
            prop_assert_eq!(row.group.len(), group_by.len());
        }
        prop_assert_eq!(summed, expected);
        prop_assert_eq!(report.unpriced_models, unpriced.into_iter().collect::<Vec<_>>());
        let keys: Vec<_> = report.rows.iter().map(|r| (r.period.clone(), r.group.clone())).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        prop_assert_eq!(keys, sorted, "rows sorted by period then group, each once");
    }
}
