//! Spend survives a restart: real gateway processes on one data directory, stopped with
//! SIGKILL (after the spend ledger's fsync window) and with SIGTERM; the budget's spend is
//! rebuilt from the ledger and the budget keeps blocking.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{client, gateway, gateway_in, Gateway, KEY};
use serde_json::{json, Value};
use std::time::Duration;

fn config() -> String {
    format!(
        r#"{preamble}
[logs]
enabled = false

[cost]
fsync_interval_ms = 20

[[providers]]
name = "mock"
kind = "mock"
[providers.mock]
output_tokens = 10

[[models]]
name = "m1"
provider = "mock"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0

[[budgets]]
name = "user-daily"
match = {{ user = "*" }}
period = "day"
limit_usd = 0.0001
"#,
        preamble = common::preamble(""),
    )
}

async fn ask(gw: &Gateway) -> u16 {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .json(&json!({ "model": "m1", "max_tokens": 10, "messages": [{ "role": "user", "content": "hi" }] }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// alice's bucket of the budget, as `/admin/budgets` shows it.
async fn bucket(gw: &Gateway) -> Value {
    let listed = common::admin_json(&gw.url("/admin/budgets")).await;
    listed["budgets"][0]["buckets"][0].clone()
}

fn restart(mut gw: Gateway, signal: &str) -> Gateway {
    let status = gw.signal_and_wait(signal);
    if signal == "TERM" {
        assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    }
    let dir = std::mem::replace(&mut gw.dir, tempfile::tempdir().unwrap());
    drop(gw);
    gateway_in(dir, &config())
}

#[tokio::test]
async fn spend_survives_sigkill_and_sigterm_and_the_budget_keeps_blocking() {
    let gw = gateway(&config());
    let mut served = 0;
    for _ in 0..20 {
        match ask(&gw).await {
            200 => served += 1,
            402 => break,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        (2..20).contains(&served),
        "{served} served before the budget blocked"
    );
    assert_eq!(ask(&gw).await, 402);
    let before = bucket(&gw).await;
    assert_eq!(before["key"], "user-daily:user=alice");
    assert_eq!(before["reserved_usd"], "0.0");
    let spent = before["spent_usd"].clone();

    // Past the fsync window (20 ms), a SIGKILL loses nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gw = restart(gw, "KILL");
    assert_eq!(
        bucket(&gw).await["spent_usd"],
        spent,
        "rebuilt from the ledger"
    );
    assert_eq!(ask(&gw).await, 402, "still blocked after SIGKILL");

    let gw = restart(gw, "TERM");
    assert_eq!(bucket(&gw).await["spent_usd"], spent);
    assert_eq!(ask(&gw).await, 402, "still blocked after SIGTERM");

    // The ledger is the spend report's source too.
    let report = common::admin_json(&gw.url("/admin/spend?group_by=user")).await;
    assert_eq!(report["totals"]["requests"], served);
    assert_eq!(report["totals"]["cost_usd"], spent);
}
