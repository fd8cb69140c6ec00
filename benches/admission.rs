//! Cost of rate-limit admission on the request path (DESIGN.md budget: limits ≤ 3 µs per
//! request for three buckets), for one limit and for three (user `tokens_per_minute`,
//! feature `requests_per_minute`, key `concurrency`), each admitted (**hit**) and refused at
//! once (**miss**: over the limit, `queue_ms` 0). 10,000 users (each with its own key) and four
//! features are used round-robin, so the ledger's maps hold realistic numbers of buckets.
//!
//! - `admission/*`: [`Admission::admit`] + [`Admission::settle`] on a [`LocalLedger`], with the
//!   bucket keys built beforehand: the ledger and the fair queue alone.
//! - `limits_stage/*`: the same through the limits stage as a request pays it
//!   (`Stages::on_request` + `Stages::on_finish` on a gateway built from a `[[limits]]`
//!   config): rule matching, bucket-key building, the input estimate, admission, the 429
//!   error on a miss, and the settlement in the tail.
//!
//! The in-process ledger never suspends, so every future is polled once with
//! `now_or_never` (no runtime in the measurement; a future that did not finish at once
//! panics). A miss is not settled: a refused request holds no reservation.
//!
//! Each case is measured twice: in wall time (`admission/*`, `limits_stage/*`), and in the
//! bench thread's own CPU time (`admission_cpu/*`, `limits_stage_cpu/*`, read from
//! `/proc/thread-self/schedstat`), which other work on a shared machine does not inflate.
//!
//! - `budgets_stage/*`: the budgets stage the same way (`[[budgets]]` per user day, per
//!   feature month and per key total, every request matching all three): rule matching,
//!   the worst-case price, the budget reservation, the 402 on a miss, and in the tail the
//!   real cost priced and settled. `budgets_stage/none` is the same gateway without budgets
//!   (the tail still prices the request and appends it to the spend ledger, as every
//!   request does): the difference is the budget check's cost.
//!
//! `cargo bench --bench admission`

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use futures_util::FutureExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchyard::app::Gateway;
use switchyard::canonical::{ChatRequest, Message, Role, Usage};
use switchyard::config::{Config, Priority};
use switchyard::context::{Endpoint, Principal, RequestContext};
use switchyard::error::Dialect;
use switchyard::ledger::{
    Admission, BucketLimit, Demand, Ledger, Limit, LocalLedger, LocalLedgerConfig, Waiting,
};
use switchyard::pipeline::capacity::reservation_tokens;
use switchyard::pipeline::dispatch::Plan;
use switchyard::pipeline::exchange::{Exchange, Finished, Outcome};
use switchyard::pipeline::policy::Decided;
use switchyard::pipeline::stages::StageStates;

const USERS: usize = 10_000;
const FEATURES: [&str; 4] = ["chat", "search", "summarize", "batch"];
/// Never refuses at the rates a benchmark reaches.
const NEVER: u64 = 1_000_000_000_000;
/// The per-user token limit of the miss cases, overspent a thousandfold before measuring.
const MISS_TPM: u64 = 10_000;

/// The request every case admits: the two-message chat of the load harness.
fn request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, "You are a helpful assistant."),
            Message::text(Role::User, "Say hello in one short sentence."),
        ],
        max_tokens: Some(32),
        ..ChatRequest::default()
    }
}

/// What the provider reported: less than the reservation, so settlement refunds.
fn usage() -> Usage {
    Usage {
        input_tokens: 20,
        output_tokens: 9,
        ..Usage::default()
    }
}

/// Poll a future that must finish at once (the in-process ledger never waits).
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    match future.now_or_never() {
        Some(out) => out,
        None => panic!("the in-process ledger suspended"),
    }
}

/// The bench thread's own time on a CPU, in nanoseconds: the first field of
/// `/proc/thread-self/schedstat` (Linux).
fn thread_cpu_ns() -> u64 {
    let stat = match std::fs::read_to_string("/proc/thread-self/schedstat") {
        Ok(stat) => stat,
        Err(err) => panic!("reading /proc/thread-self/schedstat: {err}"),
    };
    match stat.split_whitespace().next().map(str::parse) {
        Some(Ok(ns)) => ns,
        _ => panic!("unexpected /proc/thread-self/schedstat: {stat:?}"),
    }
}

/// Criterion measurement of the bench thread's CPU time rather than wall time: time the
/// thread spent waiting for a core (other processes on the machine) is not counted. The
/// kernel brings a running thread's figure up to date only at scheduler ticks (a few ms), so
/// the groups take flat samples of tens of milliseconds each, where that error averages out.
struct ThreadCpuTime;

/// Wall time's formatter (nanoseconds), reused for CPU nanoseconds.
static WALL_TIME: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }

    fn end(&self, started: u64) -> u64 {
        thread_cpu_ns().saturating_sub(started)
    }

    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }

    fn zero(&self) -> u64 {
        0
    }

    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }

    fn formatter(&self) -> &dyn ValueFormatter {
        WALL_TIME.formatter()
    }
}

// ---- Admission alone -------------------------------------------------------------------

/// The buckets of user `i`: user tpm, then (with `three`) feature rpm and key concurrency.
fn buckets_of(i: usize, three: bool, user_tpm: u64) -> Vec<BucketLimit> {
    let mut buckets = vec![BucketLimit::new(
        format!("user_tpm:user=user-{i}"),
        Limit {
            tokens_per_minute: Some(user_tpm),
            ..Limit::default()
        },
    )];
    if three {
        buckets.push(BucketLimit::new(
            format!("feature_rpm:feature={}", FEATURES[i % FEATURES.len()]),
            Limit {
                requests_per_minute: Some(NEVER),
                ..Limit::default()
            },
        ));
        buckets.push(BucketLimit::new(
            format!("key_concurrency:key=key-{i}"),
            Limit {
                concurrency: Some(1_000),
                ..Limit::default()
            },
        ));
    }
    buckets
}

struct AdmissionCase {
    admission: Admission,
    requests: Vec<(Vec<BucketLimit>, Waiting)>,
    demand: Demand,
    actual: Demand,
}

fn admission_case(three: bool, miss: bool) -> AdmissionCase {
    let ledger = Arc::new(LocalLedger::new(LocalLedgerConfig::default()));
    let admission = Admission::new(ledger.clone(), 10_000);
    let user_tpm = if miss { MISS_TPM } else { NEVER };
    let requests: Vec<_> = (0..USERS)
        .map(|i| {
            let waiting = Waiting {
                owner: Arc::from(format!("user-{i}")),
                priority: Priority::Interactive,
                max_wait: Duration::ZERO,
            };
            (buckets_of(i, three, user_tpm), waiting)
        })
        .collect();
    let demand = Demand {
        tokens: reservation_tokens(
            switchyard::tokens::quick_estimate_input(&request()),
            request().max_tokens,
            None,
            1024,
        ),
    };
    let usage = usage();
    let actual = Demand {
        tokens: usage.input_tokens + usage.output_tokens,
    };
    // Every bucket exists before measuring; for a miss, every user overspent its window.
    let overspent = Demand {
        tokens: MISS_TPM * 1_000,
    };
    for (buckets, _) in &requests {
        let reservation = match ready(ledger.reserve(buckets, demand)) {
            Ok(reservation) => reservation,
            Err(err) => panic!("warming the ledger: {err}"),
        };
        let spent = if miss { overspent } else { actual };
        if let Err(err) = ready(ledger.settle(reservation, spent)) {
            panic!("warming the ledger: {err}");
        }
    }
    AdmissionCase {
        admission,
        requests,
        demand,
        actual,
    }
}

fn bench_admission<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    for (name, three) in [("one_limit", false), ("three_limits", true)] {
        let case = admission_case(three, false);
        let mut next = 0;
        group.bench_function(format!("{name}/hit"), |b| {
            b.iter(|| {
                let (buckets, waiting) = &case.requests[next % USERS];
                next += 1;
                let admitted = match ready(case.admission.admit(buckets, case.demand, waiting)) {
                    Ok(admitted) => admitted,
                    Err(refusal) => panic!("hit refused: {refusal:?}"),
                };
                black_box(ready(
                    case.admission.settle(admitted.reservation, case.actual),
                ))
            })
        });
        let case = admission_case(three, true);
        let mut next = 0;
        group.bench_function(format!("{name}/miss"), |b| {
            b.iter(|| {
                let (buckets, waiting) = &case.requests[next % USERS];
                next += 1;
                match ready(case.admission.admit(buckets, case.demand, waiting)) {
                    Ok(_) => panic!("miss admitted"),
                    Err(refusal) => black_box(refusal),
                }
            })
        });
    }
    group.finish();
}

// ---- Through the limits stage ----------------------------------------------------------

/// A gateway whose only feature is `rules` (a mock provider that is never called, no
/// policy, no request log; the spend ledger in a temporary directory).
fn gateway(rules: &str, spend_dir: &Path) -> Gateway {
    let text = format!(
        r#"
[logs]
enabled = false

[cost]
ledger_dir = "{}"

[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "gpt-4o-mini"
provider = "mock"
{rules}"#,
        spend_dir.display()
    );
    let config = match Config::parse(&text, Path::new("admission.toml")) {
        Ok(config) => config,
        Err(err) => panic!("bench config: {err}"),
    };
    if let Err(err) = config.validate() {
        panic!("bench config: {err}");
    }
    match switchyard::app::build(config) {
        Ok(gateway) => gateway,
        Err(err) => panic!("bench gateway: {err}"),
    }
}

fn rules(three: bool, user_tpm: u64) -> String {
    let mut text = format!(
        "\n[[limits]]\nname = \"user_tpm\"\nmatch = {{ user = \"*\" }}\ntokens_per_minute = {user_tpm}\n"
    );
    if three {
        text.push_str(&format!(
            "\n[[limits]]\nname = \"feature_rpm\"\nmatch = {{ feature = \"*\" }}\nrequests_per_minute = {NEVER}\n\
             \n[[limits]]\nname = \"key_concurrency\"\nmatch = {{ key = \"*\" }}\nconcurrency = 1000\n"
        ));
    }
    text
}

/// One request's identity: swapped into the exchange for its turn, so no clone is measured.
struct Caller {
    principal: Option<Principal>,
    feature: Option<String>,
}

struct StageCase {
    _gateway: Gateway,
    _spend_dir: tempfile::TempDir,
    exchange: Exchange,
    finished: Finished,
    callers: Vec<Caller>,
}

/// `[[budgets]]`: per user and day, then (with `three`) per feature and month and per key in
/// total.
fn budget_rules(three: bool, user_limit_usd: f64) -> String {
    let mut text = format!(
        "\n[[budgets]]\nname = \"user_day\"\nmatch = {{ user = \"*\" }}\nperiod = \"day\"\nlimit_usd = {user_limit_usd:?}\n"
    );
    if three {
        text.push_str(
            "\n[[budgets]]\nname = \"feature_month\"\nmatch = { feature = \"*\" }\nperiod = \"month\"\nlimit_usd = 1000000000.0\n\
             \n[[budgets]]\nname = \"key_total\"\nmatch = { key = \"*\" }\nperiod = \"total\"\nlimit_usd = 1000000000.0\n",
        );
    }
    text
}

/// Each user's daily budget in the budget miss cases, overspent before measuring.
const MISS_BUDGET_USD: f64 = 1.0;

impl StageCase {
    fn new(three: bool, miss: bool) -> StageCase {
        let rules = rules(three, if miss { MISS_TPM } else { NEVER });
        // For a miss, every user overspent its window.
        StageCase::with(&rules, miss, MISS_TPM * 1_000)
    }

    fn budgets(rules: &str, miss: bool) -> StageCase {
        // For a miss, every user spent 600 M output tokens at $0.60/M: $360 of $1.
        StageCase::with(rules, miss, 600_000_000)
    }

    fn with(rules: &str, miss: bool, warm_output_tokens: u64) -> StageCase {
        let spend_dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("temp dir: {err}"),
        };
        let gateway = gateway(rules, spend_dir.path());
        let state = gateway.state.clone();
        let mut exchange = Exchange::start(state.clone(), Dialect::OpenAi, Endpoint::Chat);
        exchange.request = request();
        let Some(route) = state.registry.route("gpt-4o-mini").cloned() else {
            panic!("bench config has no gpt-4o-mini route");
        };
        exchange.decided = Some(Decided {
            plan: Plan {
                targets: vec![route.clone()],
                timeout: None,
                first_token: None,
                retries: 0,
                input_estimate: switchyard::tokens::quick_estimate_input(&exchange.request),
            },
            limits: Vec::new(),
            policy: state.policy.snapshot(),
            request: None,
        });
        let finished = Finished {
            state,
            ctx: RequestContext::new(Dialect::OpenAi, Endpoint::Chat),
            request: ChatRequest::default(),
            outcome: Outcome {
                usage: usage(),
                route: Some(route),
                ..Outcome::default()
            },
            embedding_dimensions: None,
            stages: StageStates::default(),
        };
        let callers = (0..USERS)
            .map(|i| Caller {
                principal: Some(Principal {
                    key_id: format!("key-{i}"),
                    user: format!("user-{i}"),
                    team: None,
                    tier: Some("pro".into()),
                }),
                feature: Some(FEATURES[i % FEATURES.len()].into()),
            })
            .collect();
        let mut case = StageCase {
            _gateway: gateway,
            _spend_dir: spend_dir,
            exchange,
            finished,
            callers,
        };
        // Every bucket exists before measuring.
        if miss {
            case.finished.outcome.usage.output_tokens = warm_output_tokens;
        }
        for i in 0..USERS {
            if !case.run(i) {
                panic!("warming the stage: user-{i} refused");
            }
        }
        case.finished.outcome.usage = usage();
        case
    }

    /// One request of caller `i` through the stage's admission and, if admitted, its tail;
    /// whether it was admitted.
    fn run(&mut self, i: usize) -> bool {
        let caller = &mut self.callers[i];
        std::mem::swap(&mut self.exchange.ctx.principal, &mut caller.principal);
        std::mem::swap(&mut self.exchange.ctx.feature, &mut caller.feature);
        let stages = self.exchange.state.stages.clone();
        let admitted = match ready(stages.on_request(&mut self.exchange)) {
            Ok(answer) => {
                black_box(answer);
                self.finished.stages.limits.reservation =
                    self.exchange.stages.limits.reservation.take();
                self.finished.stages.budgets.reservation =
                    self.exchange.stages.budgets.reservation.take();
                stages.on_finish(&mut self.finished);
                true
            }
            Err(err) => {
                black_box(err);
                false
            }
        };
        std::mem::swap(&mut self.exchange.ctx.principal, &mut caller.principal);
        std::mem::swap(&mut self.exchange.ctx.feature, &mut caller.feature);
        admitted
    }
}

fn bench_stage<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    for (name, three) in [("one_limit", false), ("three_limits", true)] {
        for (outcome, miss) in [("hit", false), ("miss", true)] {
            let mut case = StageCase::new(three, miss);
            let mut next = 0;
            group.bench_function(format!("{name}/{outcome}"), |b| {
                b.iter(|| {
                    let admitted = case.run(next % USERS);
                    next += 1;
                    if admitted == miss {
                        panic!("{name}/{outcome}: admitted = {admitted}");
                    }
                })
            });
        }
    }
    group.finish();
}

fn bench_budgets<M: Measurement>(c: &mut Criterion<M>, group: &str) {
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    let cases = [
        ("none", String::new(), false),
        ("one_budget/hit", budget_rules(false, 1e9), false),
        ("three_budgets/hit", budget_rules(true, 1e9), false),
        (
            "three_budgets/miss",
            budget_rules(true, MISS_BUDGET_USD),
            true,
        ),
    ];
    for (name, rules, miss) in cases {
        let mut case = StageCase::budgets(&rules, miss);
        let mut next = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let admitted = case.run(next % USERS);
                next += 1;
                if admitted == miss {
                    panic!("{name}: admitted = {admitted}");
                }
            })
        });
    }
    group.finish();
}

fn wall_time(c: &mut Criterion) {
    bench_admission(c, "admission");
    bench_stage(c, "limits_stage");
    bench_budgets(c, "budgets_stage");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    bench_admission(c, "admission_cpu");
    bench_stage(c, "limits_stage_cpu");
    bench_budgets(c, "budgets_stage_cpu");
}

criterion_group!(wall, wall_time);
criterion_group! {
    name = cpu;
    config = Criterion::default()
        .with_measurement(ThreadCpuTime)
        .measurement_time(Duration::from_secs(10));
    targets = cpu_time
}
criterion_main!(wall, cpu);
