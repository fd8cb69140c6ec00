//! Policy files that vanish fail closed, against a real gateway with its file watcher: a
//! deleted policy file keeps its `throw`-based block in force (and `GET /admin/policy`
//! reports why) until the operator allows the removal with `ALLOW_HOOK_REMOVAL`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const BLOCK: &str = r#"
fn route(req) {
    if req.feature == "blocked" {
        throw #{ status: 403, message: "feature blocked by policy" };
    }
    req.model
}
"#;

fn start(policy: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/routing.rhai"), policy).unwrap();
    let config = format!(
        "{}[[providers]]\nname = \"m\"\nkind = \"mock\"\n\n[[models]]\nname = \"m\"\nprovider = \"m\"\n\n[policy]\ndir = \"policy\"\ndebounce_ms = 50\n\n[logs]\nenabled = false\n",
        preamble("")
    );
    gateway_in(dir, &config)
}

async fn blocked_request_status(gw: &Gateway) -> u16 {
    client()
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-switchyard-feature", "blocked")
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn admin_policy(gw: &Gateway) -> Value {
    client()
        .get(gw.url("/admin/policy"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn deleting_a_policy_file_keeps_its_block_until_removal_is_allowed() {
    let gw = start(BLOCK);
    assert_eq!(blocked_request_status(&gw).await, 403);
    let policy_dir = gw.dir.path().join("policy");
    std::fs::remove_file(policy_dir.join("routing.rhai")).unwrap();
    let status = eventually(Duration::from_secs(5), || async {
        let status = admin_policy(&gw).await;
        (status["reloads_failed"].as_u64() >= Some(1)).then_some(status)
    })
    .await
    .expect("the deletion was neither refused nor applied");
    assert_eq!(status["version"], 1);
    assert_eq!(status["hooks"], json!(["route"]));
    assert_eq!(status["last_error"]["file"], "routing.rhai");
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(message.contains("route"), "{message}");
    assert_eq!(
        blocked_request_status(&gw).await,
        403,
        "the block stopped applying"
    );

    std::fs::write(policy_dir.join("ALLOW_HOOK_REMOVAL"), "").unwrap();
    let status = eventually(Duration::from_secs(5), || async {
        let status = admin_policy(&gw).await;
        (status["version"].as_u64() >= Some(2)).then_some(status)
    })
    .await
    .expect("the allowed removal was not applied");
    assert_eq!(status["hooks"], json!([]));
    assert_eq!(status["last_error"], Value::Null);
    assert_eq!(blocked_request_status(&gw).await, 200);
}

#[cfg(unix)]
#[tokio::test]
async fn a_policy_file_swapped_for_a_symlink_to_a_directory_is_a_reported_load_error() {
    let gw = start(BLOCK);
    let policy_dir = gw.dir.path().join("policy");
    let link = policy_dir.join("routing.rhai");
    std::fs::create_dir(gw.dir.path().join("elsewhere")).unwrap();
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(gw.dir.path().join("elsewhere"), &link).unwrap();
    let status = eventually(Duration::from_secs(5), || async {
        let status = admin_policy(&gw).await;
        let message = status["last_error"]["message"].as_str().unwrap_or_default();
        message.contains("is a directory").then_some(status)
    })
    .await
    .expect("the symlink was not refused");
    let file = status["last_error"]["file"].as_str().unwrap();
    assert!(file.ends_with("routing.rhai"), "{status}");
    assert_eq!(status["version"], 1);
    assert_eq!(blocked_request_status(&gw).await, 403);
}
