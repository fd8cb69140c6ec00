//! Tests of the reload triggers with a real `notify` watcher on a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::policy::decision::PolicyRequest;
use crate::policy::host::ConfigHost;
use crate::policy::store::PolicyOptions;
use notify::event::{CreateKind, RenameMode};
use std::path::{Path, PathBuf};

fn store(dir: &Path) -> Arc<PolicyStore> {
    std::fs::write(dir.join("routing.rhai"), r#"fn route(req) { "a" }"#).unwrap();
    PolicyStore::load(
        Some(dir),
        PolicyOptions::default(),
        Arc::new(ConfigHost::from_models([])),
    )
    .unwrap()
}

fn chain(store: &PolicyStore) -> Vec<String> {
    store
        .snapshot()
        .route(&PolicyRequest::default())
        .unwrap()
        .unwrap()
        .chain
}

/// Poll until the store reaches `version` (up to 2 s).
fn wait_for_version(store: &PolicyStore, version: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if store.snapshot().version() >= version {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Save like an editor: write a temporary file, then rename it over the policy file.
fn atomic_save(dir: &Path, name: &str, text: &str) {
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, dir.join(name)).unwrap();
}

#[test]
fn watcher_picks_up_an_atomic_rename_save() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let _watch = watch(store.clone(), Duration::from_millis(50)).unwrap();
    atomic_save(dir.path(), "routing.rhai", r#"fn route(req) { "b" }"#);
    assert!(wait_for_version(&store, 2), "no reload within 2 s");
    assert_eq!(chain(&store), ["b"]);
}

#[test]
fn watcher_picks_up_a_new_file_and_an_in_place_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let _watch = watch(store.clone(), Duration::from_millis(50)).unwrap();
    std::fs::write(dir.path().join("routing.rhai"), r#"fn route(req) { "c" }"#).unwrap();
    assert!(wait_for_version(&store, 2), "no reload within 2 s");
    assert_eq!(chain(&store), ["c"]);
    std::fs::write(dir.path().join("redact.rhai"), "fn redact(text) { text }").unwrap();
    assert!(wait_for_version(&store, 3), "no reload within 2 s");
    assert!(store.snapshot().has_redact());
}

#[test]
fn a_burst_of_writes_becomes_one_reload() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let _watch = watch(store.clone(), Duration::from_millis(400)).unwrap();
    for model in ["b", "c", "d", "e"] {
        std::fs::write(
            dir.path().join("routing.rhai"),
            format!("fn route(req) {{ \"{model}\" }}"),
        )
        .unwrap();
    }
    assert!(wait_for_version(&store, 2), "no reload within 2 s");
    assert_eq!(store.snapshot().version(), 2);
    assert_eq!(chain(&store), ["e"]);
}

#[test]
fn a_broken_save_is_reported_and_the_old_policy_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let _watch = watch(store.clone(), Duration::from_millis(50)).unwrap();
    atomic_save(dir.path(), "routing.rhai", "fn route(req) { ");
    let deadline = Instant::now() + Duration::from_secs(2);
    while store.status_json()["last_error"].is_null() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.status_json()["last_error"]["file"], "routing.rhai");
    assert_eq!(chain(&store), ["a"]);
}

#[test]
fn dropping_the_handle_stops_watching() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let handle = watch(store.clone(), Duration::from_millis(50)).unwrap();
    drop(handle);
    assert_eq!(Arc::strong_count(&store), 1);
}

#[test]
fn watching_without_a_directory_is_an_error() {
    let store = PolicyStore::load(
        None,
        PolicyOptions::default(),
        Arc::new(ConfigHost::from_models([])),
    )
    .unwrap();
    assert!(watch(store, Duration::from_millis(50)).is_err());
}

fn event(kind: EventKind, path: &str) -> Event {
    Event::new(kind).add_path(PathBuf::from(path))
}

#[test]
fn only_policy_file_changes_are_relevant() {
    let modify = EventKind::Modify(ModifyKind::Name(RenameMode::To));
    assert!(is_relevant(&event(modify, "/p/routing.rhai")));
    assert!(is_relevant(&event(
        EventKind::Create(CreateKind::File),
        "/p/new.rhai"
    )));
    assert!(is_relevant(&event(
        EventKind::Remove(notify::event::RemoveKind::File),
        "/p/a.rhai"
    )));
    assert!(is_relevant(&event(modify, "/p/..data")));
    assert!(!is_relevant(&event(modify, "/p/notes.txt")));
    assert!(!is_relevant(&event(modify, "/p/.routing.rhai.tmp")));
    assert!(!is_relevant(&event(modify, "/p/.#routing.rhai")));
    assert!(!is_relevant(&event(
        EventKind::Access(AccessKind::Open(AccessMode::Read)),
        "/p/routing.rhai"
    )));
    assert!(is_relevant(&event(
        EventKind::Access(AccessKind::Close(AccessMode::Write)),
        "/p/routing.rhai"
    )));
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let task = spawn_sighup(store.clone()).unwrap();
    std::fs::write(dir.path().join("routing.rhai"), r#"fn route(req) { "h" }"#).unwrap();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(2);
    while store.snapshot().version() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(chain(&store), ["h"]);
    task.abort();
}

/// Poll until the store counts `failed` failed reloads (up to 2 s).
fn wait_for_failures(store: &PolicyStore, failed: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if store.status_json()["reloads_failed"].as_u64() >= Some(failed) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn watcher_keeps_the_policy_when_its_file_is_deleted_until_removal_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let _watch = watch(store.clone(), Duration::from_millis(50)).unwrap();
    std::fs::remove_file(dir.path().join("routing.rhai")).unwrap();
    assert!(wait_for_failures(&store, 1), "the deletion was not refused");
    assert_eq!(store.snapshot().version(), 1);
    assert_eq!(chain(&store), ["a"]);
    // Creating the marker after the fact applies the removal.
    std::fs::write(
        dir.path().join(crate::policy::store::ALLOW_HOOK_REMOVAL),
        "",
    )
    .unwrap();
    assert!(wait_for_version(&store, 2), "no reload after the marker");
    assert!(!store.snapshot().has_route());
}

#[cfg(unix)]
#[test]
fn watcher_refuses_a_policy_file_swapped_for_a_dangling_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let _watch = watch(store.clone(), Duration::from_millis(50)).unwrap();
    let link = dir.path().join("routing.rhai");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(dir.path().join("nowhere.rhai"), &link).unwrap();
    // The removal and the new link may be seen in one reload or two; wait for the link's.
    let deadline = Instant::now() + Duration::from_secs(2);
    while store.status_json()["last_error"]["file"] != link.display().to_string() {
        assert!(
            Instant::now() < deadline,
            "the dangling symlink was not refused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(store.snapshot().version(), 1);
    assert_eq!(chain(&store), ["a"]);
}
