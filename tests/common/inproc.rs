//! In-process harness: the gateway built from a config inside the test's own runtime, on a
//! real socket on 127.0.0.1:0, with scripted providers swapped in at the provider boundary.
//! No child processes: fast, and the test can read the gateway's state (the log store).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard::canonical::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, FinishReason, StreamEvent,
    Usage,
};
use switchyard::config::Config;
use switchyard::error::GatewayError;
use switchyard::logstore::SearchParams;
use switchyard::pipeline::AppState;
use switchyard::providers::{EventStream, Provider};

/// A gateway running in this process.
pub struct InProc {
    pub state: Arc<AppState>,
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub dir: tempfile::TempDir,
}

impl InProc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Wait until every finish step has run and the log has indexed every record.
    pub async fn settle_log(&self) {
        for _ in 0..500 {
            if self.state.tails.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Some(logs) = &self.state.logs {
            logs.sync().await.unwrap();
        }
    }

    /// The logged records matching `params`, after everything in flight has finished.
    pub async fn records(&self, params: SearchParams) -> Vec<serde_json::Value> {
        self.settle_log().await;
        let logs = self.state.logs.clone().expect("logs enabled");
        let found = tokio::task::spawn_blocking(move || logs.search(&params))
            .await
            .unwrap()
            .unwrap();
        let logs = self.state.logs.clone().unwrap();
        found
            .hits
            .iter()
            .map(|hit| logs.get(&hit.id).unwrap().unwrap())
            .collect()
    }

    /// The records of one feature (tests tag each request with its own feature).
    pub async fn records_of(&self, feature: &str) -> Vec<serde_json::Value> {
        self.records(SearchParams {
            feature: Some(feature.to_string()),
            limit: 50,
            ..SearchParams::default()
        })
        .await
    }

    /// Wait (bounded) until `feature` has at least `n` records, then return them all.
    pub async fn wait_records(&self, feature: &str, n: usize) -> Vec<serde_json::Value> {
        for _ in 0..100 {
            let found = self.records_of(feature).await;
            if found.len() >= n {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.records_of(feature).await
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Build and serve the gateway of `config` (TOML; relative paths resolve in a temp dir),
/// after `customize` had its way with the state (swap providers in).
pub async fn start(config: &str, customize: impl FnOnce(&mut AppState)) -> InProc {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let config = Config::load(&path).unwrap();
    start_with(config, dir, customize).await
}

pub async fn start_with(
    config: Config,
    dir: tempfile::TempDir,
    customize: impl FnOnce(&mut AppState),
) -> InProc {
    let gateway = switchyard::app::build(config).unwrap();
    let mut state = (*gateway.state).clone();
    customize(&mut state);
    let state = Arc::new(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let limits = switchyard::server::Limits::from_config(&state.config.server);
    let serving = state.clone();
    tokio::spawn(async move {
        let _keep = gateway;
        let shutdown = async move {
            let _ = stopped.await;
        };
        let _ = switchyard::server::serve(
            listener,
            serving,
            limits,
            shutdown,
            Duration::from_millis(100),
        )
        .await;
    });
    InProc {
        state,
        addr,
        stop: Some(stop),
        dir,
    }
}

/// Replace the provider `name` everywhere in the state's registry.
pub fn swap(state: &mut AppState, name: &str, provider: Arc<dyn Provider>) {
    assert!(
        state.registry.replace_provider(name, provider) > 0,
        "no models on {name}"
    );
}

/// One scripted outcome of a call.
#[derive(Clone)]
pub enum Script {
    /// Answer with this text (usage 10 in / 5 out).
    Answer(&'static str),
    /// Answer with no usage reported (the gateway must estimate it).
    AnswerWithoutUsage(&'static str),
    /// Fail with this upstream status.
    Fail(u16),
    /// Never answer.
    Hang,
    /// Stream these text deltas, then end normally (finish + usage).
    Stream(Vec<&'static str>),
    /// Stream these deltas, then fail mid-stream with a 502.
    StreamThenFail(Vec<&'static str>),
    /// Stream these deltas, then never send another event.
    StreamThenHang(Vec<&'static str>),
}

/// A provider that plays scripted outcomes in order (the last one repeats) and counts calls.
pub struct Scripted {
    name: String,
    script: Mutex<VecDeque<Script>>,
    pub calls: AtomicUsize,
    /// The `max_tokens` of every call, in arrival order (what the upstream was sent).
    max_tokens: Mutex<Vec<Option<u32>>>,
}

impl Scripted {
    pub fn new(name: &str, script: Vec<Script>) -> Arc<Scripted> {
        Arc::new(Scripted {
            name: name.to_string(),
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
            max_tokens: Mutex::new(Vec::new()),
        })
    }

    /// The `max_tokens` each call was sent with, in arrival order.
    pub fn max_tokens_seen(&self) -> Vec<Option<u32>> {
        self.max_tokens.lock().unwrap().clone()
    }

    fn next_for(&self, req: &ChatRequest) -> Script {
        self.max_tokens.lock().unwrap().push(req.max_tokens);
        self.next()
    }

    fn next(&self) -> Script {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut script = self.script.lock().unwrap();
        if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().unwrap_or(Script::Fail(500))
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

fn usage() -> Usage {
    Usage {
        input_tokens: 10,
        output_tokens: 5,
        cached_input_tokens: 0,
        cache_write_input_tokens: 0,
        estimated: false,
    }
}

fn fail(name: &str, status: u16) -> GatewayError {
    switchyard::providers::status_error(name, status, "scripted failure", None)
}

fn events(deltas: &[&'static str], model: &str) -> Vec<Result<StreamEvent, GatewayError>> {
    let mut out = vec![Ok(StreamEvent::Start {
        id: "scripted".into(),
        model: model.to_string(),
    })];
    out.extend(deltas.iter().map(|text| {
        Ok(StreamEvent::TextDelta {
            text: text.to_string(),
        })
    }));
    out
}

impl Provider for Scripted {
    fn chat(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
        _headers_deadline: Option<Duration>,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        let (script, name, model) = (
            self.next_for(req),
            self.name.clone(),
            upstream_model.to_string(),
        );
        Box::pin(async move {
            let answer = |text: &str, usage| ChatResponse {
                id: "scripted".into(),
                model: model.clone(),
                text: text.to_string(),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::Stop,
                usage,
            };
            match script {
                Script::Answer(text) => Ok(answer(text, usage())),
                Script::AnswerWithoutUsage(text) => Ok(answer(text, Usage::default())),
                Script::Fail(status) => Err(fail(&name, status)),
                Script::Hang => std::future::pending().await,
                _ => Ok(answer("scripted", usage())),
            }
        })
    }

    fn chat_stream(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>> {
        let (script, name, model) = (
            self.next_for(req),
            self.name.clone(),
            upstream_model.to_string(),
        );
        Box::pin(async move {
            let stream: EventStream = match script {
                Script::Fail(status) => return Err(fail(&name, status)),
                Script::Hang => std::future::pending().await,
                Script::Answer(text) | Script::AnswerWithoutUsage(text) => {
                    futures_util::stream::iter(events(&[text], &model)).boxed()
                }
                Script::Stream(deltas) => {
                    let mut all = events(&deltas, &model);
                    all.push(Ok(StreamEvent::Finish {
                        reason: FinishReason::Stop,
                    }));
                    all.push(Ok(StreamEvent::Usage { usage: usage() }));
                    futures_util::stream::iter(all).boxed()
                }
                Script::StreamThenFail(deltas) => {
                    let mut all = events(&deltas, &model);
                    all.push(Err(switchyard::providers::status_error(
                        &name,
                        502,
                        "scripted mid-stream failure",
                        None,
                    )));
                    futures_util::stream::iter(all).boxed()
                }
                Script::StreamThenHang(deltas) => {
                    futures_util::stream::iter(events(&deltas, &model))
                        .chain(futures_util::stream::pending())
                        .boxed()
                }
            };
            Ok(stream)
        })
    }

    fn embed(
        &self,
        req: &EmbeddingsRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>> {
        let (script, name, model) = (self.next(), self.name.clone(), upstream_model.to_string());
        let inputs = req.input.len();
        Box::pin(async move {
            match script {
                Script::Fail(status) => Err(fail(&name, status)),
                Script::Hang => std::future::pending().await,
                _ => Ok(EmbeddingsResponse {
                    model,
                    vectors: vec![vec![0.25, -0.5, 1.0]; inputs],
                    usage: Usage {
                        input_tokens: 8,
                        output_tokens: 0,
                        cached_input_tokens: 0,
                        cache_write_input_tokens: 0,
                        estimated: false,
                    },
                }),
            }
        })
    }
}

/// A config with logging on, two providers (`p1`, `p2`, served in-process by `mock` until
/// swapped), chat models `m1` on p1 and `m2` on p2, embedding models `e1` / `e2`, and an
/// optional policy directory.
pub fn config(policy_dir: Option<&Path>, extra: &str) -> String {
    let policy = match policy_dir {
        Some(dir) => format!("[policy]\ndir = \"{}\"\nwatch = false\n", dir.display()),
        None => String::new(),
    };
    format!(
        r#"{preamble}
[logs]
dir = "logs"
fsync_interval_ms = 5
commit_interval_ms = 50

[dispatch]
retries = 0
{policy}
[[providers]]
name = "p1"
kind = "mock"

[[providers]]
name = "p2"
kind = "mock"

[[models]]
name = "m1"
provider = "p1"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0

[[models]]
name = "m2"
provider = "p2"
input_usd_per_mtok = 1.0
output_usd_per_mtok = 2.0

[[models]]
name = "e1"
provider = "p1"
kind = "embedding"
input_usd_per_mtok = 0.02

[[models]]
name = "e2"
provider = "p2"
kind = "embedding"
input_usd_per_mtok = 0.02
{extra}
"#,
        preamble = super::preamble(""),
    )
}

/// A provider that records the prompt of every call, in the order the calls arrive, and holds
/// each answer until the test lets it go ([`Gated::release`] one at a time, [`Gated::open`] for
/// good). It answers like [`Script::Answer`] (usage 10 in / 5 out), streamed or not.
pub struct Gated {
    prompts: Mutex<Vec<String>>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Gated {
    pub fn new() -> Arc<Gated> {
        Arc::new(Gated {
            prompts: Mutex::new(Vec::new()),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        })
    }

    /// The prompts seen so far, in arrival order.
    pub fn prompts(&self) -> Vec<String> {
        self.prompts.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.prompts.lock().unwrap().len()
    }

    /// Let `n` held (or future) calls answer.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Let every call answer, now and from now on.
    pub fn open(&self) {
        self.gate.close();
    }

    /// Wait (bounded: 10 s) until at least `n` calls arrived; whether they did.
    pub async fn wait_calls(&self, n: usize) -> bool {
        for _ in 0..1000 {
            if self.calls() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.calls() >= n
    }

    /// Record the call and return the wait for its turn to answer.
    fn arrive(&self, req: &ChatRequest) -> impl std::future::Future<Output = ()> + Send {
        self.prompts.lock().unwrap().push(req.prompt_text());
        let gate = self.gate.clone();
        async move {
            // A closed gate is an open one.
            if let Ok(permit) = gate.acquire_owned().await {
                permit.forget();
            }
        }
    }
}

impl Provider for Gated {
    fn chat(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
        _headers_deadline: Option<Duration>,
    ) -> BoxFuture<'static, Result<ChatResponse, GatewayError>> {
        let (turn, model) = (self.arrive(req), upstream_model.to_string());
        Box::pin(async move {
            turn.await;
            Ok(ChatResponse {
                id: "gated".into(),
                model,
                text: "ok".into(),
                tool_calls: Vec::new(),
                finish_reason: FinishReason::Stop,
                usage: usage(),
            })
        })
    }

    fn chat_stream(
        &self,
        req: &ChatRequest,
        upstream_model: &str,
    ) -> BoxFuture<'static, Result<EventStream, GatewayError>> {
        let (turn, model) = (self.arrive(req), upstream_model.to_string());
        Box::pin(async move {
            turn.await;
            let mut all = events(&["ok"], &model);
            all.push(Ok(StreamEvent::Finish {
                reason: FinishReason::Stop,
            }));
            all.push(Ok(StreamEvent::Usage { usage: usage() }));
            let stream: EventStream = futures_util::stream::iter(all).boxed();
            Ok(stream)
        })
    }

    fn embed(
        &self,
        _req: &EmbeddingsRequest,
        _upstream_model: &str,
    ) -> BoxFuture<'static, Result<EmbeddingsResponse, GatewayError>> {
        Box::pin(async { Err(fail("gated", 400)) })
    }
}
