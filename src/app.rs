//! Start-up: build the shared state from a validated config and run the server.

use crate::config::Config;
use crate::logstore::LogStore;
use crate::pipeline::{auth, health::Health, AppState};
use crate::policy::{ConfigHost, LatencyWindow, PolicyOptions, PolicyStore};
use crate::providers::Registry;
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` runs, plus the handles needed to stop it cleanly.
pub struct Gateway {
    pub state: Arc<AppState>,
    _watch: Option<crate::policy::reload::WatchHandle>,
}

/// Build the gateway from a validated config.
pub fn build(config: Config) -> anyhow::Result<Gateway> {
    let config = Arc::new(config);
    let registry = Registry::from_config(&config).map_err(|e| anyhow::anyhow!(e.message))?;
    let latency = Arc::new(LatencyWindow::default());
    let health = Arc::new(Health::new(config.dispatch.clone()));
    let health_for_policy = health.clone();
    let host = Arc::new(
        ConfigHost::new(&config)
            .with_latency(latency.clone())
            .with_health(Arc::new(move |provider: &str| {
                health_for_policy.healthy(provider)
            })),
    );
    let options = PolicyOptions {
        max_operations: config.policy.max_operations,
        known_models: Some(config.models.iter().map(|m| m.name.clone()).collect()),
        on_error_open: config.policy.on_error == "open",
    };
    let policy = PolicyStore::load(config.policy.dir.as_deref(), options, host)
        .map_err(|e| anyhow::anyhow!("policy: {e}"))?;
    let watch = match (&config.policy.dir, config.policy.watch) {
        (Some(_), true) => Some(
            crate::policy::reload::watch(
                policy.clone(),
                Duration::from_millis(config.policy.debounce_ms),
            )
            .map_err(|e| anyhow::anyhow!("policy watcher: {e}"))?,
        ),
        _ => None,
    };
    if config.policy.dir.is_some() {
        crate::policy::reload::spawn_sighup(policy.clone())
            .map_err(|e| anyhow::anyhow!("policy: cannot listen for SIGHUP: {e}"))?;
    }
    let logs = if config.logs.enabled {
        let policy_for_redact = policy.clone();
        let hook: crate::logstore::RedactHook = Arc::new(move |text: &str| {
            let set = policy_for_redact.snapshot();
            set.redact(text).ok().flatten()
        });
        Some(LogStore::open(&config.logs, Some(hook)).map_err(|e| anyhow::anyhow!("logs: {e}"))?)
    } else {
        None
    };
    let state = Arc::new(AppState {
        keys: auth::KeyTable::from_config(&config),
        admin_key: auth::admin_digest(&config),
        health,
        log_sender: logs.as_ref().map(|l| l.sender()),
        logs,
        latency,
        policy,
        registry,
        config,
    });
    Ok(Gateway {
        state,
        _watch: watch,
    })
}

/// Serve on the configured address until SIGTERM/SIGINT, then drain and flush the log.
pub async fn serve(gateway: Gateway) -> anyhow::Result<()> {
    let state = gateway.state.clone();
    let listener = tokio::net::TcpListener::bind(&state.config.server.listen).await?;
    let addr = listener.local_addr()?;
    // The first stdout line: scripts and tests read the bound port from it.
    println!("switchyard listening on http://{addr}");
    tracing::info!(%addr, models = state.registry.model_names.len(), "listening");
    let grace = Duration::from_millis(state.config.server.shutdown_grace_ms);
    crate::server::serve(
        listener,
        state.clone(),
        crate::server::shutdown_signal(),
        grace,
    )
    .await?;
    if let Some(logs) = &state.logs {
        tracing::info!("flushing request log");
        logs.shutdown().await;
    }
    drop(gateway);
    tracing::info!("stopped");
    Ok(())
}
