#!/usr/bin/env python3
"""Request-log burst benchmark: how far search lags behind a fixed-rate burst, then search
latency over the index the burst built.

127.0.0.1 only; every phase is bounded (oha -z / -n, plus hard timeouts). Needs the nginx mock
of benches/peers (started here, stopped at the end unless it was already running), oha and a
release build.

1. The gateway (logging on, no policy) takes `--rate` req/s for `--dur` seconds (oha, open
   loop). The index status from `GET /admin/logs` (journal vs indexed records, lag) is polled
   every 100 ms during and after the burst until the index has caught up.
2. Search latency: each query of QUERIES is run `--searches` times by oha (4 connections)
   against `/admin/logs`, p50/p99 reported, over the rate × dur records now indexed.

Usage: python3 benches/load/burst.py [--rate 5000] [--dur 20] [--searches 400]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (the same config writer and helpers)

ADMIN = "admin"
ADMIN_SHA = "8c6976e5b5410415bde908bd4dee15dfb167a9c873fc4bb8a81f6f2ab448a918"

QUERIES = [
    ("term (matches all)", "q=hello&limit=20"),
    ("term, no match", "q=zebra&limit=20"),
    ("phrase", "q=%22one%20short%20sentence%22&limit=20"),
    ("field filter + term", "q=hello&model=gpt-4o-mini&status=200&limit=20"),
    ("time range", "q=hello&from=2020-01-01T00:00:00Z&to=2100-01-01T00:00:00Z&limit=20"),
    ("by score", "q=hello%20sentence&sort=score&limit=20"),
]


def status(port):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/admin/logs?q=zebra&limit=1",
                                 headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())["index"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--dur", type=int, default=20)
    ap.add_argument("--searches", type=int, default=400)
    ap.add_argument("--bin", default=os.path.join(run.ROOT, "target", "release", "switchyard"))
    ap.add_argument("--port", type=int, default=18901)
    args = ap.parse_args()
    if not shutil.which("oha"):
        sys.exit("oha is required (cargo install oha --locked)")
    work = tempfile.mkdtemp(prefix="switchyard-burst-")
    stop_mock = run.start_mock()
    try:
        burst(args, work)
    finally:
        if stop_mock:
            subprocess.run([os.path.join(run.PEERS, "mock_upstream.sh"), "stop"], check=False)


def burst(args, work):
    cfg = run.config("logs", args.port, work).replace(
        "[server]\n", f'[server]\nadmin_key_sha256 = "{ADMIN_SHA}"\n', 1)
    path = os.path.join(work, "burst.toml")
    with open(path, "w") as f:
        f.write(cfg)
    gw = subprocess.Popen([args.bin, "serve", "--config", path], stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(work, "gw.log"), "w"), env=dict(os.environ, RUST_LOG="warn"))
    url = f"http://127.0.0.1:{args.port}/v1/chat/completions"
    try:
        if not run.wait_ready(url, f"Authorization: Bearer {run.KEY}"):
            sys.exit("gateway did not start")
        samples = []
        stop = threading.Event()

        def poll():
            t0 = time.time()
            while not stop.is_set():
                try:
                    s = status(args.port)
                    samples.append((time.time() - t0, s))
                except Exception as e:  # noqa: BLE001
                    samples.append((time.time() - t0, {"error": str(e)}))
                time.sleep(0.1)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        burst_start = time.time()
        out = subprocess.run(["oha", "-z", f"{args.dur}s", "-c", "128", "-q", str(args.rate), "--latency-correction",
                              "--no-tui", "--output-format", "json", "-m", "POST", "-T", "application/json",
                              "-d", run.body("gpt-4o-mini"), "-H", f"Authorization: Bearer {run.KEY}", url],
                             capture_output=True, text=True, timeout=args.dur + 60).stdout
        burst_end = time.time()
        j = json.loads(out)
        codes = j.get("statusCodeDistribution", {})
        sent = sum(int(v) for v in codes.values())
        caught_up = None
        deadline = time.time() + 120
        while time.time() < deadline:
            s = status(args.port)
            if s.get("lag_records", 1) == 0 and s.get("indexed_records", 0) >= sent:
                caught_up = time.time() - burst_end
                break
            time.sleep(0.1)
        stop.set()
        poller.join()
        lags = [s for _, s in samples if "lag_records" in s]
        max_lag_records = max((s["lag_records"] for s in lags), default=None)
        max_lag_ms = max((s.get("lag_ms") or 0 for s in lags), default=None)
        final = status(args.port)
        print(f"burst: {args.rate} req/s offered for {args.dur} s; achieved {j['summary']['requestsPerSec']:.0f} req/s, "
              f"{sent} answered, status codes {codes}, p50 {j['latencyPercentiles']['p50']*1000:.3f} ms, "
              f"p99 {j['latencyPercentiles']['p99']*1000:.3f} ms")
        print(f"search lag during the burst: max {max_lag_records} records, max {max_lag_ms} ms behind the journal")
        print(f"index caught up {caught_up:.2f} s after the burst ended" if caught_up is not None else "index did not catch up within 120 s")
        print(f"final index status: {json.dumps(final)}")
        print(f"\nsearch latency over {final.get('index_docs')} indexed records ({args.searches} searches each, 4 connections):\n")
        print("| query | p50 ms | p99 ms | req/s |")
        print("|---|---|---|---|")
        for name, q in QUERIES:
            out = subprocess.run(["oha", "-n", str(args.searches), "-c", "4", "--no-tui", "--output-format", "json",
                                  "-H", f"Authorization: Bearer {ADMIN}", f"http://127.0.0.1:{args.port}/admin/logs?{q}"],
                                 capture_output=True, text=True, timeout=300).stdout
            r = json.loads(out)
            ok = r.get("statusCodeDistribution", {})
            pct = r["latencyPercentiles"]
            print(f"| {name} `{q}` | {pct['p50']*1000:.2f} | {pct['p99']*1000:.2f} | {r['summary']['requestsPerSec']:.0f} | {'' if list(ok) == ['200'] else ok}")
        with open(os.path.join(work, "samples.json"), "w") as f:
            json.dump(samples, f)
        print(f"\nlag samples: {os.path.join(work, 'samples.json')}")
    finally:
        run.stop(gw, timeout=120)


if __name__ == "__main__":
    main()
