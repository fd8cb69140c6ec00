//! The live price book with a real `notify` watcher on a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::cost::{PricePerToken, PriceSource};

fn per_mtok(usd: f64) -> PricePerToken {
    PricePerToken::from_usd_per_mtok(usd).unwrap()
}

/// A pricing file pricing `house-model` at `input` USD per million input tokens.
fn prices(input: f64) -> String {
    format!(
        r#"{{"house-model": {{"input_cost_per_token": {}, "output_cost_per_token": 2e-06}}}}"#,
        input / 1e6
    )
}

fn config(pricing_file: Option<&Path>, models: &[&str]) -> Config {
    let mut text = String::from(
        "[[providers]]\nname = \"local\"\nkind = \"openai-compatible\"\nbase_url = \"http://127.0.0.1:9/v1\"\n",
    );
    if let Some(path) = pricing_file {
        text.push_str(&format!(
            "[cost]\npricing_file = {:?}\n",
            path.display().to_string()
        ));
    }
    for model in models {
        text.push_str(&format!(
            "[[models]]\nname = \"{model}\"\nprovider = \"local\"\nupstream = \"house-model\"\n"
        ));
    }
    Config::parse(&text, Path::new("test.toml")).unwrap()
}

fn input_price(book: &PriceBook, model: &str) -> Option<PricePerToken> {
    book.catalogue().price(model).map(|price| price.input)
}

/// Poll until `done(status)` (up to 5 s).
fn wait_for(book: &PriceBook, done: impl Fn(&PriceBookStatus) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if done(&book.status()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Save like an editor: write a temporary file, then rename it over the pricing file.
fn atomic_save(path: &Path, text: &str) {
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

#[test]
fn a_bad_pricing_file_at_startup_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, "{\"house-model\": ").unwrap();
    let err = PriceBook::new(&config(Some(&path), &["m"]))
        .err()
        .expect("a truncated file must not start");
    assert!(err.to_string().contains("prices.json:1:"), "{err}");

    let missing = dir.path().join("missing.json");
    let err = PriceBook::new(&config(Some(&missing), &["m"]))
        .err()
        .expect("a missing file must not start");
    assert!(err.to_string().contains("missing.json"), "{err}");
}

#[test]
fn the_status_describes_the_file_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, prices(1.0)).unwrap();
    let book = PriceBook::new(&config(Some(&path), &["m"])).unwrap();
    let status = book.status();
    assert_eq!(status.file.as_deref(), Some(path.as_path()));
    assert_eq!(status.entries, 1);
    assert!(status.loaded_at.is_some());
    assert!(status.builtin_entries > 40);
    assert_eq!((status.reloads, status.last_error), (0, None));
    assert_eq!(book.catalogue().source_of("m"), Some(PriceSource::File));
}

#[test]
fn the_watcher_picks_up_an_atomic_rename_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, prices(1.0)).unwrap();
    let book = Arc::new(PriceBook::new(&config(Some(&path), &["m"])).unwrap());
    let _watch = book.watch(Duration::from_millis(50)).unwrap().unwrap();
    assert_eq!(input_price(&book, "m"), Some(per_mtok(1.0)));

    atomic_save(&path, &prices(4.0));
    assert!(wait_for(&book, |s| s.reloads >= 1), "no reload within 5 s");
    assert_eq!(input_price(&book, "m"), Some(per_mtok(4.0)));

    std::fs::write(&path, prices(5.0)).unwrap();
    assert!(
        wait_for(&book, |s| s.reloads >= 2),
        "no reload of an in-place write"
    );
    assert_eq!(input_price(&book, "m"), Some(per_mtok(5.0)));
}

#[test]
fn a_failed_reload_keeps_the_previous_prices_and_reports_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, prices(1.0)).unwrap();
    let book = Arc::new(PriceBook::new(&config(Some(&path), &["m"])).unwrap());
    let watch = book.watch(Duration::from_millis(50)).unwrap().unwrap();
    assert_eq!(watch.path(), path.as_path());

    atomic_save(&path, "{\"house-model\": {\"input_cost_per_token\": ");
    assert!(
        wait_for(&book, |s| s.failed_reloads >= 1),
        "no failed reload within 5 s"
    );
    assert_eq!(input_price(&book, "m"), Some(per_mtok(1.0)));
    let status = book.status();
    assert_eq!(status.reloads, 0);
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("prices.json:1:"), "{error}");

    atomic_save(&path, &prices(3.0));
    assert!(
        wait_for(&book, |s| s.reloads >= 1),
        "no recovery within 5 s"
    );
    assert_eq!(input_price(&book, "m"), Some(per_mtok(3.0)));
    assert_eq!(book.status().last_error, None);
}

#[test]
fn changes_to_other_files_in_the_directory_do_not_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, prices(1.0)).unwrap();
    let book = Arc::new(PriceBook::new(&config(Some(&path), &["m"])).unwrap());
    let _watch = book.watch(Duration::from_millis(20)).unwrap().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let status = book.status();
    assert_eq!((status.reloads, status.failed_reloads), (0, 0));
}

#[test]
fn a_book_without_pricing_file_has_nothing_to_watch() {
    let book = Arc::new(PriceBook::new(&config(None, &["m"])).unwrap());
    assert!(book.watch(Duration::from_millis(50)).unwrap().is_none());
    assert_eq!(book.status().unpriced_models, ["m"]);
    assert!(book.reload_file().is_ok());
}

#[test]
fn rebuild_prices_new_models_and_keeps_the_last_good_file_when_it_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, prices(1.0)).unwrap();
    let book = PriceBook::new(&config(Some(&path), &["a"])).unwrap();
    assert_eq!(input_price(&book, "b"), None);

    std::fs::write(&path, prices(2.0)).unwrap();
    book.rebuild(&config(Some(&path), &["a", "b"])).unwrap();
    assert_eq!(input_price(&book, "b"), Some(per_mtok(2.0)));

    std::fs::write(&path, "not json").unwrap();
    let err = book
        .rebuild(&config(Some(&path), &["a", "b", "c"]))
        .unwrap_err();
    assert!(err.to_string().contains("prices.json"), "{err}");
    assert_eq!(
        input_price(&book, "c"),
        Some(per_mtok(2.0)),
        "last good file"
    );
    assert!(book.status().last_error.is_some());

    let elsewhere = dir.path().join("other.json");
    assert!(book.rebuild(&config(Some(&elsewhere), &["d"])).is_err());
    assert_eq!(
        input_price(&book, "c"),
        Some(per_mtok(2.0)),
        "old catalogue kept"
    );
    assert_eq!(input_price(&book, "d"), None);

    book.rebuild(&config(None, &["a"])).unwrap();
    assert_eq!(
        input_price(&book, "a"),
        None,
        "no file: house-model is unpriced"
    );
    assert_eq!(book.status().file, None);
}
