//! Budgets end to end: the in-process gateway on a real socket, `[[budgets]]` and the policy's
//! `budget` hook, scripted providers at the provider boundary.
//!
//! Prices: `m1` and `m2` cost $1 per million input tokens and $2 per million output tokens.
//! A scripted answer reports 10 input and 5 output tokens: $0.000020. A request of "hi" with
//! `max_tokens = 10` reserves its worst case, `(hi_tokens() + 20)` millionths of a dollar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, swap, Gated, InProc, Script, Scripted};
use common::{client, users};
use serde_json::{json, Value};
use std::time::Duration;
use switchyard::logstore::SearchParams;

/// What one scripted answer costs, in millionths of a dollar.
const REAL_MICROS: u64 = 20;

/// The worst case of [`hi`], in millionths of a dollar.
fn worst_micros() -> u64 {
    common::hi_tokens() + 20
}

/// A chat request of "hi" whose answer may be 10 tokens long.
fn hi(model: &str) -> Value {
    json!({ "model": model, "max_tokens": 10, "messages": [{ "role": "user", "content": "hi" }] })
}

async fn send(gw: &InProc, user: &str, feature: &str, body: &Value) -> reqwest::Response {
    common::chat_as(&gw.url("/v1/chat/completions"), user, feature, body).await
}

async fn send_anthropic(gw: &InProc, user: &str, body: &Value) -> reqwest::Response {
    common::messages_as(&gw.url("/v1/messages"), user, "chat", body).await
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
}

/// `[[budgets]]` TOML.
fn budget(name: &str, matcher: &str, limit_micros: u64, soft_pct: u32) -> String {
    format!(
        "\n[[budgets]]\nname = \"{name}\"\nmatch = {{ {matcher} }}\nperiod = \"day\"\nlimit_usd = {}\nsoft_pct = {soft_pct}\n",
        limit_micros as f64 / 1e6
    )
}

/// Millionths of a dollar as the gateway writes them (`Usd`'s exact decimal).
fn usd(micros: u64) -> String {
    switchyard::cost::Usd::from_nanos(micros as i64 * 1000).to_string()
}

fn scripted() -> std::sync::Arc<Scripted> {
    Scripted::new("p", vec![Script::Answer("ok")])
}

async fn gateway(extra: &str, policy: Option<&str>) -> (InProc, std::sync::Arc<Scripted>) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(script) = policy {
        std::fs::write(dir.path().join("budget.rhai"), script).unwrap();
    }
    let p1 = scripted();
    let p2 = scripted();
    let text = config(policy.map(|_| dir.path()), &format!("{}{extra}", users()));
    let gw = start(&text, |s| {
        swap(s, "p1", p1.clone());
        swap(s, "p2", p2.clone());
    })
    .await;
    // The policy was loaded at start (no watcher): its directory can go.
    drop(dir);
    (gw, p1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_budget_warns_past_its_soft_limit_then_blocks_at_the_hard_one_in_both_dialects() {
    assert!(common::hi_tokens() <= 20, "the arithmetic below assumes it");
    // $0.000100: four answers of $0.000020 fit with a worst case on top; a fifth does not.
    let (gw, p1) = gateway(&budget("user-daily", "user = \"*\"", 100, 50), None).await;
    for n in 1..=4 {
        let response = send(&gw, "alice", "chat", &hi("m1")).await;
        assert_eq!(response.status(), 200, "request {n}");
        let warning = header(&response, "x-switchyard-budget-warning");
        let cost = header(&response, "x-switchyard-cost-usd");
        assert_eq!(cost.as_deref(), Some("0.00002"), "request {n}");
        // Spent before request n: 20 × (n − 1) of 100; the warning starts at 50%.
        if n <= 3 {
            assert_eq!(warning, None, "request {n}");
        } else {
            let warning = warning.expect("a warning past 50%");
            assert!(
                warning.starts_with("user-daily:user=alice at 60.0%"),
                "{warning}"
            );
        }
    }
    let blocked = send(&gw, "alice", "chat", &hi("m1")).await;
    assert_eq!(blocked.status(), 402);
    assert_eq!(
        header(&blocked, "x-switchyard-budget").as_deref(),
        Some("block; budget=user-daily:user=alice")
    );
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(body["error"]["type"], "insufficient_quota");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("budget `user-daily:user=alice` exceeded"),
        "{message}"
    );
    assert!(message.contains("$0.00008 spent"), "{message}");

    let blocked = send_anthropic(&gw, "alice", &hi("m1")).await;
    assert_eq!(blocked.status(), 402);
    let body: Value = blocked.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "billing_error");
    assert_eq!(p1.calls(), 4, "blocked requests never reach the provider");

    // Another user's budget is their own.
    assert_eq!(send(&gw, "bob", "chat", &hi("m1")).await.status(), 200);

    let records = gw.wait_records("chat", 7).await;
    let blocked: Vec<&Value> = records.iter().filter(|r| r["status"] == 402).collect();
    assert_eq!(blocked.len(), 2);
    assert_eq!(blocked[0]["budget"]["action"], "block");
    assert_eq!(blocked[0]["budget"]["acted_on"], "user-daily:user=alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policys_downgrade_serves_the_cheaper_model_and_the_log_says_why() {
    let policy = r#"
fn budget(req, spend) {
    if spend.budgets.len() > 0 && spend.budgets[0].pct >= 50.0 {
        return #{ action: "downgrade", model: "m2" };
    }
    #{ action: "allow" }
}
"#;
    let (gw, p1) = gateway(&budget("user-daily", "user = \"*\"", 100, 80), Some(policy)).await;
    for n in 1..=3 {
        let response = send(&gw, "alice", "down", &hi("m1")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(&response, "x-switchyard-model").as_deref(),
            Some("m1"),
            "{n}"
        );
        assert_eq!(header(&response, "x-switchyard-budget"), None);
    }
    let downgraded = send(&gw, "alice", "down", &hi("m1")).await;
    assert_eq!(downgraded.status(), 200);
    assert_eq!(
        header(&downgraded, "x-switchyard-model").as_deref(),
        Some("m2")
    );
    assert_eq!(
        header(&downgraded, "x-switchyard-budget").as_deref(),
        Some("downgrade; budget=user-daily:user=alice")
    );
    assert_eq!(p1.calls(), 3);

    // "Why was this downgraded?" is a search.
    gw.settle_log().await;
    let found = gw
        .records(SearchParams {
            q: Some("budget_action:downgrade".into()),
            limit: 10,
            ..SearchParams::default()
        })
        .await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["served_model"], "m2");
    assert_eq!(found[0]["requested_model"], "m1");
    assert_eq!(found[0]["budget"]["acted_on"], "user-daily:user=alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policys_cap_lowers_the_max_tokens_the_provider_is_sent() {
    let policy = r#"
fn budget(req, spend) {
    if spend.budgets.len() > 0 && spend.budgets[0].pct >= 50.0 {
        return #{ action: "cap", max_tokens: 3 };
    }
    #{ action: "allow" }
}
"#;
    let (gw, p1) = gateway(&budget("user-daily", "user = \"*\"", 100, 80), Some(policy)).await;
    for _ in 0..4 {
        assert_eq!(send(&gw, "alice", "cap", &hi("m1")).await.status(), 200);
    }
    assert_eq!(
        p1.max_tokens_seen(),
        vec![Some(10), Some(10), Some(10), Some(3)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_team_and_user_budgets_the_tighter_one_acts_and_is_named() {
    // A budget of one answer plus one worst case: two requests pass, the third does not.
    let tight = REAL_MICROS + worst_micros();
    // The user's budget is the tighter, against the team's $1.
    let extra = format!(
        "{}{}",
        budget("team-daily", "team = \"*\"", 1_000_000, 80),
        budget("user-daily", "user = \"*\"", tight, 80)
    );
    let (gw, _) = gateway(&extra, None).await;
    assert_eq!(send(&gw, "alice", "tu", &hi("m1")).await.status(), 200);
    let warned = send(&gw, "alice", "tu", &hi("m1")).await;
    assert_eq!(warned.status(), 200);
    let blocked = send(&gw, "alice", "tu", &hi("m1")).await;
    assert_eq!(blocked.status(), 402);
    assert_eq!(
        header(&blocked, "x-switchyard-budget").as_deref(),
        Some("block; budget=user-daily:user=alice")
    );

    // The team's budget is the tighter: carol (team sales) is stopped by it, although her
    // own budget has room.
    let extra = format!(
        "{}{}",
        budget("team-daily", "team = \"*\"", tight, 80),
        budget("user-daily", "user = \"*\"", 1_000_000, 80)
    );
    let (gw, _) = gateway(&extra, None).await;
    assert_eq!(send(&gw, "carol", "tu", &hi("m1")).await.status(), 200);
    assert_eq!(send(&gw, "carol", "tu", &hi("m1")).await.status(), 200);
    let blocked = send(&gw, "carol", "tu", &hi("m1")).await;
    assert_eq!(blocked.status(), 402);
    assert_eq!(
        header(&blocked, "x-switchyard-budget").as_deref(),
        Some("block; budget=team-daily:team=sales")
    );
    // Bob has no team: only his user budget applies, and it has room.
    assert_eq!(send(&gw, "bob", "tu", &hi("m1")).await.status(), 200);

    // `/admin/budgets` shows both, with spent, reserved and remaining.
    let listed = common::admin_json(&gw.url("/admin/budgets")).await;
    let team = &listed["budgets"][0];
    assert_eq!(team["name"], "team-daily");
    assert_eq!(team["buckets"][0]["key"], "team-daily:team=sales");
    assert_eq!(team["buckets"][0]["spent_usd"], usd(2 * REAL_MICROS));
    assert_eq!(team["buckets"][0]["reserved_usd"], "0.0");
    assert_eq!(
        team["buckets"][0]["remaining_usd"],
        usd(tight - 2 * REAL_MICROS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_simultaneous_requests_against_a_budget_that_fits_ten_serve_exactly_ten() {
    let limit = 10 * worst_micros();
    let extra = format!(
        "{}{}",
        users(),
        budget("team-daily", "team = \"*\"", limit, 80)
    );
    let gated = Gated::new();
    let text = config(None, &extra);
    let gw = start(&text, |s| swap(s, "p1", gated.clone())).await;
    let sends: Vec<_> = (0..50)
        .map(|_| {
            let url = gw.url("/v1/chat/completions");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .bearer_auth(common::KEY)
                    .json(&hi("m1"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // Every answer is held: the ten admitted requests hold their worst case reserved, so
    // the other forty are refused while none has settled.
    assert!(gated.wait_calls(10).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        gated.calls(),
        10,
        "no more than the budget fits were sent upstream"
    );
    gated.open();
    let mut statuses = Vec::new();
    for send in sends {
        statuses.push(send.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10);
    assert_eq!(statuses.iter().filter(|s| **s == 402).count(), 40);
    // Settled to the real cost: 10 × $0.000020 spent, nothing reserved.
    gw.settle_log().await;
    let listed = common::admin_json(&gw.url("/admin/budgets")).await;
    let bucket = &listed["budgets"][0]["buckets"][0];
    assert_eq!(bucket["spent_usd"], usd(10 * REAL_MICROS));
    assert_eq!(bucket["reserved_usd"], "0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_reports_group_by_user_and_model_and_match_the_sum_of_the_records_in_json_and_csv() {
    let (gw, _) = gateway("", None).await;
    for (user, model, n) in [("alice", "m1", 3), ("alice", "m2", 1), ("bob", "m1", 2)] {
        for _ in 0..n {
            assert_eq!(send(&gw, user, "report", &hi(model)).await.status(), 200);
        }
    }
    let records = gw.wait_records("report", 6).await;
    let logged_micros: f64 = records
        .iter()
        .map(|r| r["cost_usd"].as_f64().unwrap() * 1e6)
        .sum();
    assert_eq!(logged_micros.round() as u64, 6 * REAL_MICROS);

    let url = gw.url("/admin/spend?group_by=user,model&interval=day");
    let report: Value = common::eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move {
            let report: Value = client()
                .get(url)
                .bearer_auth(common::ADMIN_KEY)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (report["totals"]["requests"] == 6).then_some(report)
        }
    })
    .await
    .expect("the report counts all six requests");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{report}");
    let row = |user: &str, model: &str| {
        rows.iter()
            .find(|r| r["user"] == user && r["model"] == model)
            .unwrap_or_else(|| panic!("no row {user}/{model}: {report}"))
            .clone()
    };
    assert_eq!(row("alice", "m1")["requests"], 3);
    assert_eq!(row("alice", "m1")["cost_usd"], usd(3 * REAL_MICROS));
    assert_eq!(row("bob", "m1")["input_tokens"], 20);
    assert_eq!(report["totals"]["cost_usd"], usd(6 * REAL_MICROS));

    let csv = client()
        .get(gw.url("/admin/spend?group_by=user,model&interval=day&format=csv"))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert!(header(&csv, "content-type")
        .unwrap()
        .starts_with("text/csv"));
    let text = csv.text().await.unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "period,user,model,requests,input_tokens,cached_input_tokens,output_tokens,cost_usd,unpriced_requests"
    );
    let csv_micros: f64 = lines
        .map(|line| line.split(',').nth(7).unwrap().parse::<f64>().unwrap() * 1e6)
        .sum();
    assert_eq!(csv_micros.round() as u64, 6 * REAL_MICROS);

    let bad = client()
        .get(gw.url("/admin/spend?group_by=colour"))
        .bearer_auth(common::ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policys_queue_action_sends_the_request_to_the_batch_lane_and_says_so() {
    let policy = r#"
fn budget(req, spend) {
    if spend.budgets.len() > 0 && spend.budgets[0].pct >= 50.0 {
        return #{ action: "queue", lane: "batch" };
    }
    #{ action: "allow" }
}
"#;
    let extra = format!(
        "{}\n[[limits]]\nname = \"per-user\"\nmatch = {{ user = \"*\" }}\nrequests_per_minute = 1000\n",
        budget("user-daily", "user = \"*\"", 100, 80)
    );
    let (gw, _) = gateway(&extra, Some(policy)).await;
    for _ in 0..3 {
        let response = send(&gw, "alice", "queue", &hi("m1")).await;
        assert_eq!(header(&response, "x-switchyard-budget"), None);
    }
    let queued = send(&gw, "alice", "queue", &hi("m1")).await;
    assert_eq!(
        queued.status(),
        200,
        "the batch lane still serves when there is room"
    );
    assert_eq!(
        header(&queued, "x-switchyard-budget").as_deref(),
        Some("queue; budget=user-daily:user=alice")
    );
    let records = gw.wait_records("queue", 4).await;
    let actions: Vec<&Value> = records.iter().map(|r| &r["budget"]["action"]).collect();
    assert_eq!(actions.iter().filter(|a| **a == "queue").count(), 1);
    assert!(records
        .iter()
        .all(|r| r["limits"]["applied"][0] == "per-user:user=alice"));
}
