"""Timeline pictures of the benchmarks: latency and throughput over time, phases shaded.

    import _plot                     # bench/ is on sys.path when a bench runs
    _plot.add_png_option(parser, "my_bench")          # --png PATH (default bench/out/...), --no-png
    ...
    _plot.write(args, "my_bench", _plot.samples_to_rows(samples), phases, events, note="...")

A benchmark hands over what it measured in one of two shapes:

samples  [(t, latency, ok)]  one per request: t in seconds from the start of
         the load (when it was due), latency in seconds (None when there was
         no answer), ok a bool. samples_to_rows() buckets them per second.
rows     [Interval]          one per measured interval (a wrk run, a pgbench
         run, a round): start, end, requests, errors, latency percentiles.
         Benchmarks without a per-request record draw these.

and the phases [(name, t_start, t_end)] (phase_spans() makes them from the
marks [(name, t)] of a phase change), and optionally events [(name, t)]
(instants: a kill, a reload). Several series ({label: rows}) can share one
picture (the options of reload_keepalive). timeline() draws two panels that share
the time axis: latency p50/p95/p99 (log scale) on top, requests/s and
errors/s below, phases shaded and named, the title naming the benchmark, the
date and the machine. The aggregation is plain functions (tests/unit/
test_bench_plot.py); matplotlib (requirements.txt) is imported only when a
picture is drawn, so a benchmark still prints its figures without it.
"""
from __future__ import annotations

import collections
import datetime
import math
import os
import platform
import socket

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "bench", "out")

# One measured interval of a timeline. requests and errors are counts over
# [start, end); p50/p95/p99 in seconds, NaN when nothing was answered.
Interval = collections.namedtuple("Interval", "start end requests errors p50 p95 p99")


# --- aggregation (pure) ---------------------------------------------------------------

def percentile(values, q):
    """The q-th percentile by nearest rank on the sorted values (as bench/_lab.py); NaN for none."""
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(round(q / 100.0 * (len(values) - 1))))]


def samples_to_rows(samples, width=1.0, end=None):
    """Per-`width`-second Intervals of [(t, latency, ok)] samples, from 0 to the last sample (or `end`).

    Every bucket is there, empty ones too (0 requests, NaN latency): a stall
    must show as a gap, not be skipped. With `end` (when the load stopped) the
    last bucket ends there, so its rate is not diluted by time after the
    stop. A sample at t falls in bucket
    floor(t / width); samples before 0 go to the first bucket. Latency
    percentiles count every answered request (latency not None), ok or not;
    errors count the samples with ok False.
    """
    if width <= 0:
        raise ValueError("width must be positive")
    last = max((t for t, _, _ in samples), default=0.0)
    if end is not None:
        last = max(last, end - 1e-9)
    count = int(math.floor(last / width)) + 1 if samples or end else 0
    latencies = [[] for _ in range(count)]
    requests = [0] * count
    errors = [0] * count
    for t, latency, ok in samples:
        i = min(count - 1, max(0, int(math.floor(t / width))))
        requests[i] += 1
        if not ok:
            errors[i] += 1
        if latency is not None:
            latencies[i].append(latency)
    rows = [Interval(i * width, (i + 1) * width, requests[i], errors[i],
                     percentile(latencies[i], 50), percentile(latencies[i], 95), percentile(latencies[i], 99))
            for i in range(count)]
    if rows and end is not None and rows[-1].start < end < rows[-1].end:
        rows[-1] = rows[-1]._replace(end=end)
    return rows


def phase_spans(marks, end):
    """[(name, t)] phase changes (in order) -> [(name, start, end)], the last one ending at `end`.

    A phase entered again later is a new span; zero-length spans (two marks at
    the same time) are dropped.
    """
    spans = []
    for i, (name, start) in enumerate(marks):
        stop = marks[i + 1][1] if i + 1 < len(marks) else end
        if stop > start:
            spans.append((name, start, stop))
    return spans


def fill_gaps(rows):
    """Rows sorted by start, with an unmeasured Interval (NaN everywhere) in each gap between two.

    The picture holds each value over its interval: without this a value would
    be drawn across time nobody measured (between two pgbench runs, say).
    """
    nan = float("nan")
    out = []
    for row in sorted(rows, key=lambda r: r.start):
        if out and row.start > out[-1].end + 1e-9:
            out.append(Interval(out[-1].end, row.start, nan, nan, nan, nan, nan))
        out.append(row)
    return out


def rates(rows):
    """(mid-time, requests/s, errors/s) of each Interval."""
    out = []
    for row in rows:
        seconds = row.end - row.start
        out.append(((row.start + row.end) / 2.0, row.requests / seconds if seconds > 0 else float("nan"),
                    row.errors / seconds if seconds > 0 else float("nan")))
    return out


# --- where and what -------------------------------------------------------------------

def machine():
    """'host, N cores, M GiB, Debian V' of the machine running the benchmark (the controller)."""
    parts = [socket.gethostname(), "%d cores" % (os.cpu_count() or 0)]
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            kib = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
        parts.append("%.0f GiB" % (kib / 1024.0 / 1024.0))
    except (OSError, StopIteration, ValueError):
        pass
    try:
        with open("/etc/debian_version", encoding="ascii") as version:
            parts.append("Debian %s" % version.read().strip())
    except OSError:
        parts.append(platform.platform())
    return ", ".join(parts)


def default_png(bench, now=None):
    """bench/out/<bench>-<UTC timestamp>.png (bench/out/ is git-ignored)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return os.path.join(OUT, "%s-%s.png" % (bench, now.strftime("%Y%m%dT%H%M%SZ")))


def add_png_option(parser, bench):
    """--png PATH (default bench/out/<bench>-<timestamp>.png) and --no-png."""
    parser.add_argument("--png", default=default_png(bench),
                        help="timeline picture to write (default bench/out/%s-<timestamp>.png)" % bench)
    parser.add_argument("--no-png", action="store_true", help="print the figures only")


# --- the picture ----------------------------------------------------------------------

def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display), or None with a message."""
    try:
        import matplotlib
    except ImportError:
        print("no picture: matplotlib is not installed (.venv/bin/pip install -r requirements.txt); "
              "the figures above are complete")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def timeline(path, bench, rows, phases=(), events=(), note=None, rate_label="requests/s",
             error_label="errors/s", gauges=None):
    """Draw rows and phases [(name, start, end)] to a PNG at `path`; returns the path or None.

    rows: a list of Intervals, or {label: Intervals} to draw several series
    side by side (p50 dashed and p99 solid per series then, to stay readable).
    events: [(name, t)] instants drawn as thin vertical lines (a kill, a
    reload), named when there are few. Latency is in ms, per interval (steps),
    on a log axis; an interval with nothing answered leaves a gap. `note` is
    one more line under the title (the command's parameters, say).
    gauges: [(label, [(t, value)], "left" | "right")] drawn in a third panel
    (a CPU share on the left axis, instance counts on the right, say).
    """
    plt = _pyplot()
    if plt is None:
        return None
    series = dict(rows) if isinstance(rows, dict) else {"": list(rows)}
    if gauges:
        fig, (top, bottom, third) = plt.subplots(3, 1, sharex=True, figsize=(11, 8.5),
                                                 gridspec_kw={"height_ratios": [3, 2, 2]})
        _draw_gauges(third, gauges)
    else:
        fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6.5),
                                          gridspec_kw={"height_ratios": [3, 2]})
    # errors on their own axis (right): a few failed requests must show next to hundreds per second
    errors_axis = bottom.twinx()
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:cyan")
    single = len(series) == 1
    right = 1.0
    drawn = False
    for n, (label, intervals) in enumerate(series.items()):
        intervals = fill_gaps(intervals)
        if not intervals:
            continue
        edges = [r.start for r in intervals] + [intervals[-1].end]
        right = max(right, edges[-1])

        def steps(values):
            # one value per interval, held over it: the last one repeated for the closing edge
            return list(values) + [values[-1]]

        name = (label + " ") if label else ""
        if single:
            lines = (("p50", "tab:blue", "-"), ("p95", "tab:orange", "-"), ("p99", "tab:red", "-"))
        else:
            lines = (("p50", colours[n % len(colours)], "--"), ("p99", colours[n % len(colours)], "-"))
        for key, colour, style in lines:
            values = [getattr(r, key) * 1000.0 for r in intervals]
            if any(not math.isnan(v) for v in values):
                top.step(edges, steps(values), where="post", color=colour, linestyle=style,
                         label="%slatency %s" % (name, key))
                drawn = True
        per_second = rates(intervals)
        bottom.step(edges, steps([r for _, r, _ in per_second]), where="post",
                    color="tab:green" if single else colours[n % len(colours)], label=name + rate_label)
        errors_axis.step(edges, steps([e for _, _, e in per_second]), where="post", linestyle="-" if single else ":",
                    color="tab:red" if single else colours[n % len(colours)], label=name + error_label)
    if drawn:
        top.set_yscale("log")
    top.set_ylabel("ms (log)")
    top.grid(True, which="both", alpha=0.3)
    bottom.set_ylabel("%s" % rate_label if single else "per second")
    errors_axis.set_ylabel(error_label + " (right axis)", color="tab:red")
    top_errors = errors_axis.get_ylim()[1]
    errors_axis.set_ylim(0, max(1.0, top_errors if not math.isnan(top_errors) else 1.0))
    (third if gauges else bottom).set_xlabel("seconds from the start of the load")
    bottom.set_ylim(bottom=0)
    bottom.grid(True, alpha=0.3)

    shades = ("#dddddd", "#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#fcbba1")
    names = []
    for name, start, end in phases:
        if name not in names:
            names.append(name)
        colour = shades[names.index(name) % len(shades)]
        for axis in (top, bottom):
            axis.axvspan(start, end, color=colour, alpha=0.5, linewidth=0)
        # the name just above the latency panel (x in data, y in axes coordinates), clear of the lines;
        # a narrow phase gets its name upright so neighbours do not overwrite each other
        narrow = end - start < 0.08 * max(right, end)
        top.text((start + end) / 2.0, 1.01, name, transform=top.get_xaxis_transform(), ha="center",
                 va="bottom", fontsize=8, rotation=90 if narrow else 0)
    events = list(events)
    for name, at in events:
        for axis in (top, bottom):
            axis.axvline(at, color="black", linewidth=0.6, alpha=0.6)
        if len(events) <= 12:
            bottom.text(at, 0.98, " " + name, transform=bottom.get_xaxis_transform(), fontsize=7, va="top",
                        rotation=90)
    if drawn:
        top.legend(loc="best", fontsize=7, framealpha=0.8)
    handles, labels = bottom.get_legend_handles_labels()
    more_handles, more_labels = errors_axis.get_legend_handles_labels()
    bottom.legend(handles + more_handles, labels + more_labels, loc="best", fontsize=7, framealpha=0.8)
    title = "%s - %s UTC - %s" % (bench, datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                                  machine())
    fig.suptitle(title + ("\n" + note if note else ""), fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _draw_gauges(axis, gauges):
    """Sampled values as lines: left-axis series and right-axis series (twin axis)."""
    right = axis.twinx()
    colours = ("tab:purple", "tab:blue", "tab:olive", "tab:cyan", "tab:pink")
    handles = []
    for n, (label, points, side) in enumerate(gauges):
        if not points:
            continue
        target = right if side == "right" else axis
        line, = target.step([t for t, _ in points], [v for _, v in points], where="post",
                            color=colours[n % len(colours)], label=label)
        handles.append(line)
    axis.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    axis.grid(True, alpha=0.3)
    axis.set_ylabel(" / ".join(g[0] for g in gauges if g[2] != "right"))
    right.set_ylabel(" / ".join(g[0] for g in gauges if g[2] == "right") + " (right axis)")
    if handles:
        axis.legend(handles=handles, loc="best", fontsize=7, framealpha=0.8)


def write(args, bench, rows, phases=(), events=(), note=None, **labels):
    """What a benchmark calls at the end: honours --png/--no-png and prints where the picture went."""
    if getattr(args, "no_png", False):
        return None
    path = timeline(args.png, bench, rows, phases, events, note=note, **labels)
    if path:
        print("timeline: %s" % os.path.relpath(path))
    return path
