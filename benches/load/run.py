#!/usr/bin/env python3
"""Load harness: the gateway's added latency and cost, as ratios from ONE run.

Targets 127.0.0.1 only; every load phase is bounded in time (wrk -d / oha -z).

Upstream: the neutral nginx mock of benches/peers (JSON on :18080, SSE on :18081), started
here and stopped at the end unless it was already running. For each variant the gateway is started fresh from a generated config:

  bare    no policy, no request log          (the bare hyper+reqwest hop)
  policy  the shipped feature-based routing policy (routing.rhai alone: its example limits
          hook would pace the load)
  logs    request log on                     (issue 4: logging on vs off)
  full    policy + request log
  limits  full + three [[limits]] rules every request matches and none ever refuses
          (per-user tokens/min, per-model requests/min, per-key concurrency): the cost of
          admission and settlement on the request path. The load requests name no feature,
          so the second rule matches on `model` rather than `feature`.
  budgets limits + three [[budgets]] every request matches and none ever blocks (per-user
          day, per-model month, per-key total): the cost of pricing the worst case,
          reserving it and settling the real cost (the spend ledger records every request
          in all variants).
  nometrics   budgets with `[metrics] enabled = false` (every other variant records metrics):
              the cost of the metrics stage is `budgets` minus `nometrics`.
  cache-hit   budgets + the response cache on: every load request is identical, so after the
              first each one is a hit (no upstream call, no limits, no budget).
  cache-miss  the same gateway, every request sent with `Cache-Control: no-cache`: looked up
              never, answered upstream, stored (the cost of a miss with the cache on).

and measured closed-loop (wrk, c=1 and c=32) and at a fixed rate (oha, latency-corrected),
next to `direct` (nginx without the gateway). Prints a markdown table and writes
results.json.

Needs wrk and nginx (benches/peers/install_peers.sh); without oha the fixed-rate columns
stay empty. Every load run is bounded (wrk -d, oha -z, plus a hard timeout).

Usage: python3 benches/load/run.py [--variants bare,policy,logs,full,limits,budgets,cache-hit,cache-miss] [--dur 10]
       [--rates 2000] [--bin target/release/switchyard] [--out /tmp/switchyard-load]
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PEERS = os.path.join(ROOT, "benches", "peers")  # the nginx mock and the wrk script
KEY = "test"
KEY_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
TICK = os.sysconf("SC_CLK_TCK")

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku", "claude-sonnet", "gemini-flash"]


def config(variant, port, workdir):
    metrics_on = variant != "nometrics"
    if variant == "nometrics":
        variant = "budgets"
    lines = [
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        "",
        "[[providers]]",
        'name = "nginx"',
        'kind = "openai-compatible"',
        'base_url = "http://127.0.0.1:18080/v1"',
        "",
        "[[providers]]",
        'name = "nginx-sse"',
        'kind = "openai-compatible"',
        'base_url = "http://127.0.0.1:18081/v1"',
        "",
    ]
    for m in MODELS:
        lines += ["[[models]]", f'name = "{m}"', 'provider = "nginx"',
                  "input_usd_per_mtok = 0.15", "output_usd_per_mtok = 0.60", ""]
    lines += ["[[models]]", 'name = "gpt-4o-mini-stream"', 'provider = "nginx-sse"', ""]
    lines += ["[[keys]]", f'key_sha256 = "{KEY_SHA}"', 'user = "bench"', 'tier = "pro"', ""]
    cached = variant in ("cache-hit", "cache-miss")
    if variant in ("policy", "full", "limits", "budgets") or cached:
        lines += ["[policy]", f'dir = "{policy_dir(workdir)}"', ""]
    lines += ["[logs]", f"enabled = {'true' if variant in ('logs', 'full', 'limits', 'budgets') or cached else 'false'}",
              f'dir = "{os.path.join(workdir, "logs-" + variant)}"', ""]
    lines += ["[cost]", f'ledger_dir = "{os.path.join(workdir, "spend-" + variant)}"', ""]
    if variant in ("limits", "budgets") or cached:
        lines += LIMITS
    if variant == "budgets" or cached:
        lines += BUDGETS
    if cached:
        lines += ["[cache]", "enabled = true", ""]
    if not metrics_on:
        lines += ["[metrics]", "enabled = false", ""]
    return "\n".join(lines)


def policy_dir(workdir):
    """The shipped feature-based routing policy alone: its example `limits` hook (20k tokens a
    minute per user) would pace the load, and its `cache` hook is measured by the cache variants
    through `[cache]` instead."""
    path = os.path.join(workdir, "policy")
    os.makedirs(path, exist_ok=True)
    shutil.copy(os.path.join(ROOT, "policies", "feature-based", "routing.rhai"), path)
    return path


# Matched by every load request, never refusing: what admission costs when it admits.
LIMITS = [
    "[[limits]]", 'name = "user_tpm"', 'match = { user = "*" }', "tokens_per_minute = 1000000000000", "",
    "[[limits]]", 'name = "model_rpm"', 'match = { model = "*" }', "requests_per_minute = 1000000000000", "",
    "[[limits]]", 'name = "key_concurrency"', 'match = { key = "*" }', "concurrency = 1000000", "",
]

# Matched by every load request, never blocking: what budget admission costs when it allows.
BUDGETS = [
    "[[budgets]]", 'name = "user_day"', 'match = { user = "*" }', 'period = "day"', "limit_usd = 1000000000.0", "",
    "[[budgets]]", 'name = "model_month"', 'match = { model = "*" }', 'period = "month"', "limit_usd = 1000000000.0", "",
    "[[budgets]]", 'name = "key_total"', 'match = { key = "*" }', 'period = "total"', "limit_usd = 1000000000.0", "",
]


def body(model, stream=False):
    s = ',"stream":true' if stream else ""
    return ('{"model":"%s","messages":[{"role":"system","content":"You are a helpful assistant."},'
            '{"role":"user","content":"Say hello in one short sentence."}],"max_tokens":32%s}' % (model, s))


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def wrk(url, conns, dur, headers):
    env = dict(os.environ, WRK_HEADERS=headers, WRK_MODEL="gpt-4o-mini", WRK_STREAM="0")
    t = min(2, conns)
    out = subprocess.run(["wrk", f"-t{t}", f"-c{conns}", f"-d{dur}s", "--timeout", "10s", "--latency",
                          "-s", os.path.join(PEERS, "post.lua"), url],
                         capture_output=True, text=True, env=env, timeout=dur + 30).stdout
    m = re.search(r"^JSON (\{.*\})$", out, re.M)
    if not m:
        raise RuntimeError("wrk produced no summary:\n" + out)
    r = json.loads(m.group(1))
    r["errors"] = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"] + r["err_status"]
    return r


def oha(url, rate, dur, headers):
    if not shutil.which("oha"):
        return None
    args = ["oha", "-z", f"{dur}s", "-c", "128", "-q", str(rate), "--latency-correction", "--no-tui",
            "--output-format", "json", "-m", "POST", "-T", "application/json", "-d", body("gpt-4o-mini")]
    for h in headers.split("|"):
        if h:
            args += ["-H", h]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=dur + 30).stdout
    j = json.loads(out)
    pct = j.get("latencyPercentiles", {})
    codes = j.get("statusCodeDistribution", {})
    ok = int(codes.get("200", 0))
    total = sum(int(v) for v in codes.values())
    return {"rps": j["summary"]["requestsPerSec"], "p50_ms": pct["p50"] * 1000, "p99_ms": pct["p99"] * 1000,
            "requests": total, "errors": total - ok + sum(j.get("errorDistribution", {}).values()),
            "status_codes": codes, "error_kinds": j.get("errorDistribution", {})}


def measure(name, url, headers, pid, args):
    res = {"name": name}
    wrk(url, 32, 3, headers)  # warm-up
    for c in (1, 32):
        c0 = cpu_ticks(pid) if pid else 0
        r = wrk(url, c, args.dur, headers)
        if pid and r["requests"]:
            r["cpu_us_per_req"] = (cpu_ticks(pid) - c0) / TICK * 1e6 / r["requests"]
        res[f"c{c}"] = r
    for q in args.rates:
        c0 = cpu_ticks(pid) if pid else 0
        r = oha(url, q, args.dur, headers)
        if r and pid and r["requests"]:
            r["cpu_us_per_req"] = (cpu_ticks(pid) - c0) / TICK * 1e6 / r["requests"]
        res[f"q{q}"] = r
    if pid:
        res["peak_rss_mib"] = peak_rss_mib(pid)
    return res


def stop(proc, timeout=60):
    """SIGTERM the gateway we started; SIGKILL it if it has not exited within `timeout` s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_ready(url, headers):
    req_headers = dict(h.split(": ", 1) for h in headers.split("|") if h)
    req_headers["Content-Type"] = "application/json"
    for _ in range(100):
        try:
            req = urllib.request.Request(url, data=body("gpt-4o-mini").encode(), headers=req_headers)
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="bare,policy,logs,full")
    ap.add_argument("--dur", type=int, default=10)
    ap.add_argument("--rates", default="2000")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "switchyard"))
    ap.add_argument("--out", default="/tmp/switchyard-load")
    ap.add_argument("--port", type=int, default=18900)
    args = ap.parse_args()
    args.rates = [int(r) for r in args.rates.split(",") if r]
    os.makedirs(args.out, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="switchyard-load-")
    stop_mock = start_mock()
    try:
        run_all(args, workdir)
    finally:
        if stop_mock:
            subprocess.run([os.path.join(PEERS, "mock_upstream.sh"), "stop"], check=False)


def start_mock():
    """Start the nginx mock of benches/peers; True if it was not running before (stop it after)."""
    if not shutil.which("wrk"):
        sys.exit("wrk is required: benches/peers/install_peers.sh (or apt-get install wrk)")
    script = os.path.join(PEERS, "mock_upstream.sh")
    was_running = subprocess.run([script, "status"]).returncode == 0
    r = subprocess.run([script, "start"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"the nginx mock upstream did not start:\n{r.stdout}{r.stderr}")
    return not was_running


def run_all(args, workdir):
    results = [measure("direct", "http://127.0.0.1:18080/v1/chat/completions", "Authorization: Bearer dummy", None, args)]
    print(json.dumps(results[-1]), file=sys.stderr)
    headers = f"Authorization: Bearer {KEY}"
    for variant in args.variants.split(","):
        path = os.path.join(workdir, f"{variant}.toml")
        with open(path, "w") as f:
            f.write(config(variant, args.port, workdir))
        log = open(os.path.join(args.out, f"{variant}.log"), "w")
        proc = subprocess.Popen([args.bin, "serve", "--config", path], stdout=subprocess.DEVNULL, stderr=log,
                                env=dict(os.environ, RUST_LOG="warn"))
        url = f"http://127.0.0.1:{args.port}/v1/chat/completions"
        vheaders = headers + ("|Cache-Control: no-cache" if variant == "cache-miss" else "")
        try:
            if not wait_ready(url, vheaders):
                raise RuntimeError(f"{variant} did not become ready; see {log.name}")
            results.append(measure(variant, url, vheaders, proc.pid, args))
            print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            stop(proc)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    print(table(results, args.rates))


def table(results, rates):
    direct = results[0]
    bare = next((r for r in results if r["name"] == "bare"), None)
    out = ["| run | c1 p50 ms | c1 added p50 | c32 req/s | c32 RPS vs direct | "
           + " | ".join(f"@{q}/s p50 / p99 ms | @{q}/s added p50 / p99 | CPU µs/req @{q}/s" for q in rates)
           + " | CPU µs/req (c32) | peak RSS MiB | errors | added p50 @c1 vs bare |",
           "|" + "---|" * (9 + 3 * len(rates))]
    for r in results:
        c1, c32 = r["c1"], r["c32"]
        added_c1 = c1["p50_ms"] - direct["c1"]["p50_ms"]
        cells = [r["name"], f"{c1['p50_ms']:.3f}", f"{added_c1:.3f}", f"{c32['rps']:.0f}",
                 f"{c32['rps'] / direct['c32']['rps']:.2f}"]
        errors = c1["errors"] + c32["errors"]
        for q in rates:
            x, d = r.get(f"q{q}"), direct.get(f"q{q}")
            if x and d:
                cells += [f"{x['p50_ms']:.3f} / {x['p99_ms']:.3f}",
                          f"{x['p50_ms'] - d['p50_ms']:.3f} / {x['p99_ms'] - d['p99_ms']:.3f}",
                          f"{x['cpu_us_per_req']:.1f}" if "cpu_us_per_req" in x else "-"]
                errors += x["errors"]
            else:
                cells += ["-", "-", "-"]
        cells += [f"{c32.get('cpu_us_per_req', 0):.1f}" if "cpu_us_per_req" in c32 else "-",
                  f"{r['peak_rss_mib']:.1f}" if r.get("peak_rss_mib") else "-", str(errors)]
        if bare and r is not direct:
            base = bare["c1"]["p50_ms"] - direct["c1"]["p50_ms"]
            cells.append(f"{added_c1 / base:.2f}x" if base > 0 else "-")
        else:
            cells.append("-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
