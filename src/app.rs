//! Start-up: build the shared state from a validated config and run the server.

use crate::config::Config;
use crate::cost::{PriceBook, SpendLedger};
use crate::ledger::{Admission, LocalLedger, LocalLedgerConfig, MoneyLedger};
use crate::logstore::LogStore;
use crate::pipeline::capacity::{Capacity, LiveLimits};
use crate::pipeline::stages::matcher::{Facts, Field};
use crate::pipeline::stages::{StageParts, Stages};
use crate::pipeline::{auth, breaker::Breakers, chaos::Chaos, AppState};
use crate::policy::{ConfigHost, LatencyWindow, PolicyOptions, PolicyStore};
use crate::providers::Registry;
use std::sync::Arc;
use std::time::Duration;

/// Everything `serve` runs, plus the handles needed to stop it cleanly.
pub struct Gateway {
    pub state: Arc<AppState>,
    _watch: Option<crate::policy::reload::WatchHandle>,
    _prices_watch: Option<crate::cost::PriceWatchHandle>,
}

/// Build the gateway from a validated config.
pub fn build(config: Config) -> anyhow::Result<Gateway> {
    let config = Arc::new(config);
    let registry = Registry::from_config(&config).map_err(|e| anyhow::anyhow!(e.message))?;
    let latency = Arc::new(LatencyWindow::default());
    if let Some(var) = &config.server.admin_key_env {
        if std::env::var(var).map_or(true, |key| key.is_empty()) {
            anyhow::bail!(
                "server.admin_key_env names `{var}`, which is not set (or empty): set it, or remove admin_key_env to run without the admin API"
            );
        }
    }
    let ledger = Arc::new(LocalLedger::new(LocalLedgerConfig {
        max_buckets: config.admission.max_buckets,
        ..LocalLedgerConfig::default()
    }));
    spawn_evictor(
        ledger.clone(),
        Duration::from_millis(config.admission.evict_every_ms),
    );
    let admission = Arc::new(Admission::new(ledger, config.admission.max_waiters));
    let capacity = Arc::new(Capacity::new(
        &config,
        admission.clone(),
        registry.rate_hints().clone(),
    ));
    let breakers = Arc::new(Breakers::new(config.dispatch.clone()));
    let health_for_policy = breakers.clone();
    let host = Arc::new(
        ConfigHost::new(&config)
            .with_latency(latency.clone())
            .with_limits(Arc::new(LiveLimits(capacity.clone())))
            .with_health(Arc::new(move |provider: &str| {
                health_for_policy.healthy(provider)
            })),
    );
    let options = PolicyOptions {
        max_operations: config.policy.max_operations,
        known_models: Some(config.models.iter().map(|m| m.name.clone()).collect()),
        on_error_open: config.policy.on_error == crate::config::OnError::Open,
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
    let prices = Arc::new(PriceBook::new(&config).map_err(|e| anyhow::anyhow!("cost: {e}"))?);
    let prices_watch = prices
        .watch(Duration::from_millis(config.policy.debounce_ms))
        .map_err(|e| anyhow::anyhow!("cost: {e}"))?;
    for model in prices.catalogue().unpriced_models() {
        tracing::warn!(model = %model, unpriced = ?config.cost.unpriced, "model has no price: its requests are recorded as cost_unknown");
    }
    let spend =
        SpendLedger::open(&config.cost).map_err(|e| anyhow::anyhow!("spend ledger: {e}"))?;
    let money = Arc::new(MoneyLedger::new(
        64,
        config.admission.max_buckets,
        config.cost.utc_offset_s().unwrap_or(0),
    ));
    let cache = Arc::new(crate::cache::ResponseCache::new(&config.cache));
    let metrics = Arc::new(crate::observe::Metrics::new(&config));
    let stages = Arc::new(Stages::new(
        &config,
        StageParts {
            cache: cache.clone(),
            metrics: metrics.clone(),
            admission: admission.clone(),
            money: money.clone(),
            prices: prices.clone(),
            spend: Some(spend.clone()),
        },
    ));
    restore_budgets(&config, &stages, &money, &spend);
    spawn_cost_upkeep(
        money.clone(),
        spend.clone(),
        Duration::from_millis(config.admission.evict_every_ms),
    );
    let state = Arc::new(AppState {
        keys: Arc::new(auth::KeyTable::from_config(&config)),
        admin_key: auth::admin_digest(&config),
        breakers,
        chaos: Arc::new(Chaos::default()),
        stages,
        admission,
        prices,
        money,
        spend: Some(spend),
        cache,
        metrics,
        capacity,
        background: tokio::runtime::Handle::try_current().ok(),
        tails: tokio_util::task::TaskTracker::new(),
        closing: Arc::new(std::sync::atomic::AtomicBool::new(false)),
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
        _prices_watch: prices_watch,
    })
}

/// Rebuild the budgets' current periods from the spend ledger: every recorded event since the
/// earliest period start counts again, under the keys the budgets give it now.
fn restore_budgets(config: &Config, stages: &Stages, money: &MoneyLedger, spend: &SpendLedger) {
    if config.budgets.is_empty() {
        return;
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    let offset = config.cost.utc_offset_s().unwrap_or(0);
    let since = config
        .budgets
        .iter()
        .map(|b| crate::cost::period::period_start_ms(b.period, now_ms, offset))
        .min()
        .unwrap_or(now_ms);
    let budgets = stages.budgets();
    let replayed = spend.replay(since, |event| {
        let Some(cost) = event.cost else {
            return;
        };
        for limit in budgets.limits_for(&EventFacts(event)) {
            money.restore(&limit, event.ts_ms, cost, now_ms);
        }
    });
    match replayed {
        Ok(events) => {
            tracing::info!(
                events,
                budgets = money.len(),
                "budgets restored from the spend ledger"
            )
        }
        Err(err) => {
            tracing::error!(error = %err, "budgets could not be restored from the spend ledger")
        }
    }
}

/// A recorded spend event, as budget rules see it.
struct EventFacts<'a>(&'a crate::cost::SpendEvent);

impl Facts for EventFacts<'_> {
    fn get(&self, field: Field) -> Option<&str> {
        let event = self.0;
        match field {
            Field::User => Some(&event.user),
            Field::Team => event.team.as_deref(),
            Field::Tier => event.tier.as_deref(),
            Field::Feature => event.feature.as_deref(),
            Field::Model => Some(&event.requested_model),
            Field::Key => Some(&event.key),
        }
    }
}

/// Evict idle budget buckets every `every` and apply the spend ledger's retention hourly,
/// on the current runtime (none: never).
fn spawn_cost_upkeep(money: Arc<MoneyLedger>, spend: SpendLedger, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(&money);
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_retention = None::<tokio::time::Instant>;
        loop {
            ticks.tick().await;
            let Some(money) = weak.upgrade() else {
                return;
            };
            let now_ms = chrono::Utc::now().timestamp_millis();
            money.evict_idle(now_ms);
            if last_retention.is_none_or(|at| at.elapsed() >= Duration::from_secs(3600)) {
                last_retention = Some(tokio::time::Instant::now());
                let spend = spend.clone();
                let swept = tokio::task::spawn_blocking(move || spend.run_retention(now_ms)).await;
                if let Ok(Err(err)) = swept {
                    tracing::warn!(error = %err, "spend ledger retention failed");
                }
            }
        }
    });
}

/// Evict idle rate-limit buckets every `every`, on the current runtime (none: never, as in
/// tools that build a gateway without serving).
fn spawn_evictor(ledger: Arc<LocalLedger>, every: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(&ledger);
    runtime.spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(ledger) = weak.upgrade() else {
                return;
            };
            let evicted = ledger.evict_idle();
            if evicted > 0 {
                tracing::debug!(
                    evicted,
                    live = ledger.live_buckets(),
                    "idle rate-limit buckets evicted"
                );
            }
        }
    });
}

/// A listening socket with SO_REUSEPORT, so each request thread accepts on its own socket
/// and the kernel spreads connections between them.
fn reuseport_listener(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serve on the configured address until SIGTERM/SIGINT, then drain and flush the log.
///
/// Thread per core: each request thread runs a single-threaded tokio runtime with its own
/// listener and its own upstream connection pool, so a request is accepted, routed, sent
/// upstream and answered on one thread without cross-thread wake-ups. Policies, breakers,
/// the log store and everything else are shared. This runtime (the caller's) keeps signals,
/// the policy watcher and the log's waiting hand-offs.
pub async fn serve(gateway: Gateway) -> anyhow::Result<()> {
    let state = gateway.state.clone();
    let config = state.config.clone();
    let addr: std::net::SocketAddr = config.server.listen.parse()?;
    // SO_REUSEPORT would let a second gateway (same user) share a port in use and silently
    // split its traffic: claim the port with a plain socket first, so "address in use" is
    // still an error, then hand it to the request threads' sockets.
    let bound = {
        let probe = std::net::TcpListener::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        probe.local_addr()?
    };
    let first = reuseport_listener(bound)?;
    let threads = config
        .server
        .worker_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(reuseport_listener(bound)?);
    }
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let limits = crate::server::Limits::from_config(&config.server);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = Vec::with_capacity(threads);
    for (n, listener) in listeners.into_iter().enumerate() {
        let mut worker_state = (*state).clone();
        // Each thread's own client, so its pooled connections live on its runtime; the rate
        // hints are one store for all threads.
        let hints = state.registry.rate_hints().clone();
        worker_state.registry = Registry::from_config_with_hints(&config, hints)
            .map_err(|e| anyhow::anyhow!(e.message))?;
        let worker_state = Arc::new(worker_state);
        let mut stop = stop_rx.clone();
        let limits = limits.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        workers.push(
            std::thread::Builder::new()
                .name(format!("switchyard-{n}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        let shutdown = async move {
                            let _ = stop.wait_for(|stopped| *stopped).await;
                        };
                        crate::server::serve(listener, worker_state, limits, shutdown, grace).await
                    })
                })?,
        );
    }
    // The first stdout line: scripts and tests read the bound port from it.
    println!("switchyard listening on http://{bound}");
    tracing::info!(addr = %bound, threads, models = state.registry.model_names.len(), "listening");
    crate::server::shutdown_signal().await;
    state
        .closing
        .store(true, std::sync::atomic::Ordering::Release);
    let _ = stop_tx.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("request thread panicked")))
            })
            .collect::<Vec<_>>()
    })
    .await?;
    for result in joined {
        if let Err(err) = result {
            tracing::error!(error = %err, "request thread failed");
        }
    }
    // Requests cut by the shutdown finished on this runtime: wait for their records.
    state.tails.close();
    if tokio::time::timeout(grace, state.tails.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            pending = state.tails.len(),
            "finish steps still running after the grace period"
        );
    }
    if let Some(spend) = &state.spend {
        tracing::info!("flushing spend ledger");
        spend.shutdown().await;
    }
    if let Some(logs) = &state.logs {
        tracing::info!("flushing request log");
        logs.shutdown().await;
    }
    drop(gateway);
    tracing::info!("stopped");
    Ok(())
}
