//! Price precedence (config > file > built-in), id matching and unpriced models.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use std::path::Path;

fn per_mtok(usd: f64) -> PricePerToken {
    PricePerToken::from_usd_per_mtok(usd).unwrap()
}

fn config(text: &str) -> Config {
    Config::parse(text, Path::new("test.toml")).unwrap()
}

const PROVIDERS: &str = r#"
[[providers]]
name = "openai"
kind = "openai"
[[providers]]
name = "anthropic"
kind = "anthropic"
[[providers]]
name = "google"
kind = "gemini"
[[providers]]
name = "local"
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
"#;

fn catalogue(models: &str, file: Option<&str>) -> Catalogue {
    let config = config(&format!("{PROVIDERS}{models}"));
    let file = file.map(|text| litellm::parse(text, "file.json").unwrap());
    Catalogue::build(&config.models, &config.providers, file.as_ref(), builtin())
}

/// A pricing file that prices gpt-4o above the built-in list.
const FILE: &str = r#"{
    "gpt-4o": {"input_cost_per_token": 3e-06, "output_cost_per_token": 1.2e-05,
               "cache_read_input_token_cost": 1.5e-06, "litellm_provider": "openai",
               "mode": "chat"},
    "house-model-2024-01-01": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
    "house-model-2024-06-01": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
    "split-model-2024-01-01": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06},
    "split-model-2024-06-01": {"input_cost_per_token": 5e-06, "output_cost_per_token": 2e-06}
}"#;

#[test]
fn config_prices_beat_the_file_which_beats_the_builtin_list() {
    let models = r#"
[[models]]
name = "from-builtin"
provider = "openai"
upstream = "gpt-4o-mini"
[[models]]
name = "from-file"
provider = "openai"
upstream = "gpt-4o"
[[models]]
name = "from-config"
provider = "openai"
upstream = "gpt-4o"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0
cached_input_usd_per_mtok = 0.5
"#;
    let catalogue = catalogue(models, Some(FILE));
    assert_eq!(
        catalogue.source_of("from-builtin"),
        Some(PriceSource::Builtin)
    );
    assert_eq!(catalogue.source_of("from-file"), Some(PriceSource::File));
    assert_eq!(
        catalogue.source_of("from-config"),
        Some(PriceSource::Config)
    );
    assert_eq!(
        catalogue.price("from-builtin").unwrap().input,
        per_mtok(0.15)
    );
    assert_eq!(catalogue.price("from-file").unwrap().input, per_mtok(3.0));
    let configured = catalogue.price("from-config").unwrap();
    assert_eq!(configured.input, per_mtok(1.0));
    assert_eq!(configured.output, per_mtok(2.0));
    assert_eq!(configured.cache_read, Some(per_mtok(0.5)));
    assert_eq!(
        catalogue.entry("from-file").unwrap().matched_key.as_deref(),
        Some("gpt-4o")
    );
}

#[test]
fn a_partial_config_price_is_completed_from_the_file() {
    let models = r#"
[[models]]
name = "discounted"
provider = "openai"
upstream = "gpt-4o"
input_usd_per_mtok = 2.0
"#;
    let catalogue = catalogue(models, Some(FILE));
    let price = catalogue.price("discounted").unwrap();
    assert_eq!(price.input, per_mtok(2.0));
    assert_eq!(
        price.output,
        per_mtok(12.0),
        "from the file, not the built-in $10"
    );
    assert_eq!(price.cache_read, Some(per_mtok(1.5)));
    assert_eq!(catalogue.source_of("discounted"), Some(PriceSource::Config));
}

#[test]
fn a_configured_input_or_output_price_drops_the_size_tiers() {
    let models = r#"
[[models]]
name = "flat-pro"
provider = "google"
upstream = "gemini-2.5-pro"
output_usd_per_mtok = 9.0
[[models]]
name = "cheap-cache-pro"
provider = "google"
upstream = "gemini-2.5-pro"
cached_input_usd_per_mtok = 0.1
"#;
    let catalogue = catalogue(models, None);
    let flat = catalogue.price("flat-pro").unwrap();
    assert!(flat.tiers.is_empty());
    assert_eq!(flat.input, per_mtok(1.25));
    let cheap_cache = catalogue.price("cheap-cache-pro").unwrap();
    assert_eq!(
        cheap_cache.tiers.len(),
        1,
        "only the cache price was configured"
    );
    assert_eq!(cheap_cache.cache_read, Some(per_mtok(0.1)));
}

#[test]
fn models_match_by_upstream_id_with_the_provider_prefix() {
    let models = r#"
[[models]]
name = "pro"
provider = "google"
upstream = "gemini-2.5-pro"
[[models]]
name = "flash"
provider = "google"
upstream = "models/gemini-2.5-flash"
[[models]]
name = "gpt-4.1"
provider = "openai"
"#;
    let catalogue = catalogue(models, None);
    assert_eq!(
        catalogue.entry("pro").unwrap().matched_key.as_deref(),
        Some("gemini/gemini-2.5-pro")
    );
    assert_eq!(
        catalogue.entry("flash").unwrap().matched_key.as_deref(),
        Some("gemini/gemini-2.5-flash")
    );
    assert_eq!(
        catalogue.entry("gpt-4.1").unwrap().matched_key.as_deref(),
        Some("gpt-4.1"),
        "the name is the upstream id when `upstream` is absent"
    );
}

#[test]
fn a_dated_id_matches_its_undated_entry_and_back() {
    let models = r#"
[[models]]
name = "future-haiku"
provider = "anthropic"
upstream = "claude-haiku-4-5-20991231"
[[models]]
name = "future-mini"
provider = "openai"
upstream = "gpt-4.1-mini-2099-01-01"
[[models]]
name = "haiku-3"
provider = "anthropic"
upstream = "claude-3-haiku"
[[models]]
name = "house"
provider = "local"
upstream = "house-model"
[[models]]
name = "split"
provider = "local"
upstream = "split-model"
"#;
    let catalogue = catalogue(models, Some(FILE));
    let key = |model: &str| catalogue.entry(model).and_then(|e| e.matched_key.clone());
    assert_eq!(key("future-haiku").as_deref(), Some("claude-haiku-4-5"));
    assert_eq!(key("future-mini").as_deref(), Some("gpt-4.1-mini"));
    assert_eq!(key("haiku-3").as_deref(), Some("claude-3-haiku-20240307"));
    assert_eq!(
        key("house").as_deref(),
        Some("house-model-2024-01-01"),
        "two dated entries at one price"
    );
    assert_eq!(key("split"), None, "dated entries disagree: ambiguous");
    assert_eq!(catalogue.unpriced_models(), ["split"]);
}

#[test]
fn an_exact_dated_entry_wins_over_its_alias() {
    let models = r#"
[[models]]
name = "old-4o"
provider = "openai"
upstream = "gpt-4o-2024-05-13"
"#;
    let catalogue = catalogue(models, None);
    assert_eq!(catalogue.price("old-4o").unwrap().input, per_mtok(5.0));
}

#[test]
fn unknown_models_are_unpriced_unless_config_prices_them() {
    let models = r#"
[[models]]
name = "llama"
provider = "local"
upstream = "llama-3.3-70b"
[[models]]
name = "input-only-chat"
provider = "local"
input_usd_per_mtok = 1.0
[[models]]
name = "local-embedder"
provider = "local"
kind = "embedding"
input_usd_per_mtok = 0.02
[[models]]
name = "priced-llama"
provider = "local"
upstream = "llama-3.3-70b"
input_usd_per_mtok = 0.5
output_usd_per_mtok = 0.7
"#;
    let catalogue = catalogue(models, None);
    assert_eq!(catalogue.unpriced_models(), ["llama", "input-only-chat"]);
    assert_eq!(catalogue.price("llama"), None);
    assert_eq!(catalogue.source_of("llama"), None);
    let embedder = catalogue.price("local-embedder").unwrap();
    assert_eq!(embedder.output, PricePerToken(0));
    assert_eq!(
        catalogue.source_of("priced-llama"),
        Some(PriceSource::Config)
    );
    assert_eq!(catalogue.entry("priced-llama").unwrap().matched_key, None);
    assert_eq!(catalogue.priced_count(), 2);
}

#[test]
fn from_config_reads_the_pricing_file_and_names_it_when_broken() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.json");
    std::fs::write(&path, FILE).unwrap();
    let text = format!(
        "{PROVIDERS}[cost]\npricing_file = {:?}\n[[models]]\nname = \"m\"\nprovider = \"openai\"\nupstream = \"gpt-4o\"\n",
        path.display().to_string()
    );
    let catalogue = Catalogue::from_config(&config(&text)).unwrap();
    assert_eq!(catalogue.source_of("m"), Some(PriceSource::File));
    assert_eq!(catalogue.file_entries(), 5);

    std::fs::write(&path, "{\"gpt-4o\": {\"input_cost_per_token\": 3e-06,,}}").unwrap();
    let err = Catalogue::from_config(&config(&text)).unwrap_err();
    assert!(err.to_string().contains("prices.json:1:"), "{err}");
}

#[test]
fn dates_are_recognised_only_in_full() {
    assert_eq!(
        strip_date("claude-sonnet-4-5-20250929"),
        Some("claude-sonnet-4-5")
    );
    assert_eq!(strip_date("gpt-4o-2024-08-06"), Some("gpt-4o"));
    assert_eq!(strip_date("gemini-2.0-flash-001"), None);
    assert_eq!(strip_date("o3-mini"), None);
    assert_eq!(strip_date("model-20251399"), None, "month 13");
    assert_eq!(strip_date("-20250101"), None, "nothing left");
    assert!(is_date("2025-09-29") && is_date("20250929"));
    assert!(!is_date("2025_09_29") && !is_date("1999-01-01"));
}
