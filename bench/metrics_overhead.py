#!/usr/bin/env python3
"""What the API's Prometheus instrumentation costs in throughput, on loopback.

    bench/metrics_overhead.py [--rounds 3] [--duration 10] [--connections 32] [--png PATH | --no-png]
        (from the repository root)

Starts the test stack of examples/app (scripts/bench-stack.mjs: PostgreSQL
behind PgBouncer, Redis behind Sentinel, loopback, a temp dir; see
bench/worker_drain.py) and two API processes side by side against it: one
with metrics (the default) and one with METRICS=off. Then it loads them in
alternating rounds (on, off, off, on, ...: the same number of rounds each,
neither always first) with wrk, the same route mix for both: GET /health and
GET /items/:id over a few seeded items, half each, keep-alive connections.
Prints req/s and p99 latency per round, the mean per side, the median of the
rounds' on/off ratios as the cost (goal: metrics cost <= 3 % of throughput),
and the API process's CPU time per request on each side, which the machine's
other load moves less. Figures only, no timing asserts; exit 1 only if a
request failed or the instrumented API did not count the load under the
route pattern. Draws the rounds as a timeline (bench/_plot.py): each wrk
run is one interval (its req/s, errors/s and p50/p95/p99) and one shaded
phase named by its round, to --png, default
bench/out/metrics_overhead-<timestamp>.png.

Needs wrk (apt-get install wrk). The machine's other load moves all figures:
compare the two sides of one run, not runs of different days.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _plot  # noqa: E402  (bench/ helper: the timeline picture)
from worker_drain import LoopbackStack, cpu_seconds, free_port, scrape, stop  # noqa: E402  (same folder)

# Half /health (no I/O: the fixed cost per request, where instrumentation
# weighs most), half /items/:id (a Postgres read through PgBouncer).
WRK_SCRIPT = """
local ids = {%s}
local n = 0
request = function()
  n = n + 1
  if n %% 2 == 0 then return wrk.format("GET", "/health") end
  return wrk.format("GET", "/items/" .. ids[math.floor(n / 2) %% #ids + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %%d, "us": %%d, "errors": %%d, "p50_ms": %%.2f, "p95_ms": %%.2f, '
    .. '"p99_ms": %%.2f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def post_item(url: str, name: str) -> str:
    req = urllib.request.Request(url + "/items", data=json.dumps({"name": name}).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)["id"]


def wrk(url: str, script: Path, duration: int, connections: int) -> dict:
    out = subprocess.run(["wrk", "-t2", "-c%d" % connections, "-d%ds" % duration, "-s", str(script), url],
                         capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        sys.exit("bench: wrk failed:\n%s%s" % (out.stdout, out.stderr))
    r = json.loads(line[len("RESULT "):])
    r["rps"] = r["requests"] / (r["us"] / 1e6)
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side")
    parser.add_argument("--duration", type=int, default=10, help="seconds per round")
    parser.add_argument("--connections", type=int, default=32)
    _plot.add_png_option(parser, "metrics_overhead")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk not found (apt-get install wrk)")

    with LoopbackStack(durable=False) as stack, tempfile.TemporaryDirectory() as tmp:
        apis, urls = {}, {}
        try:
            for side, metrics in (("on", "on"), ("off", "off")):
                port = free_port()
                apis[side] = stack.start("src/server.js", '"msg":"listening"', PORT=port, HOST="127.0.0.1",
                                         APP_INSTANCE="bench-%s" % side, METRICS=metrics)
                urls[side] = "http://127.0.0.1:%d" % port
            ids = [post_item(urls["on"], "bench-%d" % i) for i in range(20)]
            script = Path(tmp) / "mix.lua"
            script.write_text(WRK_SCRIPT % ", ".join('"%s"' % i for i in ids))
            # Warm both (JIT, pool connections) before measuring.
            for side in ("on", "off"):
                wrk(urls[side], script, 3, args.connections)

            results = {"on": [], "off": []}
            t0, timeline, phases = time.monotonic(), [], []  # every measured wrk run, for the picture
            order = [("on", "off") if i % 2 == 0 else ("off", "on") for i in range(args.rounds)]
            for i, pair in enumerate(order, 1):
                for side in pair:
                    cpu0 = cpu_seconds(apis[side].pid)
                    started = time.monotonic() - t0
                    r = wrk(urls[side], script, args.duration, args.connections)
                    ended = time.monotonic() - t0
                    # the interval is wrk's own measured duration, so its rate is the req/s printed below
                    timeline.append(_plot.Interval(started, min(ended, started + r["us"] / 1e6), r["requests"],
                                                   r["errors"], r["p50_ms"] / 1e3, r["p95_ms"] / 1e3,
                                                   r["p99_ms"] / 1e3))
                    phases.append(("round %d metrics %s" % (i, side), started, ended))
                    r["cpu_us"] = 1e6 * (cpu_seconds(apis[side].pid) - cpu0) / max(1, r["requests"])
                    results[side].append(r)
                    print("round %d metrics %-3s: %8.0f req/s  p50 %6.2f ms  p99 %6.2f ms  API CPU %5.1f us/req  errors %d"
                          % (i, side, r["rps"], r["p50_ms"], r["p99_ms"], r["cpu_us"], r["errors"]), flush=True)
            counted = scrape(urls["on"] + "/metrics")
        finally:
            for proc in apis.values():
                stop(proc)

    mean = {side: statistics.mean(r["rps"] for r in rs) for side, rs in results.items()}
    cpu = {side: statistics.median(r["cpu_us"] for r in rs) for side, rs in results.items()}
    # The two runs of a round are adjacent in time: their ratio is the least
    # disturbed by the machine's other load drifting; the median of the
    # rounds' ratios drops the round a burst of it hit.
    ratio = statistics.median(on["rps"] / off["rps"] for on, off in zip(results["on"], results["off"]))
    print("mean: metrics on %.0f req/s, off %.0f req/s (on/off %.3f)" % (mean["on"], mean["off"], mean["on"] / mean["off"]))
    print("median of the rounds' on/off ratios: %.3f, i.e. metrics cost %.1f %% of throughput (goal <= 3 %%)"
          % (ratio, 100.0 * (1 - ratio)))
    print("API CPU per request (median): on %.1f us, off %.1f us; instrumentation %+.1f us (%+.1f %%)"
          % (cpu["on"], cpu["off"], cpu["on"] - cpu["off"], 100.0 * (cpu["on"] / cpu["off"] - 1)))
    print("mix: GET /health + GET /items/:id (20 items), wrk -t2 -c%d, %d s rounds, one API process per side"
          % (args.connections, args.duration))
    errors = sum(r["errors"] for rs in results.values() for r in rs)
    series = [k for k in counted if k.startswith("recete_http_request_duration_seconds_count{")]
    pattern_ok = any('route="/items/:id"' in k for k in series) and not any('route="/items/1' in k for k in series)
    print("instrumented API: %d request series (%s)" % (len(series), ", ".join(sorted(series))))
    failed = bool(errors or not pattern_ok)
    if failed:
        print("FAILED: %d request errors; route pattern label %s" % (errors, "ok" if pattern_ok else "missing"))
    _plot.write(args, "metrics_overhead", timeline, phases,
                note="wrk -t2 -c%d, %d s rounds of GET /health + GET /items/:id, metrics on / off alternating "
                "(one round per phase); metrics cost %.1f %%"
                % (args.connections, args.duration, 100.0 * (1 - ratio)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
