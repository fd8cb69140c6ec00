//! Connection hygiene, as nginx does it: slow or idle clients are closed, the number of open
//! connections is capped, running out of file descriptors backs off quietly, and `/healthz`
//! keeps answering while many idle connections are open. Real sockets on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::inproc::{config, start, InProc};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn gateway(server: &str) -> InProc {
    let text = config(None, "").replacen("[server]\n", &format!("[server]\n{server}\n"), 1);
    start(&text, |_| {}).await
}

/// Read until the server closes the connection; returns what it sent. `None` if it was
/// still open after `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .ok()
        .map(|()| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_closed() {
    let gw = gateway("header_read_timeout_ms = 300\nidle_timeout_ms = 600000").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some(),
        "the slow-headers connection stayed open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_before_and_after_a_request() {
    let gw = gateway("idle_timeout_ms = 300\nheader_read_timeout_ms = 600000").await;
    // Connects and says nothing.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5))
        .await
        .is_some());
    // One request, then keeps the connection idle.
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut kept, Duration::from_secs(5)).await;
    assert!(
        answer
            .as_deref()
            .is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let gw = gateway("body_read_timeout_ms = 300").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\"",
        common::KEY
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer before the test's own timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("invalid_request_error"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_encoding_other_than_chunked_is_refused() {
    let gw = gateway("").await;
    let mut stream = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        common::KEY
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 501"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped_and_a_freed_slot_is_reused() {
    let gw = gateway("max_connections = 2\nidle_timeout_ms = 600000").await;
    let held_a = TcpStream::connect(gw.addr).await.unwrap();
    let _held_b = TcpStream::connect(gw.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = || async {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        closed_within(&mut stream, Duration::from_millis(700)).await
    };
    assert_eq!(health().await, None, "a third connection is not served");
    drop(held_a);
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(answer) = health().await {
                return answer;
            }
        }
    })
    .await
    .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_while_a_thousand_idle_connections_are_open() {
    let gw = gateway("").await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    let http = common::client();
    for _ in 0..20 {
        let resp =
            tokio::time::timeout(Duration::from_secs(2), http.get(gw.url("/healthz")).send())
                .await
                .expect("healthz in time")
                .unwrap();
        assert_eq!(resp.status(), 200);
    }
    drop(idle);
}

#[test]
fn running_out_of_file_descriptors_backs_off_and_logs_once() {
    // The gateway runs with 64 descriptors and is flooded with 150 connections: accept fails
    // with EMFILE. It must back off and log the episode once, not once per 50 ms.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let text = config(None, "").replacen("[server]\n", "[server]\nworker_threads = 1\n", 1);
    std::fs::write(&path, text).unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} serve --config {}",
            env!("CARGO_BIN_EXE_switchyard"),
            path.display()
        ))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line.trim().rsplit("http://").next().unwrap().to_string();
    let mut flood = Vec::new();
    for _ in 0..150 {
        if let Ok(stream) = std::net::TcpStream::connect(&addr) {
            flood.push(stream);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(flood);
    std::thread::sleep(Duration::from_millis(1500));
    let health = std::process::Command::new("curl")
        .args(["-s", "-m", "5", &format!("http://{addr}/healthz")])
        .output();
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    let failures = log.matches("accept failed").count();
    assert!(failures == 1, "{failures} accept-failure lines:\n{log}");
    if let Ok(out) = health {
        if !out.stdout.is_empty() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
        }
    }
}

#[test]
fn an_admin_key_env_that_is_not_set_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let text = config(None, "").replacen(
        "[server]\n",
        "[server]\nadmin_key_env = \"SWITCHYARD_TEST_UNSET_ADMIN_KEY_VAR\"\n",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("SWITCHYARD_TEST_UNSET_ADMIN_KEY_VAR"),
        "{stderr}"
    );
}
