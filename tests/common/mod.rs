//! Test harness: real `switchyard` processes on ephemeral 127.0.0.1 ports.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod inproc;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo gateway key used by test configs (sha256 below).
pub const KEY: &str = "sk-test-key";
pub const ADMIN_KEY: &str = "sk-test-admin";

pub fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub addr: String,
    pub stderr_path: Option<PathBuf>,
}

impl Proc {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Send a signal (e.g. "TERM", "KILL") and wait for exit.
    pub fn signal_and_wait(&mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-s", signal, &pid])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit after {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

/// Start a process and read `... listening on http://ADDR` from its first stdout line.
fn start(mut cmd: Command, stderr_path: Option<PathBuf>) -> Proc {
    cmd.stdout(Stdio::piped());
    match &stderr_path {
        Some(path) => {
            cmd.stderr(std::fs::File::create(path).unwrap());
        }
        None => {
            cmd.stderr(Stdio::inherit());
        }
    }
    let mut child = cmd.spawn().expect("spawn switchyard");
    let stdout = child.stdout.take().unwrap();
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let Some(addr) = line
        .trim()
        .rsplit("http://")
        .next()
        .filter(|a| a.contains(':'))
        .map(str::to_string)
    else {
        let _ = child.kill();
        let stderr = stderr_path
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .unwrap_or_default();
        panic!("process did not report its address; stdout: {line:?}; stderr: {stderr}");
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while reader.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Proc {
        child,
        addr,
        stderr_path,
    }
}

/// `switchyard mock-provider --listen 127.0.0.1:0 ARGS…`
pub fn mock_provider(args: &[&str]) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.args(["mock-provider", "--listen", "127.0.0.1:0"])
        .args(args);
    start(cmd, None)
}

/// A gateway on a config; `body` is the TOML after `[server]` (providers, models, …).
pub struct Gateway {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for Gateway {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Gateway {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

/// The `[server]` + `[[keys]]` preamble every test config starts with.
pub fn preamble(extra_server: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_key_sha256 = \"{}\"\nshutdown_grace_ms = 5000\n{extra_server}\n\n[[keys]]\nid = \"test\"\nkey_sha256 = \"{}\"\nuser = \"alice\"\nteam = \"support\"\ntier = \"pro\"\n\n",
        sha256_hex(ADMIN_KEY),
        sha256_hex(KEY)
    )
}

/// Start a gateway whose config file is `config` (written into a fresh temp dir, which is
/// also the base for relative paths such as `logs.dir`).
pub fn gateway(config: &str) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    gateway_in(dir, config)
}

/// Start a gateway in an existing directory (restart tests reuse it).
pub fn gateway_in(dir: tempfile::TempDir, config: &str) -> Gateway {
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info,switchyard=debug");
    let stderr = dir.path().join("gateway.stderr");
    let proc = start(cmd, Some(stderr));
    Gateway { proc, dir }
}

/// Providers for the three wire formats, all pointing at one mock-provider.
pub fn providers_on(mock: &Proc) -> String {
    let base = format!("http://{}", mock.addr);
    format!(
        r#"
[[providers]]
name = "oai"
kind = "openai-compatible"
base_url = "{base}/v1"
timeout_ms = 5000

[[providers]]
name = "ant"
kind = "anthropic"
base_url = "{base}/v1"
api_key_env = "SWITCHYARD_TEST_ANTHROPIC_KEY"
timeout_ms = 5000

[[providers]]
name = "gem"
kind = "gemini"
base_url = "{base}/v1beta"
api_key_env = "SWITCHYARD_TEST_GEMINI_KEY"
timeout_ms = 5000

[[models]]
name = "gpt-test"
provider = "oai"
upstream = "gpt-4o-mini"
input_usd_per_mtok = 0.15
output_usd_per_mtok = 0.60

[[models]]
name = "claude-test"
provider = "ant"
upstream = "claude-3-5-haiku-latest"
input_usd_per_mtok = 0.8
output_usd_per_mtok = 4.0

[[models]]
name = "gemini-test"
provider = "gem"
upstream = "gemini-2.0-flash"
input_usd_per_mtok = 0.1
output_usd_per_mtok = 0.4

[[models]]
name = "embed-test"
provider = "oai"
kind = "embedding"
upstream = "text-embedding-3-small"
"#
    )
}

/// Set the fake provider keys the test configs name (the mock checks presence only).
pub fn set_provider_env() {
    // Safety of set_var: tests set the same constant values, before spawning children.
    unsafe_env("SWITCHYARD_TEST_ANTHROPIC_KEY", "sk-ant-test-provider-key");
    unsafe_env("SWITCHYARD_TEST_GEMINI_KEY", "gem-test-provider-key");
}

fn unsafe_env(key: &str, value: &str) {
    if std::env::var(key).ok().as_deref() != Some(value) {
        // Edition 2021: set_var is safe to call; every test sets identical values.
        std::env::set_var(key, value);
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POST JSON with the test key as Bearer.
pub async fn post(url: &str, body: &serde_json::Value) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Parse a whole SSE body into (event, data) pairs.
pub fn sse(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut event = String::new();
    let mut data = String::new();
    for line in text.lines() {
        if line.is_empty() {
            if !data.is_empty() {
                out.push((std::mem::take(&mut event), std::mem::take(&mut data)));
            }
            event.clear();
        } else if let Some(v) = line.strip_prefix("event:") {
            event = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(v.trim_start());
        }
    }
    if !data.is_empty() {
        out.push((event, data));
    }
    out
}

/// Poll `f` until it returns Some or the timeout passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// GET the mock's counters.
pub async fn mock_stats(mock: &Proc) -> serde_json::Value {
    client()
        .get(mock.url("/_mock/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The gateway's quick input estimate of a request whose only message is the user's "hi":
/// bodies built as `max_tokens = N - hi_tokens()` reserve exactly N tokens.
pub fn hi_tokens() -> u64 {
    use switchyard::canonical::{ChatRequest, Message, Role};
    let request = ChatRequest {
        messages: vec![Message::text(Role::User, "hi".to_string())],
        ..Default::default()
    };
    switchyard::tokens::quick_estimate_input(&request)
}

/// `[[keys]]` for users bob (`sk-bob`, no team) and carol (`sk-carol`, team `sales`); alice
/// is the preamble's [`KEY`] (team `support`, tier `pro`).
pub fn users() -> String {
    format!(
        "\n[[keys]]\nid = \"bob-key\"\nkey_sha256 = \"{}\"\nuser = \"bob\"\n\n[[keys]]\nid = \"carol-key\"\nkey_sha256 = \"{}\"\nuser = \"carol\"\nteam = \"sales\"\n",
        sha256_hex("sk-bob"),
        sha256_hex("sk-carol"),
    )
}

/// The gateway key of a user of [`users`].
pub fn key_of(user: &str) -> &'static str {
    match user {
        "alice" => KEY,
        "bob" => "sk-bob",
        _ => "sk-carol",
    }
}

/// POST an OpenAI chat body as `user` of [`users`], tagged with `feature`.
pub async fn chat_as(
    url: &str,
    user: &str,
    feature: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client()
        .post(url)
        .bearer_auth(key_of(user))
        .header("x-switchyard-feature", feature)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// POST an Anthropic messages body as `user` of [`users`], tagged with `feature`.
pub async fn messages_as(
    url: &str,
    user: &str,
    feature: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    client()
        .post(url)
        .header("x-api-key", key_of(user))
        .header("anthropic-version", "2023-06-01")
        .header("x-switchyard-feature", feature)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// GET an admin URL with the admin key; the JSON answer.
pub async fn admin_json(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
