//! How close the cheap input-token estimate is to the real tokenizer, per kind of prompt.
//!
//! `tokens::quick_estimate_input` runs on every request (the rate limiter is to reserve it
//! at admission), so it must be cheap and rarely under-estimate. This reads the corpus in
//! `benches/tokens/corpus/` (one request per line: a JSON array of message texts, user and
//! assistant in turn), adds long documents and machine-made strings derived from it, counts
//! each request's real tokens with o200k_base, and prints per category the ratio
//! estimate/real of the current estimate and of the old bytes/4 rule, then the estimate's
//! speed. `benches/tokens/RESULTS.md` has a run and its reading.
//!
//! ```text
//! cargo run --release --example estimate_accuracy
//! cargo run --release --example estimate_accuracy -- --corpus DIR --features FILE.jsonl
//! ```
//!
//! `--features` also writes each request with its real token count as JSON Lines, for
//! `benches/tokens/fit_weights.py`.

use std::error::Error;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;
use switchyard::canonical::{ChatRequest, ContentPart, Message, Role};
use switchyard::tokens::quick_estimate_input;
use tiktoken_rs::CoreBPE;

/// Tokens of framing per message in OpenAI's chat format (gpt-4o): 3, plus 1 for the role.
const FRAMING_PER_MESSAGE: u64 = 4;
/// Tokens that prime the reply, once per request.
const FRAMING_PER_REQUEST: u64 = 3;

/// One request of the corpus with its real token count.
struct Sample {
    category: String,
    request: ChatRequest,
    /// Tokens of the message texts alone (o200k_base).
    content_tokens: u64,
    /// Content plus the chat framing: what the model would be billed for.
    real_tokens: u64,
    text_bytes: usize,
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/tokens/corpus");
    let mut features: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--corpus" => corpus = args.next().ok_or("--corpus needs a directory")?.into(),
            "--features" => features = Some(args.next().ok_or("--features needs a file")?.into()),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    let bpe = tiktoken_rs::o200k_base()?;
    let samples = load_corpus(&corpus, &bpe)?;
    if let Some(path) = &features {
        write_features(path, &samples)?;
        println!("wrote {} feature rows to {}", samples.len(), path.display());
    }

    let mut categories: Vec<&str> = samples.iter().map(|s| s.category.as_str()).collect();
    categories.dedup();
    println!(
        "{} requests, {} KiB of text, {} real tokens\n",
        samples.len(),
        samples.iter().map(|s| s.text_bytes).sum::<usize>() / 1024,
        samples.iter().map(|s| s.real_tokens).sum::<u64>()
    );
    for (title, estimate) in [
        (
            "quick_estimate_input (current)",
            &(|r: &ChatRequest| quick_estimate_input(r)) as &dyn Fn(&ChatRequest) -> u64,
        ),
        ("bytes/4 + 3 per message + 3 (old rule)", &bytes_over_four),
    ] {
        println!("## {title}\n");
        println!("{}", table(&samples, &categories, estimate));
    }
    timing(&samples, &bpe);
    Ok(())
}

/// The estimate before this measurement, as it was: ≈4 bytes per token plus 3 per message
/// and 3.
fn bytes_over_four(req: &ChatRequest) -> u64 {
    let bytes: usize = req
        .messages
        .iter()
        .flat_map(|m| m.content.iter())
        .map(|part| match part {
            ContentPart::Text { text } => text.len(),
            ContentPart::Image { .. } => 0,
        })
        .sum();
    (bytes as u64).div_ceil(4) + 3 * req.messages.len() as u64 + 3
}

/// Reads every `*.jsonl` of the corpus (category = file stem), plus one `long-doc` request
/// per single-message file: all its texts joined, as a long pasted document.
fn load_corpus(dir: &Path, bpe: &CoreBPE) -> Result<Vec<Sample>, Box<dyn Error>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no *.jsonl in {}", dir.display()).into());
    }
    let mut samples = Vec::new();
    let mut long_docs = Vec::new();
    for path in &files {
        let category = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut texts_of_file = Vec::new();
        for line in std::fs::read_to_string(path)?.lines() {
            let messages: Vec<String> = serde_json::from_str(line)?;
            if let [only] = messages.as_slice() {
                texts_of_file.push(only.clone());
            }
            samples.push(sample(&category, messages, bpe));
        }
        if !category.starts_with("chat-") && !texts_of_file.is_empty() {
            long_docs.push(sample("long-doc", vec![texts_of_file.join("\n\n")], bpe));
        }
    }
    samples.extend(long_docs);
    let texts: Vec<String> = samples
        .iter()
        .flat_map(|s| s.request.messages.iter().map(Message::joined_text))
        .collect();
    for (category, text) in machine_data(&texts) {
        samples.push(sample(category, vec![text], bpe));
    }
    Ok(samples)
}

/// Requests of machine-made strings, derived from the corpus texts (so they are fixed):
/// SHA-256 digests in hex, base64 of the texts, and a numeric CSV of their sizes. Tool
/// results and pasted logs carry such strings; the tokenizer splits them finely, so a
/// bytes-per-token rule fitted on prose under-estimates them.
fn machine_data(texts: &[String]) -> Vec<(&'static str, String)> {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    let mut out = Vec::new();
    let mut next = texts.iter().cycle();
    for i in 0..30usize {
        let lines: Vec<String> = (0..1 + (i * 7) % 40)
            .filter_map(|_| next.next())
            .map(|t| format!("{}  {} bytes", hex::encode(Sha256::digest(t)), t.len()))
            .collect();
        out.push(("gen-hex", lines.join("\n")));
    }
    for i in 0..30usize {
        let Some(text) = next.next() else { break };
        let encoded = base64::engine::general_purpose::STANDARD.encode(text);
        let cut = (100 + (i * 331) % 4000).min(encoded.len());
        out.push(("gen-base64", encoded[..cut].to_string()));
    }
    for i in 0..30usize {
        let mut csv = String::from("id,bytes,chars,lines,checksum,ratio\n");
        for (j, text) in next.by_ref().take(1 + (i * 5) % 60).enumerate() {
            let chars = text.chars().count();
            let checksum = text
                .bytes()
                .fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(b.into()));
            let _ = writeln!(
                csv,
                "{j},{},{chars},{},{},{:.3}",
                text.len(),
                text.lines().count(),
                checksum % 100_000,
                text.len() as f64 / chars.max(1) as f64
            );
        }
        out.push(("gen-numbers", csv));
    }
    out
}

fn sample(category: &str, messages: Vec<String>, bpe: &CoreBPE) -> Sample {
    let content_tokens: u64 = messages
        .iter()
        .map(|m| bpe.encode_ordinary(m).len() as u64)
        .sum();
    let text_bytes = messages.iter().map(String::len).sum();
    let real_tokens =
        content_tokens + FRAMING_PER_MESSAGE * messages.len() as u64 + FRAMING_PER_REQUEST;
    let messages = messages
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let role = if i % 2 == 0 {
                Role::User
            } else {
                Role::Assistant
            };
            Message::text(role, text)
        })
        .collect();
    Sample {
        category: category.to_string(),
        request: ChatRequest {
            model: "gpt-4o".into(),
            messages,
            ..ChatRequest::default()
        },
        content_tokens,
        real_tokens,
        text_bytes,
    }
}

/// The `p`-th percentile (0..=100) of sorted values, nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A Markdown table of ratio estimate/real per category, then over all requests.
fn table(
    samples: &[Sample],
    categories: &[&str],
    estimate: &dyn Fn(&ChatRequest) -> u64,
) -> String {
    let mut out = String::from(
        "| category | n | bytes/token | mean | p5 | p50 | p95 | worst under-estimate |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let all = "all requests";
    for category in categories.iter().copied().chain([all]) {
        let rows: Vec<&Sample> = samples
            .iter()
            .filter(|s| category == all || s.category == category)
            .collect();
        let mut ratios: Vec<(f64, &Sample, u64)> = rows
            .iter()
            .map(|s| {
                let est = estimate(&s.request);
                (est as f64 / s.real_tokens as f64, *s, est)
            })
            .collect();
        ratios.sort_by(|a, b| a.0.total_cmp(&b.0));
        let sorted: Vec<f64> = ratios.iter().map(|r| r.0).collect();
        let mean = sorted.iter().sum::<f64>() / sorted.len().max(1) as f64;
        let bytes: usize = rows.iter().map(|s| s.text_bytes).sum();
        let content: u64 = rows.iter().map(|s| s.content_tokens).sum();
        let worst = match ratios.first() {
            Some((ratio, s, est)) if *ratio < 1.0 => format!(
                "{ratio:.2} ({est} vs {} tokens, {} B, {})",
                s.real_tokens, s.text_bytes, s.category
            ),
            _ => "none".to_string(),
        };
        let _ = writeln!(
            out,
            "| {category} | {} | {:.2} | {mean:.2} | {:.2} | {:.2} | {:.2} | {worst} |",
            rows.len(),
            bytes as f64 / content.max(1) as f64,
            percentile(&sorted, 5.0),
            percentile(&sorted, 50.0),
            percentile(&sorted, 95.0),
        );
    }
    out
}

/// Nanoseconds per KiB of text for the estimate (over the whole corpus, repeated) and, for
/// scale, for the tokenizer (once). Timed in the thread's CPU time where Linux tells it, so
/// that other work on the machine counts less; else in wall-clock time.
fn timing(samples: &[Sample], bpe: &CoreBPE) {
    let kib = samples.iter().map(|s| s.text_bytes).sum::<usize>() as f64 / 1024.0;
    // Passes over the corpus until at least this much time went by: the CPU clock moves in
    // scheduler ticks of a few milliseconds.
    let min_ns = 300e6;
    let per_kib = |estimate: &dyn Fn(&ChatRequest) -> u64| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let clock = Clock::start();
            let mut passes = 0u64;
            while passes == 0 || clock.elapsed_ns() < min_ns {
                for _ in 0..10 {
                    for s in samples {
                        black_box(estimate(black_box(&s.request)));
                    }
                }
                passes += 10;
            }
            best = best.min(clock.elapsed_ns() / passes as f64 / kib);
        }
        best
    };
    let quick = per_kib(&quick_estimate_input);
    let old = per_kib(&bytes_over_four);
    let clock = Clock::start();
    for s in samples {
        for m in &s.request.messages {
            black_box(bpe.encode_ordinary(&m.joined_text()).len());
        }
    }
    let tokenizer = clock.elapsed_ns() / kib;
    println!(
        "## speed ({}, best of 5 runs of at least 0.3 s over the corpus, {kib:.0} KiB)\n",
        Clock::start().name()
    );
    println!("| what | ns per KiB of text |\n|---|---:|");
    println!("| quick_estimate_input (current) | {quick:.0} |");
    println!("| bytes/4 rule (old) | {old:.0} |");
    println!("| o200k_base tokenizer (one pass) | {tokenizer:.0} |");
}

/// The calling thread's CPU time (Linux), or wall-clock time.
enum Clock {
    Cpu(u128),
    Wall(Instant),
}

impl Clock {
    fn start() -> Clock {
        match thread_cpu_ns() {
            Some(ns) => Clock::Cpu(ns),
            None => Clock::Wall(Instant::now()),
        }
    }

    fn elapsed_ns(&self) -> f64 {
        match self {
            Clock::Cpu(start) => thread_cpu_ns().map_or(0.0, |now| (now - start) as f64),
            Clock::Wall(start) => start.elapsed().as_nanos() as f64,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Clock::Cpu(_) => "thread CPU time",
            Clock::Wall(_) => "wall-clock time",
        }
    }
}

/// Nanoseconds the calling thread has run, from `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> Option<u128> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// One JSON line per request: category, message texts and their real tokens (o200k_base,
/// framing excluded), for `benches/tokens/fit_weights.py`.
fn write_features(path: &Path, samples: &[Sample]) -> Result<(), Box<dyn Error>> {
    let mut out = String::new();
    for s in samples {
        let messages: Vec<String> = s
            .request
            .messages
            .iter()
            .map(Message::joined_text)
            .collect();
        let row = serde_json::json!({
            "category": s.category,
            "messages": messages,
            "content_tokens": s.content_tokens,
        });
        out.push_str(&row.to_string());
        out.push('\n');
    }
    std::fs::write(path, out)?;
    Ok(())
}
