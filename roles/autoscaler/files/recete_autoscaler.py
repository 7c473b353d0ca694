# Copyright: recete.stack contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""recete-autoscaler: the Kubernetes HPA algorithm for app instances on VMs.

Every interval: read each tier's count and metrics from Prometheus, decide
with the HPA rules (recete_hpa, the collection's module_utils/_hpa.py), and
when a count must change run the collection's scale.yml through
ansible-runner, which takes the operation lock (waiting for a deploy to
finish, never overlapping it) and writes the audit line. Every decision
that is not "hold at the current count" goes to the decision log (JSON
lines); the autoscaler's own state is exported for Prometheus.

Config: a JSON file written by roles/autoscaler (see its defaults).
--once evaluates one round and exits (for checks); dry_run only logs.
"""
import argparse
import datetime
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recete_hpa as hpa  # noqa: E402  (shipped next to this file)

from prometheus_client import Counter, Gauge, start_http_server  # noqa: E402

LOG = logging.getLogger("recete-autoscaler")

REPLICAS = Gauge("recete_autoscaler_replicas", "Instance counts as the autoscaler sees them",
                 ["tier", "kind"])  # kind: current, proposal, desired, min, max, floor
METRIC_VALUE = Gauge("recete_autoscaler_metric_value", "Metric value read from Prometheus (NaN: missing)",
                     ["tier", "metric"])
METRIC_TARGET = Gauge("recete_autoscaler_metric_target", "Target of the metric", ["tier", "metric"])
DECISIONS = Counter("recete_autoscaler_decisions_total", "Decisions by action", ["tier", "action"])
RUNS = Counter("recete_autoscaler_scale_runs_total", "scale.yml runs by result", ["result"])
RUN_SECONDS = Gauge("recete_autoscaler_last_scale_run_seconds", "Duration of the last scale.yml run")
RUNNING = Gauge("recete_autoscaler_scale_running", "1 while scale.yml runs")
DRY_RUN = Gauge("recete_autoscaler_dry_run", "1 when the autoscaler only logs what it would do")
LAST_EVALUATION = Gauge("recete_autoscaler_last_evaluation_timestamp_seconds", "End of the last evaluation")


class Prometheus(object):
    """The one query the autoscaler needs: an instant vector reduced to one number (None: no sample).

    urllib rather than a client library: one GET with a timeout, and the
    monitoring host has no other use for one.
    """

    def __init__(self, url, timeout=5.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def value(self, expr):
        query = urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen("%s/api/v1/query?%s" % (self.url, query), timeout=self.timeout) as resp:
                body = json.load(resp)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            LOG.warning("prometheus query failed (%s): %s", expr, exc)
            return None
        result = body.get("data", {}).get("result", [])
        if body.get("status") != "success" or not result:
            return None
        raw = result[0]["value"][1] if body["data"].get("resultType") == "vector" else result[1]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(value) else value


class ScaleRunner(object):
    """scale.yml through ansible-runner: one run at a time, waiting for the operation lock."""

    def __init__(self, settings):
        self.settings = settings

    def scale(self, counts, reason):
        import ansible_runner  # imported here: --once --dry-run checks work without it
        extravars = dict(self.settings.get("extravars") or {})
        extravars.update(counts)
        extravars["lock_wait"] = self.settings.get("lock_wait", 1800)
        extravars["rollout_reason"] = reason
        started = time.monotonic()
        RUNNING.set(1)
        try:
            run = ansible_runner.run(
                private_data_dir=self.settings["private_data_dir"], playbook=self.settings["playbook"],
                inventory=self.settings["inventory"], extravars=extravars,
                envvars=self.settings.get("envvars") or {}, quiet=True,
                # Never cancel a scale.yml run on SIGTERM (ansible-runner would install its own
                # handler): a stop or restart of the autoscaler waits for the run to finish.
                cancel_callback=lambda: False,
                rotate_artifacts=int(self.settings.get("keep_artifacts", 20)),
                timeout=int(self.settings.get("timeout", 3600)))
        finally:
            RUNNING.set(0)
        seconds = time.monotonic() - started
        RUN_SECONDS.set(seconds)
        RUNS.labels(run.status).inc()
        return run.status == "successful", seconds, "%s (rc %s), artifacts %s" % (run.status, run.rc, run.config.artifact_dir)


class Autoscaler(object):
    def __init__(self, config, prometheus, runner, clock=time.time, wall=datetime.datetime.now):
        self.config = config
        self.prometheus = prometheus
        self.runner = runner
        self.clock = clock
        self.wall = wall
        self.tiers = {name: hpa.Tier(name, spec) for name, spec in config["tiers"].items()}
        self.stopping = False
        # The counts our own runs set, trusted over Prometheus's for a while: its
        # targets change at the end of scale.yml and are scraped up to one
        # interval later, and an old count would ask for the same change again.
        self.known = {}
        self.lock = threading.Lock()   # the tiers' history: evaluations and the run thread's scale events
        self.run_thread = None
        self.settle_seconds = float(config.get("settle_seconds", 60))
        DRY_RUN.set(1 if config.get("dry_run") else 0)

    def evaluate(self):
        """One round: a decision per tier (dicts, see hpa.Tier.decide)."""
        now = self.clock()
        moment = self.wall()
        decisions = []
        for name, tier in self.tiers.items():
            spec = self.config["tiers"][name]
            current = self.prometheus.value(spec["replicas_query"])
            metrics = []
            for metric in spec["metrics"]:
                value = self.prometheus.value(metric["query"])
                metrics.append({"name": metric["name"], "value": value, "target": float(metric["target"]),
                                "kind": metric.get("kind", "average")})
                METRIC_VALUE.labels(name, metric["name"]).set(float("nan") if value is None else value)
                METRIC_TARGET.labels(name, metric["name"]).set(float(metric["target"]))
            if current is None:
                LOG.warning("tier %s: no count from Prometheus (%s): no action", name, spec["replicas_query"])
                continue
            known = self.known.get(name)
            if known and now - known[1] < self.settle_seconds:
                current = known[0]
            floor = hpa.active_floor(self.config.get("schedules"), name, moment)
            decision = tier.decide(now, int(current), metrics, floor)
            decision["floor"] = floor
            decisions.append(decision)
            for kind in ("current", "desired", "min", "max", "floor"):
                REPLICAS.labels(name, kind).set(decision[kind] if kind != "floor" else floor)
            if decision["proposal"] is not None:
                REPLICAS.labels(name, "proposal").set(decision["proposal"])
            action = ("up" if decision["desired"] > decision["current"]
                      else "down" if decision["desired"] < decision["current"] else "hold")
            DECISIONS.labels(name, action).inc()
        LAST_EVALUATION.set(self.clock())
        return decisions

    def act(self, decisions, background=False):
        """Run scale.yml once for every tier whose count changes; returns the log entries written now.

        background: the run goes to a thread and evaluation goes on meanwhile, as
        the HPA keeps recommending while a scale happens (a window counts from
        the last recommendation, not from the end of a long run). While a run is
        in progress no other starts: decisions only shape the window.
        """
        running = self.run_thread is not None and self.run_thread.is_alive()
        changes = [] if running else [d for d in decisions if d["desired"] != d["current"]]
        entries = []
        for d in decisions:
            # A change the window or the rate policies hold back is worth a line; a count
            # already at its min or max is not (an idle queue would log every round).
            if d not in changes and not running and d["limited_by"] in ("stabilization window", "rate limit"):
                entries.append(log_entry(d, "hold"))
        if changes:
            counts = {self.config["tiers"][d["tier"]]["count_var"]: d["desired"] for d in changes}
            reason = "autoscaler: " + "; ".join(describe(d) for d in changes)
            if self.config.get("dry_run"):
                RUNS.labels("dry_run").inc()
                entries.extend(log_entry(d, "would scale", ok=True, seconds=0.0, detail="dry run: scale.yml not run")
                               for d in changes)
            elif background:
                self.run_thread = threading.Thread(target=self._run, args=(changes, counts, reason), daemon=True)
                self.run_thread.start()
            else:
                entries.extend(self._run(changes, counts, reason))
        for entry in entries:
            self._emit(entry)
        return entries

    def _run(self, changes, counts, reason):
        LOG.info("running scale.yml %s (%s)", counts, reason)
        ok, seconds, detail = self.runner.scale(counts, reason)
        entries = []
        with self.lock:
            for d in changes:
                if ok:
                    self.tiers[d["tier"]].record_scale(self.clock(), d["current"], d["desired"])
                    self.known[d["tier"]] = (d["desired"], self.clock())
                entries.append(log_entry(d, "scale", ok=ok, seconds=round(seconds, 1), detail=detail))
        if self.run_thread is not None and threading.current_thread() is self.run_thread:
            for entry in entries:
                self._emit(entry)
        return entries

    def _emit(self, entry):
        LOG.info("%s", json.dumps(entry, sort_keys=True))
        self.write_log(entry)

    def write_log(self, entry):
        path = self.config.get("decision_log")
        if not path:
            return
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        with os.fdopen(fd, "a") as log:
            log.write(json.dumps(entry, sort_keys=True) + "\n")

    def run_forever(self):
        interval = float(self.config.get("interval", 15))
        while not self.stopping:
            started = time.monotonic()
            try:
                with self.lock:
                    decisions = self.evaluate()
                self.act(decisions, background=True)
            except Exception:  # one bad round must not stop the autoscaler
                LOG.exception("evaluation failed")
            remaining = interval - (time.monotonic() - started)
            while remaining > 0 and not self.stopping:
                time.sleep(min(remaining, 1.0))
                remaining -= 1.0
        if self.run_thread is not None and self.run_thread.is_alive():
            LOG.info("waiting for the scale.yml run in progress to finish")
            self.run_thread.join()


def describe(decision):
    metrics = ", ".join("%s %s (target %s)" % (m["name"], "missing" if m["value"] is None else round(m["value"], 3),
                                               m["target"]) for m in decision["metrics"])
    why = (" limited by %s" % decision["limited_by"]) if decision["limited_by"] else ""
    return "%s %d -> %d [%s]%s" % (decision["tier"], decision["current"], decision["desired"], metrics, why)


def log_entry(decision, action, **extra):
    entry = {"time": datetime.datetime.fromtimestamp(decision["time"]).astimezone().isoformat(timespec="seconds"),
             "tier": decision["tier"], "action": action, "current": decision["current"],
             "proposal": decision["proposal"], "desired": decision["desired"], "floor": decision.get("floor", 0),
             "limited_by": decision["limited_by"],
             "metrics": {m["name"]: m["value"] for m in decision["metrics"]}}
    entry.update(extra)
    return entry


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="/etc/recete-autoscaler/config.json")
    parser.add_argument("--once", action="store_true", help="evaluate one round, print it, exit")
    parser.add_argument("--dry-run", action="store_true", help="only log what would be done")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stdout)
    with open(args.config) as f:
        config = json.load(f)
    if args.dry_run:
        config["dry_run"] = True
    problems = hpa.schedule_problems(config.get("schedules"), config["tiers"])
    if problems:
        LOG.error("bad schedules: %s", "; ".join(problems))
        return 2
    autoscaler = Autoscaler(config, Prometheus(config["prometheus_url"]), ScaleRunner(config["runner"]))
    if args.once:
        decisions = autoscaler.evaluate()
        print(json.dumps([log_entry(d, "evaluate") for d in decisions], indent=2, sort_keys=True))
        return 0
    host, port = config["listen"].rsplit(":", 1)
    start_http_server(int(port), addr=host)

    def stop(signum, frame):
        LOG.info("signal %d: stopping after the current round", signum)
        autoscaler.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    LOG.info("started: tiers %s, every %ss%s", ", ".join(config["tiers"]), config.get("interval", 15),
             " (dry run)" if config.get("dry_run") else "")
    autoscaler.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
