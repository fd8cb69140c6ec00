//! Tests of [`PolicyStore`]: start-up, reload, failed reloads and the status JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::policy::decision::PolicyRequest;
use crate::policy::host::ConfigHost;

fn host() -> Arc<dyn HostInfo> {
    Arc::new(ConfigHost::from_models([]))
}

fn options(models: &[&str]) -> PolicyOptions {
    PolicyOptions {
        known_models: Some(models.iter().map(|m| m.to_string()).collect()),
        ..PolicyOptions::default()
    }
}

fn chain(store: &PolicyStore) -> Vec<String> {
    let req = PolicyRequest {
        model: "asked".into(),
        ..PolicyRequest::default()
    };
    store.snapshot().route(&req).unwrap().unwrap().chain
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn no_directory_means_an_empty_set_at_version_zero() {
    let store = PolicyStore::load(None, PolicyOptions::default(), host()).unwrap();
    let set = store.snapshot();
    assert_eq!(set.version(), 0);
    assert!(!set.has_route());
    assert_eq!(store.reload().unwrap(), 0);
    assert_eq!(store.status_json()["dir"], serde_json::Value::Null);
}

#[test]
fn a_broken_policy_at_start_up_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", "fn route(req) {");
    let err = PolicyStore::load(Some(dir.path()), PolicyOptions::default(), host())
        .err()
        .unwrap();
    assert!(matches!(err, PolicyError::Compile { .. }), "{err}");
    let missing = dir.path().join("missing");
    let err = PolicyStore::load(Some(&missing), PolicyOptions::default(), host())
        .err()
        .unwrap();
    assert!(matches!(err, PolicyError::Io { .. }), "{err}");
}

#[test]
fn reload_after_editing_a_file_changes_the_decision_and_bumps_the_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    let store = PolicyStore::load(Some(dir.path()), options(&["a", "b"]), host()).unwrap();
    assert_eq!(store.snapshot().version(), 1);
    assert_eq!(chain(&store), ["a"]);
    let before = store.snapshot();

    write(
        dir.path(),
        "routing.rhai",
        r#"fn route(req) { ["b", "a"] }"#,
    );
    assert_eq!(store.reload().unwrap(), 2);
    assert_eq!(chain(&store), ["b", "a"]);
    assert_eq!(
        store
            .snapshot()
            .route(&PolicyRequest::default())
            .unwrap()
            .unwrap()
            .policy_version,
        2
    );
    // A request holding the old snapshot keeps the old policy to its end.
    assert_eq!(
        before
            .route(&PolicyRequest::default())
            .unwrap()
            .unwrap()
            .chain,
        ["a"]
    );
}

#[test]
fn reload_with_unchanged_files_keeps_the_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    let store = PolicyStore::load(Some(dir.path()), PolicyOptions::default(), host()).unwrap();
    assert_eq!(store.reload().unwrap(), 1);
    assert_eq!(store.status_json()["reloads_ok"], 1);
}

#[test]
fn failed_reload_keeps_the_old_set_and_reports_file_line_column() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    let store = PolicyStore::load(Some(dir.path()), options(&["a"]), host()).unwrap();

    write(
        dir.path(),
        "routing.rhai",
        "fn route(req) {\n  \"a\" +\n}\n",
    );
    let err = store.reload().unwrap_err();
    assert!(matches!(err, PolicyError::Compile { line: 3, .. }), "{err}");
    assert_eq!(chain(&store), ["a"]);
    let status = store.status_json();
    assert_eq!(status["version"], 1);
    assert_eq!(status["reloads_failed"], 1);
    assert_eq!(status["last_error"]["file"], "routing.rhai");
    assert_eq!(status["last_error"]["line"], 3);
    assert!(status["last_error"]["column"].as_u64().unwrap() > 0);
    assert!(status["last_error"]["at"].as_str().unwrap().ends_with('Z'));

    write(
        dir.path(),
        "routing.rhai",
        r#"fn route(req) { "a" }  // fixed"#,
    );
    assert_eq!(store.reload().unwrap(), 2);
    assert_eq!(store.status_json()["last_error"], serde_json::Value::Null);
}

#[test]
fn reload_naming_an_unknown_model_fails_self_check_and_keeps_the_old_set() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    let store = PolicyStore::load(Some(dir.path()), options(&["a"]), host()).unwrap();
    write(
        dir.path(),
        "routing.rhai",
        r#"fn route(req) { ["a", "claude-opus"] }"#,
    );
    let err = store.reload().unwrap_err();
    assert!(matches!(err, PolicyError::SelfCheck { .. }), "{err}");
    assert!(err.to_string().contains("claude-opus"), "{err}");
    assert_eq!(chain(&store), ["a"]);
    assert_eq!(store.snapshot().version(), 1);
    let status = store.status_json();
    assert!(status["last_error"]["message"]
        .as_str()
        .unwrap()
        .contains("claude-opus"));
}

#[test]
fn status_lists_files_hooks_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    write(dir.path(), "redact.rhai", "fn redact(text) { text }");
    let store = PolicyStore::load(Some(dir.path()), PolicyOptions::default(), host()).unwrap();
    store.record_hook_error();
    store.record_hook_error();
    let status = store.status_json();
    assert_eq!(status["files"][0]["name"], "redact.rhai");
    assert_eq!(status["files"][1]["name"], "routing.rhai");
    assert_eq!(status["files"][1]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(status["hooks"], serde_json::json!(["route", "redact"]));
    assert_eq!(status["hook_errors"], 2);
    assert_eq!(status["on_error"], "open");
    assert!(status["loaded_at"].as_str().is_some());
    assert!(store.on_error_open());
}

#[test]
fn options_from_config_know_the_configured_models() {
    let config = Config::parse(
        r#"
[[providers]]
name = "mock"
kind = "mock"
[[models]]
name = "gpt-4o-mini"
provider = "mock"
[policy]
on_error = "closed"
max_operations = 1000
"#,
        Path::new("test.toml"),
    )
    .unwrap();
    let options = PolicyOptions::from_config(&config);
    assert!(!options.on_error_open);
    assert_eq!(options.max_operations, 1000);
    assert!(options.known_models.unwrap().contains("gpt-4o-mini"));
}

fn load(dir: &Path) -> Arc<PolicyStore> {
    PolicyStore::load(Some(dir), PolicyOptions::default(), host()).unwrap()
}

#[test]
fn a_reload_that_would_remove_a_hook_in_force_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    write(dir.path(), "redact.rhai", "fn redact(text) { text }");
    let store = load(dir.path());
    std::fs::remove_file(dir.path().join("routing.rhai")).unwrap();
    let err = store.reload().unwrap_err();
    assert!(matches!(err, PolicyError::SelfCheck { .. }), "{err}");
    assert_eq!(store.snapshot().version(), 1);
    assert_eq!(chain(&store), ["a"]);
    let status = store.status_json();
    assert_eq!(status["last_error"]["file"], "routing.rhai");
    let message = status["last_error"]["message"].as_str().unwrap();
    assert!(
        message.contains("would remove hook(s) in force: route"),
        "{message}"
    );
    assert!(message.contains(ALLOW_HOOK_REMOVAL), "{message}");
    // Editing a file so that it no longer defines the hook is refused the same way.
    write(dir.path(), "routing.rhai", "fn helper() { 1 }");
    assert!(store.reload().is_err());
    assert_eq!(chain(&store), ["a"]);
}

#[test]
fn an_emptied_directory_removes_the_hooks_when_the_marker_says_so() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    let store = load(dir.path());
    std::fs::remove_file(dir.path().join("routing.rhai")).unwrap();
    assert!(store.reload().is_err());
    write(dir.path(), ALLOW_HOOK_REMOVAL, "");
    assert_eq!(store.reload().unwrap(), 2);
    assert!(!store.snapshot().has_route());
    assert_eq!(store.status_json()["last_error"], serde_json::Value::Null);
    assert_eq!(store.status_json()["hook_removal_allowed"], true);
}

#[test]
fn adding_a_hook_needs_no_marker() {
    let dir = tempfile::tempdir().unwrap();
    let store = load(dir.path());
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    assert_eq!(store.reload().unwrap(), 2);
    assert_eq!(chain(&store), ["a"]);
}

#[cfg(unix)]
#[test]
fn a_dangling_symlink_is_a_load_error_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("routing.rhai");
    std::os::unix::fs::symlink(dir.path().join("gone.rhai.orig"), &link).unwrap();
    let err = PolicyStore::load(Some(dir.path()), PolicyOptions::default(), host())
        .err()
        .unwrap();
    assert!(matches!(err, PolicyError::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&link.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("dangling symlink"), "{err}");
}

#[cfg(unix)]
#[test]
fn a_policy_file_replaced_by_a_dangling_symlink_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    let store = load(dir.path());
    let link = dir.path().join("routing.rhai");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(dir.path().join("missing"), &link).unwrap();
    // Even with the marker: a dangling link is an error, not a removal.
    write(dir.path(), ALLOW_HOOK_REMOVAL, "");
    let err = store.reload().unwrap_err();
    assert!(err.to_string().contains("dangling symlink"), "{err}");
    assert_eq!(chain(&store), ["a"]);
    assert_eq!(
        store.status_json()["last_error"]["file"],
        link.display().to_string()
    );
}

#[cfg(unix)]
#[test]
fn a_symlink_to_a_directory_is_a_load_error_naming_its_path() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "routing.rhai", r#"fn route(req) { "a" }"#);
    let store = load(dir.path());
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let link = dir.path().join("limits.rhai");
    std::os::unix::fs::symlink(&sub, &link).unwrap();
    let err = store.reload().unwrap_err();
    assert!(
        err.to_string().contains(&link.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert_eq!(chain(&store), ["a"]);
    let err = PolicyStore::load(Some(dir.path()), PolicyOptions::default(), host())
        .err()
        .unwrap();
    assert!(err.to_string().contains("is a directory"), "{err}");
}
